"""Where a retrieved template puts its columns on the image: the hit's cell mapping applied to all
its projected columns and repeated over the field of view (for overlays and residual checks)."""

from __future__ import annotations

import numpy as np

from ..model import AutomatError, Lattice2D, TemplateHit


def template_columns_px(hit: TemplateHit, lattice: Lattice2D, shape, pixel_size_A) -> tuple[np.ndarray, list[dict]]:
    """``(positions_px (n, 2) (y, x), composition per column)`` of the template's projected columns
    inside an image of ``shape`` with ``pixel_size_A`` (y, x) [Å], placed by the hit's mapping onto
    the measured ``lattice`` (cell setting, inversion and origin shift found by retrieval)."""
    from ..geometry2d import SETTINGS_INV, gauss_reduce

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


#: Largest image side [px] used for the residual (a centred crop of bigger images).
RESIDUAL_MAX_SIDE_PX = 512


#: Z-contrast exponents tried by the residual (detectors differ: ADF about 1, HAADF up to 2).
RESIDUAL_EXPONENTS = (0.6, 0.9, 1.2, 1.5, 1.8, 2.1)


def image_residual(hit: TemplateHit, lattice: Lattice2D, image, sigma_px: float) -> float:
    """How much of the image a candidate leaves unexplained: the RMS of ``image − (a·model + b)``
    over the RMS of ``image − mean`` (0 = perfect, 1 = no better than a flat image), where the
    model puts a Gaussian of width ``sigma_px`` with weight Σ atoms·Z^n on each projected column
    of the template, ``a`` and ``b`` are fitted and ``n`` is the best of :data:`RESIDUAL_EXPONENTS`
    (positive: a heavier column is never darker). ``image`` is a Micrograph; big images are scored
    on a centred crop of at most :data:`RESIDUAL_MAX_SIDE_PX`."""
    from pymatgen.core import Element
    from scipy import ndimage as ndi

    data = np.asarray(image.data, float)
    pixel = np.asarray(image.pixel_size_A, float)
    pos, comps = template_columns_px(hit, lattice, data.shape, pixel)
    lo = np.maximum((np.array(data.shape) - RESIDUAL_MAX_SIDE_PX) // 2, 0)
    hi = np.minimum(lo + RESIDUAL_MAX_SIDE_PX, data.shape)
    crop = data[lo[0]:hi[0], lo[1]:hi[1]]
    margin = int(np.ceil(3 * sigma_px))  # columns outside the crop blur into its edge
    inner = (slice(margin, -margin or None), slice(margin, -margin or None))
    d = crop[inner].ravel()
    spread = np.sqrt(np.mean((d - d.mean()) ** 2))
    if not spread > 0:
        return float("nan")
    # one blurred image per column type; the model for any n is their weighted sum
    types = sorted({tuple(sorted(c.items())) for c in comps})
    which = np.array([types.index(tuple(sorted(c.items()))) for c in comps], int)
    local = pos - lo
    iy, ix = np.floor(local).astype(int).T
    fy, fx = (local - np.floor(local)).T
    basis = []
    for t in range(len(types)):
        splat = np.zeros_like(crop)
        for dy, dx, share in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)), (0, 1, (1 - fy) * fx),
                              (1, 1, fy * fx)):
            y, x = iy + dy, ix + dx
            ok = (which == t) & (y >= 0) & (y < crop.shape[0]) & (x >= 0) & (x < crop.shape[1])
            np.add.at(splat, (y[ok], x[ok]), share[ok])
        basis.append(ndi.gaussian_filter(splat, sigma_px / (pixel / pixel.mean()))[inner].ravel())
    z = [np.array([Element(el).Z for el, _ in t], float) for t in types]
    counts = [np.array([n for _, n in t], float) for t in types]
    best = np.inf
    for n in RESIDUAL_EXPONENTS:
        model = sum(float(c @ zz ** n) * b for c, zz, b in zip(counts, z, basis))
        design = np.stack([model, np.ones_like(model)], axis=1)
        coef, *_ = np.linalg.lstsq(design, d, rcond=None)
        best = min(best, float(np.sqrt(np.mean((d - design @ coef) ** 2)) / spread))
    return best


def add_image_residuals(hits: list[TemplateHit], lattice: Lattice2D, image, columns) -> None:
    """Set ``details['image_residual']`` (see :func:`image_residual`) on every hit, with the
    columns' median fitted width; left out when the image or the widths are unknown."""
    sigma = np.asarray(columns.sigma_px, float) if columns is not None else np.zeros(0)
    if image is None or not np.any(np.isfinite(sigma)):
        return
    width = float(np.nanmedian(sigma))
    for hit in hits:
        try:
            hit.details["image_residual"] = round(image_residual(hit, hit.lattice or lattice, image, width), 4)
        except (AutomatError, ValueError, np.linalg.LinAlgError):
            continue

