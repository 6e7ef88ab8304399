"""Finishing a hand-corrected set of columns before the lattice and reconstruction stages."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..model import AutomatError, Columns, Progress, no_progress
from .lattice import find_lattice
from .refine import refine_columns

#: Provenance of the points a user placed or moved by hand.
EDITED = ("added", "moved")


def measure_added(columns: Columns, image=None) -> Columns:
    """``columns`` with the unknown intensities and widths (points added by hand) measured on
    ``image`` (Micrograph or None); positions stay exactly where the user put them."""
    missing = np.flatnonzero(~np.isfinite(columns.intensity))
    if image is None or not len(missing):
        return columns
    fitted = refine_columns(image, columns, missing)
    out = columns.subset(np.arange(columns.count))
    out.intensity[missing] = fitted.intensity[missing]
    out.sigma_px[missing] = fitted.sigma_px[missing]
    return out


def accept_columns(columns: Columns, image=None, progress: Progress = no_progress) -> tuple[Columns, dict]:
    """Columns ready for the next stages after hand correction, and a summary of what was done.

    The points placed or moved by hand are fitted on ``image`` (Micrograph or 2D array; skipped
    when None) for their sub-pixel position, intensity and width. The lattice fit over the edited
    set then relabels every column's sublattice, displacement and outlier flag. Provenance and
    species are kept. ``summary`` holds the counts by provenance, how many points were refined,
    the flagged count and the lattice (``a_A``, ``b_A``, ``gamma_deg``, sites) or why there is none.
    """
    if columns.count == 0:
        raise AutomatError("no columns to accept: detect or add some first")
    edited = np.flatnonzero(np.isin(columns.provenance, EDITED))
    out = columns
    if image is not None and len(edited):
        progress(0.0, f"fitting {len(edited)} edited columns")
        out = refine_columns(image, columns, edited)
    progress(0.5, "lattice fit over the edited columns")
    summary = {"columns": out.count, **{f"n_{k}": v for k, v in sorted(Counter(out.provenance).items())},
               "refined": int(len(edited)) if image is not None else 0}
    try:
        lattice, out = find_lattice(out, image=image)
    except AutomatError as exc:
        summary["lattice"] = None
        summary["note"] = f"sublattices kept: {exc}"
    else:
        summary["lattice"] = {"a_A": round(lattice.a_A, 4), "b_A": round(lattice.b_A, 4),
                              "gamma_deg": round(lattice.gamma_deg, 2), "sites": len(lattice.motif)}
    summary["flagged"] = sum(bool(f) for f in out.flag)
    progress(1.0, f"accepted {out.count} columns")
    return out, summary
