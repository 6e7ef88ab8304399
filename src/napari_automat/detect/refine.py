"""Sub-pixel column positions: 2D Gaussians fitted to all columns at once (batched Levenberg-Marquardt).

Each column gets its own patch, a disc of half its nearest-neighbour distance, and five parameters:
amplitude, y, x, width and a constant offset. A second round refits the columns whose neighbours
reach into their patch after subtracting the neighbours' fitted Gaussians, so that a dim column on
the tails of bright ones is not pulled towards them. Fits that fail (diverge, run to a neighbour,
collapse) are redone with the typical width held fixed, and then fall back to the centre of mass of
the patch; both are flagged with ``sigma_px = nan``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..model import Columns, Micrograph
from .signal import column_image

#: Most patch pixels held in memory at once (columns x pixels).
_CHUNK_PIXELS = 1_500_000
_ITERATIONS = 20
#: A fit has converged when its position and width change by less than this [px].
_CONVERGED_PX = 2e-3
#: Fitting rounds: the later ones subtract the neighbours fitted in the previous one.
ROUNDS = 2


def refine_columns(image, columns: Columns, indices=None) -> Columns:
    """Columns with sub-pixel positions, integrated intensities and widths fitted on ``image``.

    ``image`` is the ``Micrograph`` (or 2D array) the positions refer to; dark-column signals
    (ABF, BF) are inverted first. Only ``indices`` are refitted when given (the others are kept as
    they are); provenance, species and sublattice are kept. ``intensity`` is the background-subtracted
    integral ``2π A σ²`` [counts px²]; ``sigma_px`` [mean px] is ``nan`` where no width could be
    fitted (the position then comes from a fit with the typical width, or the centre of mass);
    ``position_sigma_px`` [mean px] is the 1σ position uncertainty of the fit and ``fit_r2`` its R².
    """
    if isinstance(image, Micrograph):
        data, signal = np.asarray(image.data, dtype=float), image.metadata.get("signal", "auto")
    else:
        data, signal = np.asarray(image, dtype=float), "auto"
    if data.ndim != 2:
        raise ValueError("refine_columns needs a 2D image (pick one frame of a stack)")
    out = columns.subset(np.arange(len(columns)))
    idx = np.arange(len(columns)) if indices is None else np.unique(np.asarray(indices, dtype=int).ravel())
    if len(idx) == 0:
        return out
    if idx.min() < 0 or idx.max() >= len(columns):
        raise IndexError("refine_columns: index out of range")
    scale = np.asarray(columns.pixel_size_A, float) / np.mean(columns.pixel_size_A)
    radius = patch_radii_px(columns.positions_px, scale, columns.sigma_px)
    bright, _ = column_image(data, scale, spacing_px=2.0 * float(np.median(radius)), signal=signal)
    # the neighbours of the selected columns are fitted too, to be subtracted
    tree = cKDTree(columns.positions_px * scale)
    near = tree.query_ball_point(columns.positions_px[idx] * scale, 4.0 * radius[idx])
    fit_set = np.unique(np.concatenate([idx] + [np.asarray(n, dtype=int) for n in near]))
    pos, inten, sig, pos_sigma, r2 = fit_gaussians(bright, columns.positions_px[fit_set], radius[fit_set], scale,
                                                   columns.sigma_px[fit_set])
    chosen = np.isin(fit_set, idx)
    out.positions_px[fit_set[chosen]] = pos[chosen]
    out.intensity[fit_set[chosen]] = inten[chosen]
    out.sigma_px[fit_set[chosen]] = sig[chosen]
    out.position_sigma_px[fit_set[chosen]] = pos_sigma[chosen]
    out.fit_r2[fit_set[chosen]] = r2[chosen]
    return out


def patch_radii_px(positions_px: np.ndarray, scale: np.ndarray, sigma_px=None) -> np.ndarray:
    """Fit radius of each column [mean px]: half the distance to its nearest neighbour, capped."""
    n = len(positions_px)
    if n < 2:
        s = np.nanmedian(sigma_px) if sigma_px is not None and np.any(np.isfinite(sigma_px)) else 2.5
        return np.full(n, max(3.0, 3.0 * s))
    d, _ = cKDTree(positions_px * scale).query(positions_px * scale, k=2)
    nn = d[:, 1]
    return np.clip(0.5 * nn, 2.0, 0.75 * np.median(nn))


def fit_gaussians(image: np.ndarray, positions_px: np.ndarray, radius_px: np.ndarray, scale=(1.0, 1.0),
                  sigma0_px=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``A exp(-r²/2σ²) + B`` around every position of a bright-column image.

    ``scale`` is the pixel size per axis relative to the mean one (anisotropic pixels); ``radius_px``
    the patch radius of each column [mean px]; ``sigma0_px`` optional starting widths. Returns
    ``(positions_px, intensity, sigma_px, position_sigma_px, fit_r2)`` as described for
    :func:`refine_columns` (the last two NaN where the fit failed and the centre of mass was taken).
    """
    pos = np.asarray(positions_px, dtype=float).reshape(-1, 2).copy()
    n = len(pos)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    radius = np.broadcast_to(np.asarray(radius_px, dtype=float), (n,))
    scale = np.asarray(scale, dtype=float)
    sigma0 = np.full(n, np.nan) if sigma0_px is None else np.asarray(sigma0_px, dtype=float)
    start = np.clip(np.where(np.isfinite(sigma0) & (sigma0 > 0), sigma0, 0.4 * radius), 0.5, radius)
    state = {"pos": pos, "shape": np.stack([np.full(n, np.nan), start, np.full(n, np.nan)], 1),  # A, σ, B
             "ok": np.zeros(n, dtype=bool), "origin": pos.copy(), "stats": np.full((n, 2), np.nan)}
    pixels = len(_disc_offsets(radius.max() + 1.0, scale))

    def fit(rows, neighbours, fixed_width=False):
        for sl in _chunks(len(rows), pixels):
            r = rows[sl]
            own = state["ok"][r] & (neighbours is not None) & (not fixed_width)
            state["pos"][r], state["shape"][r], state["ok"][r], state["stats"][r] = _fit_chunk(
                image, neighbours, state["pos"][r], radius[r], scale, state["shape"][r], own, fixed_width)
        moved = np.hypot(*((state["pos"][rows] - state["origin"][rows]) * scale).T)
        state["ok"][rows] &= moved < 0.6 * radius[rows]  # no drifting onto a neighbour
        bad = rows[~state["ok"][rows]]
        state["pos"][bad] = state["origin"][bad]

    shape, ok = state["shape"], state["ok"]
    fit(np.arange(n), None)
    neighbours = None
    if ROUNDS > 1 and np.any(ok):
        reach = np.minimum(2.5 * radius[ok], 4.0 * shape[ok, 1] + 1.0)
        neighbours = render_gaussians(image.shape, pos[ok], shape[ok, 0], shape[ok, 1], scale, reach)
        # refit where the neighbours reach into the patch with over 10% of the column's amplitude
        share = _neighbour_share(neighbours, pos, radius, scale, np.where(ok[:, None], shape, 0.0))
        shape[~ok, 1] = start[~ok]
        fit(np.flatnonzero(~ok | (share > 0.1)), neighbours)
    measured = ok.copy()
    if np.any(ok) and not np.all(ok):  # faint columns: fit again with the typical width held fixed
        bad = np.flatnonzero(~ok)
        shape[bad, 1] = np.minimum(np.median(shape[ok, 1]), 0.5 * radius[bad])
        fit(bad, neighbours, fixed_width=True)
    intensity = 2.0 * np.pi * shape[:, 0] * shape[:, 1] ** 2 / (scale[0] * scale[1])
    sigma = np.where(measured, shape[:, 1], np.nan)
    stats = state["stats"]
    if not np.all(ok):
        pos[~ok], intensity[~ok] = _centre_of_mass(image, neighbours, pos[~ok], radius[~ok], scale)
        stats[~ok] = np.nan
    return pos, intensity, sigma, stats[:, 0], stats[:, 1]


