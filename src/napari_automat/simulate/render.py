"""Turn one period of a simulated image into an output field (any size, pixel size and rotation)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def sample_periodic(values: np.ndarray, extent_A, points_xy_A: np.ndarray, fine_sampling_A: float = 0.03) -> np.ndarray:
    """Evaluate a periodic, band-limited image at arbitrary points.

    ``values`` ``(ny, nx)`` samples one rectangular period ``extent_A = (Lx, Ly)`` [Å] on a grid
    starting at the origin (no end point); ``points_xy_A`` ``(..., 2)`` are ``(x, y)`` [Å].
    The period is Fourier-upsampled to about ``fine_sampling_A`` then read with periodic cubic splines.
    """
    from scipy.signal import resample

    fine = np.asarray(values, dtype=float)
    for axis, length in ((0, extent_A[1]), (1, extent_A[0])):
        n = max(fine.shape[axis], math.ceil(length / fine_sampling_A))
        if n > fine.shape[axis]:
            fine = resample(fine, n, axis=axis)
    coords = [np.asarray(points_xy_A[..., 1]) / extent_A[1] * fine.shape[0],
              np.asarray(points_xy_A[..., 0]) / extent_A[0] * fine.shape[1]]
    return ndimage.map_coordinates(fine, coords, order=3, mode="grid-wrap")


def integrate_gradient(gx: np.ndarray, gy: np.ndarray, sampling_A, periodic: bool) -> np.ndarray:
    """Potential whose gradient is ``(gx, gy)`` (arrays ``(y, x)``), by Fourier integration.

    ``sampling_A``: pixel size [Å], one number or ``(y, x)``.
    ``periodic=False`` mirrors the field first (even extension) so edges do not wrap around.
    The result has zero mean.
    """
    if not periodic:
        gx = np.block([[gx, -gx[:, ::-1]], [gx[::-1], -gx[::-1, ::-1]]])
        gy = np.block([[gy, gy[:, ::-1]], [-gy[::-1], -gy[::-1, ::-1]]])
    ny, nx = gx.shape
    sy, sx = np.broadcast_to(np.asarray(sampling_A, dtype=float), (2,))
    ky = np.fft.fftfreq(ny, sy)[:, None]
    kx = np.fft.fftfreq(nx, sx)[None, :]
    k2 = kx ** 2 + ky ** 2
    k2[0, 0] = 1.0
    spec = (kx * np.fft.fft2(gx) + ky * np.fft.fft2(gy)) / (2j * np.pi * k2)
    spec[0, 0] = 0.0
    out = np.fft.ifft2(spec).real
    return out if periodic else out[: ny // 2, : nx // 2]


def blur_periodic(values: np.ndarray, extent_A, sigma_A: float) -> np.ndarray:
    """Gaussian blur (standard deviation ``sigma_A`` [Å]) of one period ``(ny, nx)`` of extent ``(Lx, Ly)``."""
    if sigma_A <= 0:
        return values
    ny, nx = values.shape
    ky = np.fft.fftfreq(ny, extent_A[1] / ny)[:, None]
    kx = np.fft.fftfreq(nx, extent_A[0] / nx)[None, :]
    return np.fft.ifft2(np.fft.fft2(values) * np.exp(-2 * (np.pi * sigma_A) ** 2 * (kx ** 2 + ky ** 2))).real
