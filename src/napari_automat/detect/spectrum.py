"""Lattice periodicity from the power spectrum: Bragg spots, dominant spacing, reciprocal basis.

Frequencies are in Å⁻¹ as ``(ky, kx)``; real-space vectors in Å as ``(y, x)``.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from ..model import AutomatError, Micrograph
from ..geometry2d import reduce_basis

#: A spot counts when its power exceeds the radial median background this many times.
_MIN_SPOT_RATIO = 25.0
#: Largest analysed field and padded transform [px per axis].
_MAX_FIELD = 768
_MAX_PADDED = 1024
#: Spots weaker than this fraction of the strongest excess power are ignored for the basis.
_BASIS_MIN_STRENGTH = 0.05


def _pixel_size(pixel_size_A) -> np.ndarray:
    p = np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (2,)).copy()
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise AutomatError(f"pixel size must be positive, got {pixel_size_A}")
    return p


def spectrum_peaks(image, pixel_size_A) -> tuple[np.ndarray, np.ndarray]:
    """Bragg spots of a 2D image (array or ``Micrograph``), strongest first, one of each ``±g`` pair.

    Returns ``(g, strength)``: ``g`` is ``(m, 2)`` spatial frequencies ``(ky, kx)`` [Å⁻¹] located to
    sub-bin precision, ``strength`` the excess power above the radial background (arbitrary units).
    The central ``_MAX_FIELD`` pixels per axis are analysed, Hann-windowed and zero-padded.
    """
    img = np.asarray(image.data if isinstance(image, Micrograph) else image, dtype=float)
    if img.ndim != 2 or min(img.shape) < 16:
        raise AutomatError("the power spectrum needs a 2D image of at least 16x16 pixels")
    p = _pixel_size(pixel_size_A)
    y0, x0 = (max(0, (n - _MAX_FIELD) // 2) for n in img.shape)
    img = img[y0:y0 + _MAX_FIELD, x0:x0 + _MAX_FIELD]
    img = np.where(np.isfinite(img), img, np.nanmean(img))
    img = _minus_plane(img) * np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    shape = tuple(sfft.next_fast_len(max(n, min(2 * n, _MAX_PADDED))) for n in img.shape)
    power = np.abs(sfft.fft2(img, s=shape)) ** 2
    ky = sfft.fftfreq(shape[0], p[0])
    kx = sfft.fftfreq(shape[1], p[1])
    kr = np.hypot(ky[:, None], kx[None, :])
    logp = np.log(power + power.max() * 1e-12)

    # radial median background of the log power (from every other pixel: plenty per ring)
    step = 1.5 / min(n * q for n, q in zip(shape, p))
    ring = (kr[::2, ::2] / step).astype(int).ravel()
    order = np.argsort(ring, kind="stable")
    rings, starts = np.unique(ring[order], return_index=True)
    medians = np.array([np.median(chunk) for chunk in np.split(logp[::2, ::2].ravel()[order], starts[1:])])
    medians = ndi.median_filter(medians, size=5, mode="nearest")

    def ratio_at(iy, ix):
        return logp[iy, ix] - np.interp(kr[iy, ix] / step - 0.5, rings, medians)

    k_min = 4.0 / min(n * q for n, q in zip(img.shape, p))  # at least four periods in the field
    half = (ky[:, None] > 0) | ((ky[:, None] == 0) & (kx[None, :] > 0))
    strong = logp > np.interp(kr / step - 0.5, rings, medians) + np.log(_MIN_SPOT_RATIO)
    iy, ix = np.nonzero(half & (kr > k_min) & strong)
    ratio = ratio_at(iy, ix)
    window = [ratio_at((iy + dy) % shape[0], (ix + dx) % shape[1]) for dy in range(-3, 4) for dx in range(-3, 4)]
    is_max = ratio >= np.max(window, axis=0)
    iy, ix = iy[is_max], ix[is_max]
    if len(iy) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    # the background slope can shift the maximum of the ratio: climb to the maximum of the power itself
    steps = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    for _ in range(3):
        ny, nx = (iy[:, None] + steps[:, 0]) % shape[0], (ix[:, None] + steps[:, 1]) % shape[1]
        best = np.argmax(logp[ny, nx], axis=1)
        iy, ix = ny[np.arange(len(iy)), best], nx[np.arange(len(ix)), best]
    strength = power[iy, ix] - np.exp(np.interp(kr[iy, ix] / step - 0.5, rings, medians))
    fy = np.where(iy > shape[0] // 2, iy - shape[0], iy) + _parabolic(logp, iy, ix, axis=0)
    fx = np.where(ix > shape[1] // 2, ix - shape[1], ix) + _parabolic(logp, iy, ix, axis=1)
    g = np.stack([fy / (shape[0] * p[0]), fx / (shape[1] * p[1])], axis=1)
    g = np.where((g[:, :1] < 0) | ((g[:, :1] == 0) & (g[:, 1:] < 0)), -g, g)  # climbing may cross the half plane
    keep = np.argsort(strength)[::-1]
    g, strength = g[keep], strength[keep]
    distinct = np.ones(len(g), dtype=bool)  # two maxima may climb onto the same spot
    for i in range(1, len(g)):
        distinct[i] = np.min(np.linalg.norm(g[:i][distinct[:i]] - g[i], axis=1)) > 1e-9
    return g[distinct], strength[distinct]


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
    return basis_from_spots(*spectrum_peaks(image, pixel_size_A))


def basis_from_spots(g: np.ndarray, strength: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`fft_basis` from spots already found by :func:`spectrum_peaks`."""
    g = g[strength >= _BASIS_MIN_STRENGTH * strength[0]] if len(g) else g
    g = g[np.argsort(np.linalg.norm(g, axis=1))]
    for j in range(1, len(g)):
        sin = abs(np.cross(g[0], g[j])) / (np.linalg.norm(g[0]) * np.linalg.norm(g[j]))
        if sin > np.sin(np.radians(20)):
            real = np.linalg.inv(np.stack([g[0], g[j]])).T  # rows a, b with a·g_i = δ_ij
            return reduce_basis(real[0], real[1])
    return None


def fft_mismatch(image, pixel_size_A, a_vec_A, b_vec_A) -> float:
    """Relative distance of the strong Bragg spots from the reciprocal lattice of ``(a, b)``.

    The spots are the (at most 8) strongest with 5% or more of the strongest one's power. 0 when
    each is a reciprocal-lattice vector of the real-space basis (the spots may show only a sub-set
    of the reflections); ``nan`` when no spot is seen.
    """
    return spot_mismatch(*spectrum_peaks(image, pixel_size_A), a_vec_A, b_vec_A)


def spot_mismatch(g: np.ndarray, strength: np.ndarray, a_vec_A, b_vec_A, n_spots: int = 8) -> float:
    """:func:`fft_mismatch` for spots already found by :func:`spectrum_peaks`."""
    if not len(g):
        return float("nan")
    g = g[strength >= _BASIS_MIN_STRENGTH * strength[0]][:n_spots]
    basis = np.stack([np.asarray(a_vec_A, float), np.asarray(b_vec_A, float)])
    hk = np.rint(g @ basis.T)  # Miller indices of each spot
    recip = np.linalg.inv(basis).T  # rows a*, b*
    return float(np.max(np.linalg.norm(g - hk @ recip, axis=1) / np.linalg.norm(g, axis=1)))
