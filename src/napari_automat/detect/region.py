"""Where the crystal is: a local periodicity map that separates lattice from vacuum, amorphous
support and noise.

Each half-overlapping tile of the image, under a round Hann window, gets a power spectrum; every
bin is divided by the lower quartile of its ring of equal spatial frequency (which a few Bragg
peaks do not move), so a featureless or amorphous tile gives values of order 1 and a lattice gives
a few bins far above its ring. The tile's score is the mean of its strongest whitened bins. All
lengths here are in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from .params import DEFAULT_DETECT

#: Bins averaged into a tile's score (a lattice's strongest reflections come in ± pairs).
TOP_BINS = 4
#: Quantile of a ring's bins that sets its level (low, so that the Bragg peaks, which can fill
#: a good part of a low-frequency ring, do not raise it).
RING_QUANTILE = 0.25
#: Rings whose level is below this fraction of the tile's strongest ring are not scored.
DYNAMIC_RANGE = 1e-4
#: Rings below this spatial frequency [cycles per tile] are skipped (background, thickness).
MIN_RING = 3


@dataclass
class CrystalRegion:
    """The crystalline part of an image.

    ``mask``: boolean ``(y, x)`` like the image; ``fraction``: its mean (0–1); ``bbox``:
    ``[y0, y1, x0, x1]`` in pixels (ends exclusive; the whole image when the mask is empty);
    ``score``: the periodicity of each tile (``(ny, nx)``, dimensionless); ``tile_px``: tile size.
    """

    mask: np.ndarray
    fraction: float
    bbox: list[int]
    score: np.ndarray
    tile_px: int


def periodicity_map(image: np.ndarray, tile_px: int) -> np.ndarray:
    """Score ``(ny, nx)`` of the half-overlapping ``tile_px``-square tiles of a 2D image
    (row ``i`` covers pixels ``i * tile_px // 2`` to that plus ``tile_px``)."""
    img = np.asarray(image, dtype=float)
    step = tile_px // 2
    tiles = sliding_window_view(img, (tile_px, tile_px))[::step, ::step]
    ny, nx = tiles.shape[:2]
    tiles = tiles.reshape(ny * nx, tile_px, tile_px)
    tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    # a round window: its leakage from strong low frequencies spreads evenly over each ring (a
    # separable one would pile it onto the axes, where it looks like Bragg peaks)
    centre = (tile_px - 1) / 2
    radius = np.hypot(*(np.mgrid[:tile_px, :tile_px] - centre)) / (tile_px / 2)
    window = np.where(radius < 1, 0.5 + 0.5 * np.cos(np.pi * np.minimum(radius, 1)), 0)
    power = np.abs(np.fft.rfft2(tiles * window)) ** 2
    ky = np.fft.fftfreq(tile_px) * tile_px
    kx = np.fft.rfftfreq(tile_px) * tile_px
    ring = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(int).ravel()
    power = power.reshape(len(tiles), -1)
    rings = [power[:, ring == r] for r in range(MIN_RING, tile_px // 2)]
    floors = np.stack([np.quantile(p, RING_QUANTILE, axis=1) for p in rings], axis=1)
    # rings far below the tile's strongest carry only the window's leakage pattern, not a signal
    usable = floors >= DYNAMIC_RANGE * floors.max(axis=1, keepdims=True)
    whitened = np.concatenate([np.where(usable[:, [i]], p / np.maximum(floors[:, [i]], 1e-300), 0)
                               for i, p in enumerate(rings)], axis=1)
    top = np.partition(whitened, -TOP_BINS, axis=1)[:, -TOP_BINS:]
    return top.mean(axis=1).reshape(ny, nx)


def crystalline_region(image: np.ndarray, tile_px: int = 128,
                       threshold: float = DEFAULT_DETECT.region_threshold) -> CrystalRegion:
    """The crystalline region of a 2D image from :func:`periodicity_map`.

    ``tile_px`` should span about six lattice periods or more (128 px suits 3–20 px periods); it is
    reduced to fit small images. The tile scores are interpolated to the pixels (on a log scale)
    and thresholded; islands smaller than a quarter tile are dropped and holes filled.
    """
    img = np.asarray(image, dtype=float)
    tile_px = int(min(tile_px, 2 ** int(np.log2(max(min(img.shape), 16)))))
    step = tile_px // 2
    score = periodicity_map(img, tile_px)
    # tile i is centred at i * step + tile_px / 2; interpolate log-scores to every pixel
    yy = (np.arange(img.shape[0]) + 0.5 - tile_px / 2) / step
    xx = (np.arange(img.shape[1]) + 0.5 - tile_px / 2) / step
    grid = np.meshgrid(np.clip(yy, 0, score.shape[0] - 1), np.clip(xx, 0, score.shape[1] - 1), indexing="ij")
    mask = ndimage.map_coordinates(np.log(score), grid, order=1) > np.log(threshold)
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= step ** 2))
    mask = ndimage.binary_fill_holes(mask)
    if mask.any():
        ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        bbox = [int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1]
    else:
        bbox = [0, img.shape[0], 0, img.shape[1]]
    return CrystalRegion(mask, float(mask.mean()), bbox, score, tile_px)


def polygon_region(vertices, shape) -> tuple[list[int], np.ndarray]:
    """The pixels of an image of ``shape`` ``(h, w)`` whose centres lie in the polygon ``vertices``
    ``[[y, x], …]`` [px]: their box ``[y0, y1, x0, x1]`` (ends exclusive) and their mask within the
    box. A ValueError when the vertices are not a polygon or it holds no pixel of the image."""
    from skimage.measure import points_in_poly

    poly = np.asarray(vertices, dtype=float)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3 or not np.all(np.isfinite(poly)):
        raise ValueError(f"needs three or more (y, x) vertices, got {np.shape(vertices)}")
    lo = np.clip(np.ceil(poly.min(axis=0)), 0, shape).astype(int)
    hi = np.clip(np.floor(poly.max(axis=0)) + 1, 0, shape).astype(int)
    yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]]
    mask = points_in_poly(np.column_stack([yy.ravel(), xx.ravel()]), poly).reshape(yy.shape)
    if not mask.any():
        raise ValueError(f"holds no pixel of the {shape[0]}x{shape[1]} px image")
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    bbox = [int(lo[0] + ys[0]), int(lo[0] + ys[-1] + 1), int(lo[1] + xs[0]), int(lo[1] + xs[-1] + 1)]
    return bbox, mask[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
