"""Per-column features from the fitted lattice: displacement from the ideal lattice (local strain,
polar shifts, scan distortion) and intensity outliers of each sublattice (vacancies, substitutions)."""

from __future__ import annotations

import numpy as np
from scipy.stats import median_abs_deviation

from ..model import Columns, Lattice2D
from .params import DEFAULT_DETECT, DetectParams


def lattice_displacements_pm(columns: Columns, lattice: Lattice2D) -> np.ndarray:
    """``(n, 2)`` ``(dy, dx)`` [pm] of each column from its ideal site ``origin + frac·[a, b] + i a + j b``
    of the fitted lattice; NaN for columns on no motif site."""
    out = np.full((len(columns), 2), np.nan)
    if not lattice.motif or not len(columns):
        return out
    basis = np.stack([lattice.a_vec_A, lattice.b_vec_A], axis=1)  # columns: a, b  (y, x) [Å]
    origin = np.asarray(lattice.origin_px, float) * np.asarray(columns.pixel_size_A, float)
    site_frac = {m.sublattice: np.asarray(m.frac, float) for m in lattice.motif}
    pos = columns.positions_A
    for s, frac in site_frac.items():
        sel = np.flatnonzero(columns.sublattice == s)
        if not len(sel):
            continue
        site0 = origin + basis @ frac
        cells = np.rint(np.linalg.solve(basis, (pos[sel] - site0).T)).T
        out[sel] = 100.0 * (pos[sel] - site0 - cells @ basis.T)
    return out


def intensity_flags(columns: Columns, shape=None, params: DetectParams = DEFAULT_DETECT) -> list[str]:
    """``"dim"``/``"bright"`` for columns whose integrated intensity is an outlier of their sublattice
    (robust z of log intensity beyond ``params.outlier_z`` and at least ``params.outlier_min_change``
    from the median: shot noise on very clean images gives tiny spreads), ``""`` otherwise.

    With the image ``shape`` (rows, cols), columns within half a neighbour distance of the border
    (their fit is cut off, so their intensity is biased) are neither flagged nor used as reference.
    """
    flags = np.full(len(columns), "", dtype=object)
    log_i = np.log(np.where(columns.intensity > 0, columns.intensity, np.nan))
    if shape is not None and len(columns) > 1:
        from scipy.spatial import cKDTree

        pos = columns.positions_px
        margin = 0.5 * np.median(cKDTree(pos).query(pos, k=2)[0][:, 1])
        inside = np.all((pos >= margin) & (pos <= np.asarray(shape[-2:], float) - 1 - margin), axis=1)
        log_i[~inside] = np.nan
    for s in np.unique(columns.sublattice[columns.sublattice >= 0]):
        sel = np.flatnonzero((columns.sublattice == s) & np.isfinite(log_i))
        if len(sel) < params.outlier_min_members:
            continue
        med = np.median(log_i[sel])
        spread = median_abs_deviation(log_i[sel], scale="normal")
        dev = log_i[sel] - med
        limit = max(params.outlier_z * spread, np.log1p(params.outlier_min_change))
        flags[sel[dev < -limit]] = "dim"
        flags[sel[dev > limit]] = "bright"
    return flags.tolist()
