"""Columns the first pass merged into a brighter neighbour, found from the lattice; and dim
"sublattices" that are no columns at all.

A light column 1–1.4 Å from a heavy one (N beside Al in wurtzite [110], C beside Si in SiC [011])
shows as a shoulder that peak finding cannot separate. What the fitted Gaussians leave over,
averaged over every unit cell (folded into the cell), brings such a shoulder out of the noise:
a residual peak away from every known site, well above the folded noise and a visible fraction
of the weakest site, is a missing motif site. It is then added in every cell and fitted.

Conversely, where several columns surround an empty channel (hexagon centres in graphene or
wurtzite [0001]) their tails add up to a faint local maximum that peak finding takes for a column.
Such a site is much dimmer than the real columns, fits a Gaussian poorly while they fit well, and
sits amid three or more of them; :func:`drop_tail_artefacts` removes it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import median_abs_deviation

from ..geometry2d import periodic_distance
from ..model import FLAT_FEATURES, Columns, Lattice2D, Micrograph
from .refine import refine_columns, render_gaussians
from .params import DEFAULT_DETECT, DetectParams
from .signal import column_image

#: Folding grid step [Å].
BIN_A = 0.1
#: Predicted columns closer than this to the image edge are not added [px].
EDGE_PX = 2.0


def complete_motif(columns: Columns, lattice: Lattice2D, image,
                   params: DetectParams = DEFAULT_DETECT) -> tuple[Columns, list[tuple[float, float]]]:
    """``columns`` plus the columns of motif sites the detection missed, and those sites
    (fractional). ``image`` is the Micrograph (or array) the columns were found on. Nothing is
    added when the folded residual shows no such site (``params.completion_*``)."""
    data, signal = ((np.asarray(image.data, float), image.metadata.get("signal", "auto"))
                    if isinstance(image, Micrograph) else (np.asarray(image, float), "auto"))
    if columns.count < 8 or not lattice.motif:
        return columns, []
    px = np.asarray(columns.pixel_size_A, float)
    scale = px / px.mean()
    sigma = np.where(np.isfinite(columns.sigma_px), columns.sigma_px, np.nanmedian(columns.sigma_px))
    good = np.isfinite(columns.intensity) & np.isfinite(sigma) & (sigma > 0)
    if good.sum() < 8:
        return columns, []
    spacing = 2.0 * float(np.nanmedian(sigma)) * 2.5
    _, flat = column_image(data, scale, spacing_px=spacing, signal=signal)
    amplitude = np.where(good, columns.intensity / (2 * np.pi * np.where(good, sigma, 1.0) ** 2), 0.0)
    residual = flat - render_gaussians(data.shape, columns.positions_px, amplitude, sigma, scale, 4.0 * sigma)

    cell_px = np.stack([lattice.a_vec_A, lattice.b_vec_A]) / px  # rows a, b as (y, x) px
    cell_A = np.stack([lattice.a_vec_A, lattice.b_vec_A])
    n_bins = np.maximum(8, np.ceil(np.linalg.norm(cell_A, axis=1) / BIN_A)).astype(int)
    folded_res, folded_img, centres = _fold(residual, flat, lattice.origin_px, cell_px, n_bins)
    distance = np.min([_site_distance(centres, np.asarray(s.frac, float), cell_A) for s in lattice.motif], 0)
    heights = [folded_img.ravel()[np.argmin(_site_distance(centres, np.asarray(s.frac, float), cell_A))]
               for s in lattice.motif]

    new_sites: list[tuple[float, float]] = []
    out = columns
    for _ in range(params.completion_max_sites):
        far = distance > params.completion_min_distance_A
        if far.sum() < 10:
            break
        level = np.median(folded_res[far])
        noise = median_abs_deviation(folded_res[far], scale="normal")
        k = int(np.argmax(np.where(far, folded_res, -np.inf)))
        height = folded_res.ravel()[k] - level
        if not (height > params.completion_min_snr * noise
                and height > params.completion_min_fraction * (min(heights) - np.median(folded_img))):
            break
        site = centres.reshape(-1, 2)[k]
        added = _add_site(out, site, lattice, image, params)
        if added is None:
            break
        out = added
        new_sites.append((float(site[0]), float(site[1])))
        distance = np.minimum(distance, _site_distance(centres, site, cell_A))
    return out, new_sites


def _fold(residual, flat, origin_px, cell_px, n_bins, rows_per_chunk: int = 256):
    """Residual and image averaged over the cell on an ``n_bins`` grid, and the bin centres (frac).
    Works through the image in bands of rows, so large images need little extra memory."""
    size = int(n_bins[0] * n_bins[1])
    sums_res, sums_img, count = np.zeros(size), np.zeros(size), np.zeros(size)
    inverse = np.linalg.inv(cell_px)
    xx = np.arange(residual.shape[1]) - origin_px[1]
    for start in range(0, residual.shape[0], rows_per_chunk):
        yy = np.arange(start, min(start + rows_per_chunk, residual.shape[0])) - origin_px[0]
        d = np.stack(np.broadcast_arrays(yy[:, None], xx[None, :]), -1).reshape(-1, 2)
        idx = np.minimum((np.mod(d @ inverse, 1.0) * n_bins).astype(int), n_bins - 1)
        bins = idx[:, 0] * n_bins[1] + idx[:, 1]
        band = slice(start, start + len(yy))
        sums_res += np.bincount(bins, weights=residual[band].ravel(), minlength=size)
        sums_img += np.bincount(bins, weights=flat[band].ravel(), minlength=size)
        count += np.bincount(bins, minlength=size)
    count = np.maximum(count, 1)
    centres = (np.stack(np.meshgrid(np.arange(n_bins[0]), np.arange(n_bins[1]), indexing="ij"), -1) + 0.5) / n_bins
    return (sums_res / count).reshape(n_bins), (sums_img / count).reshape(n_bins), centres


def _site_distance(frac_grid: np.ndarray, site, cell_A: np.ndarray) -> np.ndarray:
    """Distance [Å] from each grid point (…, 2 fractional) to ``site`` and its periodic images."""
    grid = np.asarray(frac_grid, float)
    return periodic_distance(grid.reshape(-1, 2), np.asarray(site, float).reshape(1, 2), cell_A).reshape(grid.shape[:-1])


def _add_site(columns: Columns, site, lattice: Lattice2D, image, params: DetectParams) -> Columns | None:
    """``columns`` with ``site`` added in every cell inside the image and fitted (only the fits
    that stay near their predicted place and find a positive intensity are kept); None if none."""
    shape = np.shape(image.data if isinstance(image, Micrograph) else image)
    px = np.asarray(columns.pixel_size_A, float)
    cell_px = np.stack([lattice.a_vec_A, lattice.b_vec_A]) / px
    corners = np.array([[0, 0], [0, shape[1]], [shape[0], 0], [shape[0], shape[1]]], float) - lattice.origin_px
    span = corners @ np.linalg.inv(cell_px)
    i = np.arange(np.floor(span[:, 0].min()) - 1, np.ceil(span[:, 0].max()) + 2)
    j = np.arange(np.floor(span[:, 1].min()) - 1, np.ceil(span[:, 1].max()) + 2)
    grid = np.stack(np.meshgrid(i, j, indexing="ij"), -1).reshape(-1, 2) + np.asarray(site)
    predicted = lattice.origin_px + grid @ cell_px
    inside = np.all((predicted >= EDGE_PX) & (predicted <= np.asarray(shape) - 1 - EDGE_PX), axis=1)
    predicted = predicted[inside]
    if len(predicted) == 0:
        return None
    flat = columns.flat_features()
    for name, values in flat.items():
        flat[name] = list(values) + [FLAT_FEATURES[name][1]] * len(predicted)
    grown = Columns.from_flat(np.vstack([columns.positions_px, predicted]), columns.pixel_size_A, flat)
    new = np.arange(columns.count, grown.count)
    fitted = refine_columns(image, grown, new)
    shift_A = np.linalg.norm((fitted.positions_px[new] - predicted) * px, axis=1)
    keep_new = (shift_A <= params.completion_max_shift_A) & np.isfinite(fitted.intensity[new]) & (fitted.intensity[new] > 0)
    # A real site looks like the other columns: a fitted width like theirs and a good fit.
    fitted_width = fitted.sigma_px[new][keep_new & np.isfinite(fitted.sigma_px[new])]
    fitted_r2 = fitted.fit_r2[new][keep_new & np.isfinite(fitted.fit_r2[new])]
    width = np.median(fitted_width) / np.nanmedian(columns.sigma_px) if len(fitted_width) else np.nan
    r2 = np.median(fitted_r2) if len(fitted_r2) else np.nan
    brightness = np.median(fitted.intensity[new][keep_new]) / np.nanpercentile(columns.intensity, 90) \
        if keep_new.any() else 0.0
    low, high = params.completion_width_range
    if not (keep_new.mean() >= params.completion_min_fitted and low <= width <= high
            and r2 >= params.completion_min_r2 and brightness >= params.completion_min_visible):
        return None
    return fitted.subset(np.concatenate([np.arange(columns.count), new[keep_new]]))


def find_lattice_completed(columns: Columns, image, progress=None,
                           params: DetectParams = DEFAULT_DETECT) -> tuple[Lattice2D, Columns, dict]:
    """:func:`~.lattice.find_lattice`, then :func:`drop_tail_artefacts` and :func:`complete_motif`,
    fitting the lattice again after each change. Returns ``(lattice, columns, changes)`` with
    ``changes = {"dropped": columns removed, "sites": motif sites added, "added": columns added,
    "first_pass": (lattice, columns) before the sites were added}``."""
    from ..model import no_progress
    from .lattice import find_lattice

    progress = progress or no_progress
    lattice, labelled = find_lattice(columns, image=image, progress=lambda f, m="": progress(0.7 * f, m),
                                     params=params)
    kept, dropped = drop_tail_artefacts(labelled, params)
    changes = {"dropped": labelled.count - kept.count, "sites": [], "added": 0}
    if dropped:
        lattice, labelled = find_lattice(kept, image=image, params=params)
    changes["first_pass"] = (lattice, labelled)
    progress(0.7, "looking for columns merged into brighter neighbours")
    completed, sites = complete_motif(labelled, lattice, image, params)
    if sites:
        changes.update(sites=sites, added=completed.count - labelled.count)
        lattice, labelled = find_lattice(completed, image=image, progress=lambda f, m="": progress(0.8 + 0.2 * f, m),
                                         params=params)
    progress(1.0, f"lattice: {len(lattice.motif)} sites")
    return lattice, labelled, changes


def drop_tail_artefacts(columns: Columns, params: DetectParams = DEFAULT_DETECT) -> tuple[Columns, list[int]]:
    """``columns`` without the sublattices that are tail artefacts (see the module docstring), and
    the sublattices dropped. Needs sublattices and fit R² (``find_lattice`` after refinement)."""
    labels = [int(s) for s in np.unique(columns.sublattice) if s >= 0]
    if len(labels) < 2:
        return columns, []
    median_i = {s: np.nanmedian(columns.intensity[columns.sublattice == s]) for s in labels}
    median_r2 = {s: np.nanmedian(columns.fit_r2[columns.sublattice == s]) for s in labels}
    top = max(median_i.values())
    if not np.isfinite(top) or top <= 0:
        return columns, []
    bright_r2 = [median_r2[s] for s in labels if median_i[s] >= 0.5 * top]
    if not bright_r2 or not np.nanmax(bright_r2) > params.clean_r2:
        return columns, []
    dropped = [s for s in labels if median_i[s] < params.artefact_fraction * top
               and median_r2[s] < params.artefact_r2 and _surrounded(columns, s, params.artefact_equidistant)]
    if not dropped:
        return columns, []
    return columns.subset(np.flatnonzero(~np.isin(columns.sublattice, dropped))), dropped


def _surrounded(columns: Columns, sublattice: int, equidistant: float) -> bool:
    """Whether the columns of ``sublattice`` typically sit at the centre of three or more other
    columns (the third-nearest within ``equidistant`` times the nearest), as where tails add up;
    a light partner beside one heavy column (a dumbbell) does not."""
    from scipy.spatial import cKDTree

    mine = columns.sublattice == sublattice
    others = columns.positions_A[~mine]
    if len(others) < 3:
        return False
    d, _ = cKDTree(others).query(columns.positions_A[mine], k=3)
    return bool(np.median(d[:, 2] / np.maximum(d[:, 0], 1e-9)) < equidistant)
