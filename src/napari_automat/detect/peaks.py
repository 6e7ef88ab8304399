"""Atom-column detection: local maxima of the smoothed column image above an adaptive threshold."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..model import AutomatError, Columns, Micrograph, Progress, no_progress
from .refine import fit_gaussians, patch_radii_px
from .signal import check_signal, column_image
from .params import DEFAULT_DETECT, DetectParams
from .spectrum import lattice_period_from_fft


def detect_columns(micrograph: Micrograph, min_separation_A: float | None = None, threshold_scale: float = 1.0,
                   signal: str = "auto", progress: Progress = no_progress,
                   params: DetectParams = DEFAULT_DETECT) -> Columns:
    """Find atom columns in a 2D micrograph, refined to sub-pixel precision.

    ``min_separation_A`` [Å] is the closest two columns may be (default: 0.4 times the dominant
    lattice spacing of the power spectrum, which finds O next to Ti in SrTiO3 [110] ABF).
    ``threshold_scale`` multiplies the automatic contrast threshold (lower finds weaker columns).
    ``signal`` is ``auto`` (the micrograph's ``metadata['signal']``, else the contrast decides),
    ``HAADF``/``ADF``/``iDPC`` (bright columns) or ``ABF``/``BF`` (dark columns). Columns closer than
    a quarter separation to the border are dropped.
    Candidates are local maxima of the background-subtracted, smoothed image whose contrast exceeds
    5 noise deviations and 10% of the brightest columns' contrast (times ``threshold_scale``);
    positions, widths and intensities come from :func:`~napari_automat.detect.refine.fit_gaussians`.
    """
    if not isinstance(micrograph, Micrograph):
        raise AutomatError("detect_columns needs a Micrograph (see napari_automat.io.read.read_micrograph)")
    if micrograph.is_stack:
        raise AutomatError("detect_columns needs a 2D image: pick one frame of the stack first")
    if not threshold_scale > 0:
        raise AutomatError(f"threshold_scale must be positive, got {threshold_scale}")
    check_signal(signal)
    if str(signal).lower() == "auto":
        signal = micrograph.metadata.get("signal") or "auto"
    data = np.asarray(micrograph.data, dtype=float)
    if data.ndim != 2 or min(data.shape) < 16:
        raise AutomatError(f"image of shape {data.shape} is too small to detect columns")
    if not np.any(np.isfinite(data)) or np.nanstd(data) == 0:
        raise AutomatError("the image is empty or constant")
    pixel = np.asarray(micrograph.pixel_size_A, dtype=float)
    scale = pixel / pixel.mean()

    progress(0.0, "lattice period from the Fourier transform")
    if min_separation_A is None:
        period = lattice_period_from_fft(data, pixel)
        if period is None:
            raise AutomatError("no lattice periodicity in the Fourier transform: give min_separation_A")
        min_separation_A = params.separation_per_period * period
    sep_px = float(min_separation_A) / pixel.mean()  # in mean pixels
    if not sep_px >= 1.5:
        raise AutomatError(f"min_separation_A={min_separation_A:.3g} Å is under 1.5 pixels: "
                           "the columns are not resolved at this pixel size")

    progress(0.2, "finding peaks")
    turned, flat = column_image(data, scale, spacing_px=2 * sep_px, signal=signal)
    candidates, contrast, noise = _candidates(flat, scale, sep_px)
    if len(candidates):
        reference = np.percentile(contrast, 95)
        threshold = threshold_scale * max(params.noise_sigmas * noise, params.relative_contrast * reference)
        candidates = candidates[contrast > threshold]

    progress(0.5, f"refining {len(candidates)} columns")
    radius = patch_radii_px(candidates, scale)
    # columns at the border are fitted too (their tails reach their neighbours), then dropped
    pos, intensity, sigma, pos_sigma, r2 = fit_gaussians(turned, candidates, radius, scale)  # offset = background
    margin = 0.25 * sep_px / scale
    inside = np.all((pos >= margin) & (pos <= np.array(data.shape) - 1 - margin), axis=1)
    keep = inside & _dedupe(pos, intensity, scale, 0.5 * sep_px)
    progress(1.0, f"{int(keep.sum())} columns")
    return Columns.from_positions(pos[keep], tuple(pixel), intensity=intensity[keep], sigma_px=sigma[keep],
                                  position_sigma_px=pos_sigma[keep], fit_r2=r2[keep])


def _candidates(flat: np.ndarray, scale: np.ndarray, sep_px: float):
    """Local maxima ``(n, 2)`` at least ``sep_px`` apart, their contrast, and the noise of the smoothed image.

    The contrast of a maximum is its height above the lowest point within about 1.2 separations.
    """
    sigma = 0.2 * sep_px / scale
    smooth = ndi.gaussian_filter(flat, sigma)
    ys, xs = np.nonzero(smooth == ndi.maximum_filter(smooth, size=3, mode="nearest"))
    neighbours = [smooth[np.clip(ys + dy, 0, smooth.shape[0] - 1), np.clip(xs + dx, 0, smooth.shape[1] - 1)]
                  for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    strict = smooth[ys, xs] > np.min(neighbours, axis=0)  # not inside a flat plateau
    ys, xs = ys[strict], xs[strict]
    contrast = smooth[ys, xs] - _local_floor(smooth, 1.2 * sep_px / scale)[ys, xs]
    pts = np.stack([ys, xs], axis=1).astype(float)
    keep = _dedupe(pts, contrast, scale, sep_px)
    return pts[keep], contrast[keep], _pixel_noise(flat) * _kernel_norm(sigma)


def _local_floor(image: np.ndarray, reach_px) -> np.ndarray:
    """Lowest value within about ``reach_px`` (per axis) of every pixel, from a block-minimum grid."""
    block = [max(1, int(r / 3)) for r in reach_px]
    pad = [(-n) % b for n, b in zip(image.shape, block)]
    padded = np.pad(image, [(0, pad[0]), (0, pad[1])], mode="edge")
    coarse = padded.reshape(padded.shape[0] // block[0], block[0], padded.shape[1] // block[1], block[1]).min((1, 3))
    coarse = ndi.minimum_filter(coarse, size=[2 * int(np.ceil(r / b)) + 1 for r, b in zip(reach_px, block)],
                                mode="nearest")
    return np.repeat(np.repeat(coarse, block[0], 0), block[1], 1)[:image.shape[0], :image.shape[1]]


def _dedupe(points: np.ndarray, weight: np.ndarray, scale: np.ndarray, distance_px: float) -> np.ndarray:
    """Mask keeping, of points closer than ``distance_px``, the one with the larger weight."""
    keep = np.ones(len(points), dtype=bool)
    if len(points) < 2:
        return keep
    tree = cKDTree(points * scale)
    pairs = tree.query_pairs(distance_px, output_type="ndarray")
    if not len(pairs):
        return keep
    w = np.nan_to_num(np.asarray(weight, float), nan=-np.inf)
    involved = np.unique(pairs)
    for i in involved[np.argsort(w[involved])[::-1]]:
        if keep[i]:
            close = tree.query_ball_point(points[i] * scale, distance_px)
            keep[[j for j in close if j != i]] = False
    return keep


def _pixel_noise(image: np.ndarray) -> float:
    """Robust standard deviation of white pixel noise (median of a second-difference filter)."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=float)
    response = ndi.convolve(image, kernel, mode="reflect")[1:-1, 1:-1]
    return float(np.median(np.abs(response)) / 0.6745 / 6.0)


def _kernel_norm(sigma) -> float:
    """Factor by which Gaussian smoothing with ``sigma`` [px per axis] scales white-noise deviation."""
    size = [2 * int(4 * s) + 1 for s in np.broadcast_to(sigma, (2,))]
    delta = np.zeros(size)
    delta[size[0] // 2, size[1] // 2] = 1.0
    return float(np.sqrt(np.sum(ndi.gaussian_filter(delta, sigma) ** 2)))
