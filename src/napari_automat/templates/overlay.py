"""Where a retrieved template puts its columns on the image: the hit's cell mapping applied to all
its projected columns and repeated over the field of view (for overlays and residual checks)."""

from __future__ import annotations

import numpy as np

from ..model import AutomatError, Lattice2D, TemplateHit


def template_columns_px(hit: TemplateHit, lattice: Lattice2D, shape, pixel_size_A) -> tuple[np.ndarray, list[dict]]:
    """``(positions_px (n, 2) (y, x), composition per column)`` of the template's projected columns
    inside an image of ``shape`` with ``pixel_size_A`` (y, x) [Å], placed by the hit's mapping onto
    the measured ``lattice`` (cell setting, inversion and origin shift found by retrieval)."""
    from .projection import gauss_reduce
    from .retrieve import SETTINGS_INV

    d = hit.details
    if "columns_frac" not in d:
        raise AutomatError(f"candidate {hit.template_id} has no column mapping (retrieved by an older version)")
    frac_t = np.asarray(d["columns_frac"], float).reshape(-1, 2)
    sign = -1.0 if d.get("inverted") else 1.0
    frac = sign * frac_t @ SETTINGS_INV[int(d["setting"])] + np.asarray(d["origin_shift"], float)
    a2, b2, _ = gauss_reduce(np.asarray(lattice.a_vec_A, float), np.asarray(lattice.b_vec_A, float))
    basis = np.stack([a2, b2])  # rows: reduced a, b (y, x) [Å]
    pixel = np.asarray(pixel_size_A, float).reshape(-1)[-2:] * np.ones(2)
    origin = np.asarray(lattice.origin_px, float) * pixel
    corners = np.array([[0, 0], [0, shape[1]], [shape[0], 0], [shape[0], shape[1]]], float) * pixel - origin
    span = corners @ np.linalg.inv(basis)  # the image corners in cell coordinates
    lo, hi = np.floor(span.min(0)) - 1, np.ceil(span.max(0)) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    cells = np.stack([ii.ravel(), jj.ravel()], axis=1)
    all_frac = (frac[None, :, :] + cells[:, None, :]).reshape(-1, 2)
    pos_px = (origin + all_frac @ basis) / pixel
    which = np.tile(np.arange(len(frac)), len(cells))
    inside = np.all((pos_px >= -0.5) & (pos_px <= np.asarray(shape[:2], float) - 0.5), axis=1)
    comps = d.get("columns_composition") or [{}] * len(frac)
    return pos_px[inside], [comps[k] for k in which[inside]]
