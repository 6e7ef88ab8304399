"""Bragg peaks in the power spectrum of a lattice image, and the periodic Fourier (Bragg) filter.

Frequencies are in cycles per pixel, ``(ky, kx)``. Peaks are searched in the spectrum of the
Hann-windowed image, so the image edges (where the lattice is cut) leave no bright cross of leakage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Expected number of noise pixels passing the peak threshold (sets the threshold).
EXPECTED_FALSE_PEAKS = 0.05
#: Length [frequency pixels] of the windows along ky and kx in which a peak must stand out, and
#: the percentile of the power there taken as the local line level.
LINE_WINDOW = 15
LINE_PERCENTILE = 25
#: Rounds of lattice extrapolation beyond the image edges before the final filtering.
EXTRAPOLATIONS = 1
#: Mask width as a fraction of the shortest Bragg vector (at strength 1).
MASK_WIDTH = 0.15


@dataclass
class BraggAnalysis:
    """What the spectrum says: the Bragg peaks and how much of the image's structure they hold."""

    peaks_k: np.ndarray  # (n, 2) sub-pixel (ky, kx) [cycles/px] in the half plane kx >= 0
    periodicity_score: float  # power near Bragg peaks / structured (above noise, non-DC) power, 0..1
    noise_power: float  # white-noise floor of the windowed |FFT|^2 per frequency pixel
    window_energy: float  # sum of the squared window

    @property
    def noise_sigma(self) -> float:
        """Standard deviation of white noise that would give the high-frequency floor (image units)."""
        return float(np.sqrt(self.noise_power / self.window_energy))

    @property
    def n_peaks(self) -> int:
        """Distinct peaks in the full plane (Friedel mates counted)."""
        return int(np.sum(np.where(np.isclose(self.peaks_k[:, 1], 0.0), 1, 2))) if len(self.peaks_k) else 0

    @property
    def two_dimensional(self) -> bool:
        """True when the peaks span two independent directions (a 2D lattice)."""
        if len(self.peaks_k) < 2:
            return False
        k = self.peaks_k / np.linalg.norm(self.peaks_k, axis=1, keepdims=True)
        return bool(np.max(np.abs(np.cross(k[:, None], k[None]))) > 0.2)


