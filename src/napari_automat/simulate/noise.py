"""Acquisition effects for simulated images: dose (Poisson) noise, scan jitter, drift, background.

Images are ``(y, x)`` arrays; ``rng`` is a ``numpy.random.Generator``, a seed, or None (fresh).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..model import AutomatError


def as_rng(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a generator, a seed or None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def add_dose_noise(image: np.ndarray, dose_e_per_A2: float, pixel_size_A, rng=None,
                   absolute: bool = False) -> np.ndarray:
    """Poisson counts for an electron dose ``dose_e_per_A2`` [e/Å²] and ``pixel_size_A`` [Å] (or (y, x)).

    ``absolute=False`` (intensities in arbitrary units): the image is scaled so its mean is
    ``dose · pixel area`` counts. ``absolute=True``: values are fractions of the incident beam
    reaching the detector (as abTEM gives), so expected counts are ``value · dose · pixel area``.
    Returns float32 counts (electrons per pixel); negative inputs count as zero.
    """
    if dose_e_per_A2 is None or dose_e_per_A2 <= 0:
        raise AutomatError(f"dose must be a positive number of electrons per Å², got {dose_e_per_A2}")
    py, px = np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (2,))
    per_pixel = float(dose_e_per_A2) * py * px
    img = np.clip(np.asarray(image, dtype=float), 0.0, None)
    if not absolute:
        mean = img.mean()
        if not mean > 0:
            raise AutomatError("cannot add dose noise to an image with no positive signal")
        img = img / mean
    return as_rng(rng).poisson(img * per_pixel).astype(np.float32)


def scan_jitter(image: np.ndarray, sigma_px: float, rng=None) -> np.ndarray:
    """Shift each scan line (row) sideways by a random Gaussian offset of ``sigma_px`` pixels."""
    img = np.asarray(image, dtype=float)
    offsets = as_rng(rng).normal(0.0, sigma_px, img.shape[0])
    rows, cols = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(float)
    return ndimage.map_coordinates(img, [rows, cols + offsets[:, None]], order=3, mode="nearest")


def drift(image: np.ndarray, velocity_px_per_line, positions_px=None):
    """Linear specimen drift during a raster scan.

    Line ``i`` is recorded after the specimen moved ``i · velocity_px_per_line`` ``(vy, vx)`` pixels,
    so pixel ``(i, j)`` shows the point ``(i, j) + i · v`` of the still image. Returns
    ``(image, positions_px)`` where the given still-image positions ``(n, 2)`` are mapped to where
    they appear in the drifted image (``None`` when not given).
    """
    vy, vx = (float(v) for v in velocity_px_per_line)
    if vy <= -1:
        raise AutomatError("drift along y must be slower than one pixel per line")
    img = np.asarray(image, dtype=float)
    rows, cols = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(float)
    out = ndimage.map_coordinates(img, [rows * (1 + vy), cols + rows * vx], order=3, mode="nearest")
    if positions_px is None:
        return out, None
    pos = np.asarray(positions_px, dtype=float).reshape(-1, 2)
    i = pos[:, 0] / (1 + vy)
    return out, np.column_stack([i, pos[:, 1] - i * vx])


def background(shape, amplitude: float, length_px: float, rng=None) -> np.ndarray:
    """A smooth random background: zero-mean, standard deviation ``amplitude``, features ~``length_px``."""
    field = ndimage.gaussian_filter(as_rng(rng).standard_normal(tuple(shape)), length_px, mode="wrap")
    field -= field.mean()
    std = field.std()
    return field * (amplitude / std) if std > 0 else field
