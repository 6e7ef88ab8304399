"""Sub-pixel column positions: 2D Gaussians fitted to all columns at once (batched Levenberg-Marquardt).

Each column gets its own patch, a disc of half its nearest-neighbour distance, and five parameters:
amplitude, y, x, width and a constant offset. Fits that fail (diverge, run to a neighbour, collapse)
fall back to the centre of mass of the patch and are flagged with ``sigma_px = nan``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..model import Columns, Micrograph
from .signal import column_image

#: Most patch pixels held in memory at once (columns x pixels).
_CHUNK_PIXELS = 1_500_000
_ITERATIONS = 20


def refine_columns(image, columns: Columns, indices=None) -> Columns:
    """Columns with sub-pixel positions, integrated intensities and widths fitted on ``image``.

    ``image`` is the ``Micrograph`` (or 2D array) the positions refer to; dark-column signals
    (ABF, BF) are inverted first. Only ``indices`` are refitted when given (the others are kept as
    they are); provenance, species and sublattice are kept. ``intensity`` is the background-subtracted
    integral ``2π A σ²`` [counts px²]; ``sigma_px`` is ``nan`` where the fit failed and the centre of
    mass was used instead.
    """
    data, signal = (image.data, image.metadata.get("signal", "auto")) if isinstance(image, Micrograph) else (image, "auto")
    data = np.asarray(data, dtype=float)
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
    spacing = 2.0 * float(np.median(radius))
    bright = column_image(data, scale, spacing_px=spacing, signal=signal)
    pos, inten, sig = fit_gaussians(bright, columns.positions_px[idx], radius[idx], scale, columns.sigma_px[idx])
    out.positions_px[idx] = pos
    out.intensity[idx] = inten
    out.sigma_px[idx] = sig
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
    the patch radius of each column. Returns ``(positions_px, intensity, sigma_px)``.
    """
    positions_px = np.asarray(positions_px, dtype=float).reshape(-1, 2)
    radius_px = np.broadcast_to(np.asarray(radius_px, dtype=float), (len(positions_px),))
    sigma0 = np.full(len(positions_px), np.nan) if sigma0_px is None else np.asarray(sigma0_px, dtype=float)
    scale = np.asarray(scale, dtype=float)
    half = np.ceil(radius_px.max() / scale.min()).astype(int) if len(radius_px) else 1
    chunk = max(1, _CHUNK_PIXELS // (2 * half + 1) ** 2)
    results = [_fit_chunk(image, positions_px[s:s + chunk], radius_px[s:s + chunk], scale, sigma0[s:s + chunk], half)
               for s in range(0, len(positions_px), chunk)]
    if not results:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    return tuple(np.concatenate(parts) for parts in zip(*results))


def _fit_chunk(image, pos, radius, scale, sigma0, half):
    oy, ox = np.mgrid[-half:half + 1, -half:half + 1]
    oy, ox = oy.ravel().astype(float), ox.ravel().astype(float)
    centre = np.rint(pos).astype(int)
    yy = centre[:, :1] + oy[None, :].astype(int)
    xx = centre[:, 1:] + ox[None, :].astype(int)
    inside = (yy >= 0) & (yy < image.shape[0]) & (xx >= 0) & (xx < image.shape[1])
    patch = image[np.clip(yy, 0, image.shape[0] - 1), np.clip(xx, 0, image.shape[1] - 1)]
    ly = yy - pos[:, :1]
    lx = xx - pos[:, 1:]
    w = (inside & ((ly * scale[0]) ** 2 + (lx * scale[1]) ** 2 <= radius[:, None] ** 2)).astype(float)
    npix = w.sum(1)
    # local coordinates relative to the start position
    ly, lx = ly * scale[0], lx * scale[1]

    offset = _masked_percentile(patch, w, 10)
    peak = np.sum(patch * w * ((ly ** 2 + lx ** 2) <= 1.5), axis=1) / np.maximum(
        np.sum(w * ((ly ** 2 + lx ** 2) <= 1.5), axis=1), 1)
    s0 = np.where(np.isfinite(sigma0) & (sigma0 > 0), sigma0, 0.4 * radius)
    p = np.stack([np.maximum(peak - offset, 1e-12), np.zeros(len(pos)), np.zeros(len(pos)),
                  np.clip(s0, 0.5, radius), offset], axis=1)
    lam = np.full(len(pos), 1e-2)
    cost = _cost(p, ly, lx, patch, w)
    for _ in range(_ITERATIONS):
        jac, model = _jacobian(p, ly, lx)
        resid = (patch - model) * w
        jac_t = np.transpose(jac * w[:, :, None], (0, 2, 1))
        jtj = jac_t @ jac
        grad = (jac_t @ resid[:, :, None])[:, :, 0]
        damped = jtj + lam[:, None, None] * (jtj * np.eye(5)[None] + 1e-9 * np.eye(5)[None])
        try:
            step = np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(m, g, rcond=None)[0] for m, g in zip(damped, grad)])
        trial = p + step
        trial[:, 3] = np.abs(trial[:, 3])
        new_cost = _cost(trial, ly, lx, patch, w)
        better = np.isfinite(new_cost) & (new_cost < cost)
        p[better], cost[better] = trial[better], new_cost[better]
        lam = np.where(better, lam / 3.0, lam * 4.0)

    shift = np.hypot(p[:, 1], p[:, 2])
    ok = (np.all(np.isfinite(p), axis=1) & (p[:, 0] > 0) & (p[:, 3] > 0.3) & (p[:, 3] < radius)
          & (shift < 0.6 * radius) & (npix >= 9))
    new_pos = pos + np.stack([p[:, 1] / scale[0], p[:, 2] / scale[1]], axis=1)
    intensity = 2.0 * np.pi * p[:, 0] * p[:, 3] ** 2 / (scale[0] * scale[1])
    sigma = p[:, 3].copy()

    # centre-of-mass fallback for failed fits
    if not np.all(ok):
        bad = ~ok
        mass = np.clip(patch[bad] - offset[bad, None], 0, None) * w[bad]
        total = mass.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            com = np.stack([(mass * ly[bad]).sum(1) / total / scale[0], (mass * lx[bad]).sum(1) / total / scale[1]], 1)
        com = np.where(np.isfinite(com), com, 0.0)
        new_pos[bad] = pos[bad] + com
        intensity[bad] = total
        sigma[bad] = np.nan
    return new_pos, intensity, sigma


def _model_parts(p, ly, lx):
    dy = ly - p[:, 1:2]
    dx = lx - p[:, 2:3]
    s2 = p[:, 3:4] ** 2
    r2 = dy ** 2 + dx ** 2
    g = np.exp(-0.5 * r2 / s2)
    return dy, dx, s2, r2, g


def _cost(p, ly, lx, patch, w):
    *_, g = _model_parts(p, ly, lx)
    resid = (patch - p[:, :1] * g - p[:, 4:5]) * w
    return np.sum(resid ** 2, axis=1)


def _jacobian(p, ly, lx):
    dy, dx, s2, r2, g = _model_parts(p, ly, lx)
    ag = p[:, :1] * g
    jac = np.stack([g, ag * dy / s2, ag * dx / s2, ag * r2 / (s2 * p[:, 3:4]), np.ones_like(g)], axis=2)
    return jac, ag + p[:, 4:5]


def _masked_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    masked = np.where(weights > 0, values, np.nan)
    out = np.nanpercentile(masked, q, axis=1)
    return np.where(np.isfinite(out), out, 0.0)