def _neighbour_share(neighbours, pos, radius, scale, shape) -> np.ndarray:
    """Largest value of the other columns' Gaussians inside each patch, relative to its own amplitude."""
    out = np.zeros(len(pos))
    for sl in _chunks(len(pos), len(_disc_offsets(radius.max() + 1.0, scale))):
        (yy, xx), ly, lx, w = _patches(neighbours, pos[sl], radius[sl], scale)
        a, s = shape[sl, :1], np.maximum(shape[sl, 1:2], 1e-9)
        others = (neighbours[yy, xx] - a * np.exp(-0.5 * (ly ** 2 + lx ** 2) / s ** 2)) * w
        with np.errstate(divide="ignore", invalid="ignore"):
            out[sl] = np.where(a[:, 0] > 0, others.max(1) / a[:, 0], np.inf)
    return out


def _chunks(n: int, pixels_each: int):
    """Slices of at most ``_CHUNK_PIXELS`` patch pixels."""
    step = max(1, _CHUNK_PIXELS // max(pixels_each, 1))
    return [slice(s, s + step) for s in range(0, n, step)]


def _disc_offsets(reach: float, scale: np.ndarray) -> np.ndarray:
    """Integer pixel offsets ``(m, 2)`` within ``reach`` [mean px] of a pixel."""
    half = np.ceil(reach / scale).astype(int)
    oy, ox = np.mgrid[-half[0]:half[0] + 1, -half[1]:half[1] + 1]
    disc = (oy * scale[0]) ** 2 + (ox * scale[1]) ** 2 <= reach ** 2
    return np.stack([oy[disc], ox[disc]], axis=1)


def _patches(image, pos, radius, scale):
    """Pixels around each position: values, local coordinates [mean px] and the disc mask."""
    offsets = _disc_offsets(radius.max() + 1.0, scale)  # rounding the centre moves the disc by < 0.71 px
    centre = np.rint(pos).astype(int)
    yy = centre[:, :1] + offsets[None, :, 0]
    xx = centre[:, 1:] + offsets[None, :, 1]
    inside = (yy >= 0) & (yy < image.shape[0]) & (xx >= 0) & (xx < image.shape[1])
    yy, xx = np.clip(yy, 0, image.shape[0] - 1), np.clip(xx, 0, image.shape[1] - 1)
    ly = (yy - pos[:, :1]) * scale[0]
    lx = (xx - pos[:, 1:]) * scale[1]
    w = (inside & (ly ** 2 + lx ** 2 <= radius[:, None] ** 2)).astype(float)
    return (yy, xx), ly, lx, w


def render_gaussians(shape, pos, amplitude, sigma, scale, reach):
    """Image of the Gaussians ``A exp(-r²/2σ²)`` (no offsets), each drawn out to ``reach`` [mean px]."""
    out = np.zeros(int(np.prod(shape)))
    if len(pos) == 0:
        return out.reshape(shape)
    for sl in _chunks(len(pos), len(_disc_offsets(reach.max() + 1.0, scale))):
        (yy, xx), ly, lx, w = _patches(np.empty(shape), pos[sl], reach[sl], scale)
        values = amplitude[sl, None] * np.exp(-0.5 * (ly ** 2 + lx ** 2) / sigma[sl, None] ** 2) * w
        out += np.bincount((yy * shape[1] + xx).ravel(), weights=values.ravel(), minlength=out.size)
    return out.reshape(shape)


def _fit_chunk(image, neighbours, pos, radius, scale, previous, subtract_own, fixed_width=False):
    """One round of fits; returns new positions, (A, σ, B) and success flags.

    ``previous`` holds (A, σ, B) of the last round (σ is the start, or the value kept with
    ``fixed_width``); ``neighbours`` is the image of the fitted Gaussians to subtract, which includes
    a column's own one where ``subtract_own``.
    """
    (yy, xx), ly, lx, w = _patches(image, pos, radius, scale)
    patch = image[yy, xx]
    if neighbours is not None:
        own = np.where(subtract_own[:, None], previous[:, :1] * np.exp(
            -0.5 * (ly ** 2 + lx ** 2) / previous[:, 1:2] ** 2), 0.0)
        patch = patch - (neighbours[yy, xx] - own)
    patch = patch * w
    npix = w.sum(1)

    offset = _masked_percentile(patch, w, 10)
    core = w * (ly ** 2 + lx ** 2 <= 1.5)
    peak = np.sum(patch * core, axis=1) / np.maximum(core.sum(1), 1)
    p = np.stack([np.maximum(peak - offset, 1e-12), np.zeros(len(pos)), np.zeros(len(pos)),
                  np.clip(previous[:, 1], 0.5, radius), offset], axis=1)
    p[subtract_own, 0] = previous[subtract_own, 0]  # a later round starts from the last fit
    p[subtract_own, 4] = previous[subtract_own, 2]
    lam = np.full(len(pos), 1e-3)
    jtj, grad, cost = _normal_equations(p, ly, lx, patch, w)
    active = np.ones(len(pos), dtype=bool)
    eye = np.eye(5)[None]
    for _ in range(_ITERATIONS):
        a = np.flatnonzero(active)
        if not len(a):
            break
        damped = jtj[a] + lam[a, None, None] * (jtj[a] * eye + 1e-9 * eye)
        if fixed_width:  # decouple the width: its step is zero
            damped[:, 3, :] = damped[:, :, 3] = 0.0
            damped[:, 3, 3] = 1.0
        try:
            step = np.linalg.solve(damped, grad[a][:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(m, g, rcond=None)[0] for m, g in zip(damped, grad[a])])
        trial = p[a] + step
        trial[:, 3] = np.clip(np.abs(trial[:, 3]), 0.3, radius[a])  # a width beyond the patch is meaningless
        if fixed_width:
            trial[:, 3] = p[a, 3]
        t_jtj, t_grad, t_cost = _normal_equations(trial, ly[a], lx[a], patch[a], w[a])
        better = np.isfinite(t_cost) & (t_cost < cost[a])
        up = a[better]
        p[up], jtj[up], grad[up], cost[up] = trial[better], t_jtj[better], t_grad[better], t_cost[better]
        lam[a] = np.where(better, lam[a] / 3.0, lam[a] * 4.0)
        small = np.max(np.abs(step[:, 1:4]), axis=1) < _CONVERGED_PX
        active[a[(better & small) | (lam[a] > 1e8)]] = False

    width_ok = True if fixed_width else (p[:, 3] > 0.3) & (p[:, 3] < 0.95 * radius)
    ok = (np.all(np.isfinite(p), axis=1) & (p[:, 0] > 0) & width_ok
          & (np.hypot(p[:, 1], p[:, 2]) < 0.6 * radius) & (npix >= 9))
    new_pos = pos + np.stack([p[:, 1] / scale[0], p[:, 2] / scale[1]], axis=1)
    return new_pos, p[:, [0, 3, 4]], ok, _fit_statistics(p, ly, lx, patch, w, fixed_width)


def _fit_statistics(p, ly, lx, patch, w, fixed_width: bool) -> np.ndarray:
    """``(n, 2)``: 1σ position uncertainty [mean px] from the covariance ``s² (JᵀJ)⁻¹`` (s² the
    residual variance per pixel) and the fit's R² over the patch."""
    jtj, _, cost = _normal_equations(p, ly, lx, patch, w)
    npix = w.sum(1)
    free = 4 if fixed_width else 5
    if fixed_width:
        jtj = np.delete(np.delete(jtj, 3, axis=1), 3, axis=2)
    s2 = cost / np.maximum(npix - free, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.linalg.pinv(jtj) * s2[:, None, None]
        sigma_pos = np.sqrt(np.clip(0.5 * (cov[:, 1, 1] + cov[:, 2, 2]), 0, None))
        mean = (patch * w).sum(1) / np.maximum(npix, 1)
        total = (((patch - mean[:, None]) * w) ** 2).sum(1)
        r2 = 1.0 - cost / total
    return np.stack([sigma_pos, r2], axis=1)


def _centre_of_mass(image, neighbours, pos, radius, scale):
    """Centre of mass of the positive part of each patch above its 10th percentile, and its sum."""
    (yy, xx), ly, lx, w = _patches(image, pos, radius, scale)
    patch = image[yy, xx] - (neighbours[yy, xx] if neighbours is not None else 0.0)
    mass = np.clip(patch - _masked_percentile(patch, w, 10)[:, None], 0, None) * w
    total = mass.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.stack([(mass * ly).sum(1) / total / scale[0], (mass * lx).sum(1) / total / scale[1]], 1)
    return pos + np.where(np.isfinite(shift), shift, 0.0), total


def _normal_equations(p, ly, lx, patch, w):
    """``JᵀJ`` (n, 5, 5), ``Jᵀr`` (n, 5) and the squared residual (n,) of the masked Gaussian model."""
    dy = ly - p[:, 1:2]
    dx = lx - p[:, 2:3]
    inv_s2 = 1.0 / p[:, 3:4] ** 2
    r2 = dy ** 2 + dx ** 2
    g = np.exp(-0.5 * r2 * inv_s2) * w
    ag = p[:, :1] * g
    resid = patch - ag - p[:, 4:5] * w
    jac = np.empty((len(p), 5, ly.shape[1]))
    jac[:, 0] = g
    jac[:, 1] = ag * dy * inv_s2
    jac[:, 2] = ag * dx * inv_s2
    jac[:, 3] = ag * r2 * inv_s2 / p[:, 3:4]
    jac[:, 4] = w
    jtj = jac @ np.transpose(jac, (0, 2, 1))
    grad = (jac @ resid[:, :, None])[:, :, 0]
    return jtj, grad, np.sum(resid ** 2, axis=1)


def _masked_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Per-row ``q``-th percentile of the values where ``weights > 0`` (0 for empty rows)."""
    ranked = np.sort(np.where(weights > 0, values, np.inf), axis=1)
    count = (weights > 0).sum(1)
    k = np.clip(np.floor(q / 100 * (count - 1)).astype(int), 0, values.shape[1] - 1)
    out = np.take_along_axis(ranked, k[:, None], axis=1)[:, 0]
    return np.where(count > 0, out, 0.0)
