"""2D lattice bases: Gauss (Lagrange) reduction to a conventional form."""

from __future__ import annotations

import numpy as np


def reduce_basis(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-reduced basis: ``|a| <= |b|``, ``90° <= gamma <= 120°``, ``a`` pointing to +x."""
    a, b = np.asarray(a, dtype=float).copy(), np.asarray(b, dtype=float).copy()
    for _ in range(100):
        if a @ a > b @ b:
            a, b = b, a
        m = np.rint((a @ b) / (a @ a))
        if m == 0:
            break
        b = b - m * a
    if a @ b > 0:
        b = -b
    if a[1] < 0 or (a[1] == 0 and a[0] < 0):
        a, b = -a, -b
    return a, b