def analyse(image: np.ndarray) -> BraggAnalysis:
    """Find Bragg peaks: local maxima far above the radially averaged (median) power."""
    img = np.asarray(image, dtype=float)
    ny, nx = img.shape
    window = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]
    power = np.abs(np.fft.rfft2((img - img.mean()) * window)) ** 2
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    radius = np.hypot(ky, kx)
    step = 1.0 / max(ny, nx)
    ring = np.minimum((radius / step).astype(int), int(0.5 / step))
    # background: radial median, raised where a line of power runs through the pixel (scan-line
    # noise, rows shifted by jitter): a peak must stand out along ky and along kx as well. The line
    # level is a low percentile (other peaks in the window do not raise it), scaled to a median.
    background = np.maximum(_ring_medians(power, ring)[ring], 1e-300)
    to_median = math.log(2.0) / -math.log(1.0 - LINE_PERCENTILE / 100.0)  # for exponential noise
    along_ky = ndimage.percentile_filter(power, LINE_PERCENTILE, size=(LINE_WINDOW, 1), mode="wrap")
    # extend to kx < 0 with the Friedel mates P(-ky, -kx) before filtering along kx
    mates = power[(-np.arange(ny)) % ny, 1:LINE_WINDOW // 2 + 1][:, ::-1]
    along_kx = ndimage.percentile_filter(np.hstack([mates, power]), LINE_PERCENTILE, size=(1, LINE_WINDOW),
                                         mode="nearest")[:, mates.shape[1]:]
    background = np.maximum(background, to_median * np.maximum(along_ky, along_kx))
    ratio = power / background
    # power of a noise pixel over the ring median ~ Exp(mean 1/ln 2): few false alarms expected
    n_half = power.size
    threshold = (math.log(n_half) - math.log(EXPECTED_FALSE_PEAKS)) / math.log(2.0)
    dc_radius = 3.0 * step
    peak = (ratio > threshold) & (radius > dc_radius) & (radius < 0.5)
    peak &= power == ndimage.maximum_filter(power, size=3, mode=("wrap", "nearest"))
    # score: share of the structured power (above the noise floor, outside the DC region) that sits
    # within two pixels of a Bragg peak
    weight = np.where(kx > 0, 2.0, 1.0) * (radius > dc_radius)  # rfft: a kx > 0 pixel stands for two
    noise = float(np.median(power[radius > 0.4]) / math.log(2.0)) if np.any(radius > 0.4) else 0.0
    structured = weight * np.maximum(power - noise, 0.0)
    near_peaks = ndimage.binary_dilation(peak, np.ones((5, 5), bool))
    total = float(structured.sum())
    score = float(structured[near_peaks].sum() / total) if total > 0 else 0.0
    peak[ny // 2 + 1:, 0] = False  # the kx = 0 column holds each peak twice (ky and -ky)
    iy, ix = np.nonzero(peak)
    log_power = np.log(power + 1e-300)
    py, px = _subpixel(log_power, iy, ix, axis=0), _subpixel(log_power, iy, ix, axis=1)
    peaks_k = np.column_stack([np.where(py > ny / 2, py - ny, py) / ny, px / nx])
    return BraggAnalysis(peaks_k, score, noise, float(np.sum(window ** 2)))


def bragg_filter(image: np.ndarray, analysis: BraggAnalysis, strength: float = 1.0) -> np.ndarray:
    """Keep Gaussian neighbourhoods of the Bragg peaks and of zero frequency.

    Mask width ``MASK_WIDTH · |g_min| / strength`` [cycles/px] (at least one frequency pixel). The
    image is padded so the filter does not wrap around, and the result is divided by the filtered
    image support: each kept peak is a Gaussian of the same width, so a lattice is restored
    right up to the edges (normalised convolution).
    """
    from scipy.fft import irfft2, next_fast_len, rfft2

    img = np.asarray(image, dtype=float)
    ny, nx = img.shape
    g_min = float(np.min(np.linalg.norm(analysis.peaks_k, axis=1))) if len(analysis.peaks_k) else 0.05
    sigma = max(MASK_WIDTH * g_min / max(strength, 1e-3), 1.0 / min(ny, nx))
    pad = int(math.ceil(3.0 / (2 * np.pi * sigma)))  # three real-space envelope widths
    shape = (next_fast_len(ny + 2 * pad, real=True), next_fast_len(nx + 2 * pad, real=True))
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    low = np.exp(-0.5 * (ky ** 2 + kx ** 2) / sigma ** 2)
    mask = low.copy()
    reach = 4 * sigma
    centres = np.concatenate([analysis.peaks_k, -analysis.peaks_k]) if len(analysis.peaks_k) else np.zeros((0, 2))
    for cy, cx in centres:
        if cx < -reach:
            continue
        dy = (ky[:, 0] - cy + 0.5) % 1.0 - 0.5  # periodic in ky
        rows, cols = np.abs(dy) < reach, np.abs(kx[0] - cx) < reach
        if rows.any() and cols.any():
            sub = np.exp(-0.5 * (dy[rows, None] ** 2 + (kx[0, cols] - cx) ** 2) / sigma ** 2)
            mask[np.ix_(rows, cols)] = np.maximum(mask[np.ix_(rows, cols)], sub)
    mean = img.mean()
    inside = np.zeros(shape)
    inside[:ny, :nx] = 1.0
    data = np.zeros(shape)
    data[:ny, :nx] = img - mean
    for _ in range(EXTRAPOLATIONS + 1):
        support = irfft2(rfft2(inside) * low, shape)
        lattice = irfft2(rfft2(data) * mask, shape) / np.maximum(support, 0.05)
        # continue the lattice outside the image, fading with the support, and filter again:
        # the image edges are then no longer a hard cut
        taper = np.clip(support, 0.0, 1.0)
        taper[:ny, :nx] = 1.0
        data = np.where(inside > 0, data, lattice * taper)
        inside = taper
    return lattice[:ny, :nx] + mean


def _ring_medians(values: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Median of ``values`` in each integer ``ring`` (0..max), by one sort."""
    flat_ring = ring.ravel()
    order = np.lexsort((values.ravel(), flat_ring))
    sorted_values = values.ravel()[order]
    counts = np.bincount(flat_ring, minlength=flat_ring.max() + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(len(counts), np.nan)
    ok = counts > 0
    out[ok] = sorted_values[starts[ok] + counts[ok] // 2]
    # empty rings (none at this sampling, but be safe): nearest filled value
    if not ok.all():
        out = np.interp(np.arange(len(out)), np.flatnonzero(ok), out[ok])
    return out


def _subpixel(logp: np.ndarray, iy: np.ndarray, ix: np.ndarray, axis: int) -> np.ndarray:
    """Parabolic sub-pixel peak position along ``axis`` (0 wraps, 1 is clamped at the edges)."""
    ny, nx = logp.shape
    if axis == 0:
        c, lo, hi = logp[iy, ix], logp[(iy - 1) % ny, ix], logp[(iy + 1) % ny, ix]
        base = iy.astype(float)
    else:
        c, lo, hi = logp[iy, ix], logp[iy, np.clip(ix - 1, 0, nx - 1)], logp[iy, np.clip(ix + 1, 0, nx - 1)]
        base = ix.astype(float)
        edge = (ix == 0) | (ix == nx - 1)
        lo, hi = np.where(edge, c, lo), np.where(edge, c, hi)
    curv = lo - 2 * c + hi
    shift = np.where(curv < 0, 0.5 * (lo - hi) / np.where(curv < 0, curv, -1.0), 0.0)
    return base + np.clip(shift, -0.5, 0.5)
