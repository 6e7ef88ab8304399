"""Undo a linear scan distortion: the raster's slow axis sheared against the fast one and stretched.

A scan that drifts during the frame, or whose coils are not square or equally calibrated, records
the point ``(x, y)`` at ``(x + h·y, (1 + aspect)·y)`` about the frame's centre (x the fast axis,
rows the slow one; ``shear = h / (1 + aspect)``, as ``decision.scan_distortion`` reports it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def undistort_scan(data: np.ndarray, shear: float, aspect: float, order: int = 3) -> np.ndarray:
    """``data`` (``(y, x)`` or ``(frames, y, x)``) resampled so that a scan distorted by ``shear``
    and ``aspect`` becomes square and equally scaled, at the fast axis's pixel size; the frame's
    centre stays in place and the edges take the nearest value. ``order``: spline order (0 for masks)."""
    arr = np.asarray(data)
    if arr.ndim == 3:
        return np.stack([undistort_scan(frame, shear, aspect, order) for frame in arr])
    stretch = 1.0 + aspect
    # output (y, x) reads input (stretch·y, x + shear·stretch·y), both about the centre
    matrix = np.array([[stretch, 0.0], [shear * stretch, 1.0]])
    centre = 0.5 * (np.array(arr.shape, float) - 1)
    offset = centre - matrix @ centre
    out = ndimage.affine_transform(arr.astype(float) if order else arr, matrix, offset=offset, order=order,
                                   mode="nearest")
    return out.astype(arr.dtype) if order == 0 else out
