"""Lattice periodicity from the power spectrum: Bragg spots, dominant spacing, reciprocal basis.

Frequencies are in Å⁻¹ as ``(ky, kx)``; real-space vectors in Å as ``(y, x)``.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from .basis import reduce_basis

#: A spot counts when its power exceeds the radial median background this many times.
_MIN_SPOT_RATIO = 25.0
#: Spots weaker than this fraction of the strongest excess power are ignored for the basis.
_BASIS_MIN_STRENGTH = 0.05


def _pixel_size(pixel_size_A) -> np.ndarray:
    p = np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (2,)).copy()
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(f"pixel size must be positive, got {pixel_size_A}")
    return p


def spectrum_peaks(image, pixel_size_A) -> tuple[np.ndarray, np.ndarray]:
    """Bragg spots of a 2D image, strongest first, one of each ``±g`` pair.

    Returns ``(g, strength)``: ``g`` is ``(m, 2)`` spatial frequencies ``(ky, kx)`` [Å⁻¹] located to
    sub-bin precision, ``strength`` the excess power above the radial background (arbitrary units).
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError("spectrum_peaks needs a 2D image of at least 16x16 pixels")
    p = _pixel_size(pixel_size_A)
    img = np.where(np.isfinite(img), img, np.nanmean(img))
    img = _minus_plane(img) * np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    shape = tuple(sfft.next_fast_len(2 * n) for n in img.shape)  # zero-padding interpolates the spectrum
    power = np.abs(sfft.fftshift(sfft.fft2(img, s=shape))) ** 2
    ky = (np.arange(shape[0]) - shape[0] // 2) / (shape[0] * p[0])
    kx = (np.arange(shape[1]) - shape[1] // 2) / (shape[1] * p[1])
    kr = np.hypot(ky[:, None], kx[None, :])

    # radial median background of the log power
    step = 1.5 / min(s * q for s, q in zip(shape, p))
    ring = (kr / step).astype(int)
    logp = np.log(power + power.max() * 1e-12)
    order = np.argsort(ring, axis=None)
    rings, starts = np.unique(ring.ravel()[order], return_index=True)
    medians = np.array([np.median(chunk) for chunk in np.split(logp.ravel()[order], starts[1:])])
    background = np.interp(kr / step - 0.5, rings, ndi.median_filter(medians, size=5, mode="nearest"))
    ratio = logp - background

    k_min = 4.0 / min(n * q for n, q in zip(img.shape, p))  # at least four periods in the field
    local_max = ratio == ndi.maximum_filter(ratio, size=7, mode="wrap")
    upper = (np.arange(shape[0])[:, None] > shape[0] // 2) | (
        (np.arange(shape[0])[:, None] == shape[0] // 2) & (np.arange(shape[1])[None, :] > shape[1] // 2))
    spots = local_max & upper & (kr > k_min) & (ratio > np.log(_MIN_SPOT_RATIO))
    iy, ix = np.nonzero(spots)
    if len(iy) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    # the background slope can shift the maximum of the ratio: locate the spot on the power itself
    peak_of = ndi.maximum_filter(logp, size=5, mode="wrap")
    for _ in range(3):
        for oy, ox in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            ny, nx = (iy + oy) % shape[0], (ix + ox) % shape[1]
            up = (logp[ny, nx] > logp[iy, ix]) & (logp[iy, ix] < peak_of[iy, ix])
            iy, ix = np.where(up, ny, iy), np.where(up, nx, ix)
    strength = power[iy, ix] - np.exp(background[iy, ix])
    dy = _parabolic(logp, iy, ix, axis=0)
    dx = _parabolic(logp, iy, ix, axis=1)
    g = np.stack([(iy + dy - shape[0] // 2) / (shape[0] * p[0]),
                  (ix + dx - shape[1] // 2) / (shape[1] * p[1])], axis=1)
    keep = np.argsort(strength)[::-1]
    return g[keep], strength[keep]


def _minus_plane(img: np.ndarray) -> np.ndarray:
    """The image minus its least-squares plane (a ramp would leak power along one line)."""
    yy, xx = np.indices(img.shape, dtype=float)
    design = np.stack([np.ones(img.size), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, img.ravel(), rcond=None)
    return img - (design @ coef).reshape(img.shape)


def _parabolic(values: np.ndarray, iy: np.ndarray, ix: np.ndarray, axis: int) -> np.ndarray:
    """Sub-bin offset of the maxima at (iy, ix) from a parabola through three samples."""
    n = values.shape[axis]
    lo = (iy - 1) % n if axis == 0 else (ix - 1) % n
    hi = (iy + 1) % n if axis == 0 else (ix + 1) % n
    c = values[iy, ix]
    a, b = (values[lo, ix], values[hi, ix]) if axis == 0 else (values[iy, lo], values[iy, hi])
    denom = a - 2 * c + b
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < 0, 0.5 * (a - b) / denom, 0.0)
    return np.clip(off, -0.5, 0.5)


def lattice_period_from_fft(image, pixel_size_A) -> float | None:
    """The dominant lattice spacing [Å]: ``1/|g|`` of the strongest Bragg spot, None when none is seen."""
    g, _ = spectrum_peaks(image, pixel_size_A)
    return float(1.0 / np.linalg.norm(g[0])) if len(g) else None


def fft_basis(image, pixel_size_A) -> tuple[np.ndarray, np.ndarray] | None:
    """Real-space basis ``(a_vec_A, b_vec_A)`` [Å] of the lattice the Bragg spots belong to.

    Built from the two shortest non-collinear spots with at least 5% of the strongest spot's power
    and Gauss-reduced; None when fewer than two independent spots are seen.
    """
    g, strength = spectrum_peaks(image, pixel_size_A)
    g = g[strength >= _BASIS_MIN_STRENGTH * strength[0]] if len(g) else g
    g = g[np.argsort(np.linalg.norm(g, axis=1))]
    for j in range(1, len(g)):
        sin = abs(np.cross(g[0], g[j])) / (np.linalg.norm(g[0]) * np.linalg.norm(g[j]))
        if sin > np.sin(np.radians(20)):
            real = np.linalg.inv(np.stack([g[0], g[j]])).T  # rows a, b with a·g_i = δ_ij
            return reduce_basis(real[0], real[1])
    return None


def fft_mismatch(image, pixel_size_A, a_vec_A, b_vec_A, n_spots: int = 4) -> float:
    """Relative distance of the strongest Bragg spots from the reciprocal lattice of ``(a, b)``.

    0 when every one of the ``n_spots`` strongest spots is a reciprocal-lattice vector of the
    real-space basis (the spots may see only a sub-set of reflections); ``nan`` when no spot is seen.
    """
    g, _ = spectrum_peaks(image, pixel_size_A)
    if not len(g):
        return float("nan")
    g = g[:n_spots]
    basis = np.stack([np.asarray(a_vec_A, float), np.asarray(b_vec_A, float)])
    hk = np.rint(g @ basis.T)  # Miller indices of each spot
    recip = np.linalg.inv(basis).T  # rows a*, b*
    return float(np.max(np.linalg.norm(g - hk @ recip, axis=1) / np.linalg.norm(g, axis=1)))
