"""2D lattice geometry shared by detection, retrieval and reconstruction: basis reduction, the
equivalent settings of a cell, the measured cell in its own frame, and periodic distances.

Convention: a 2D basis ``(a, b)`` is *Gauss-reduced* when ``|a| <= |b|`` and ``|a·b| <= |a|²/2``
(γ within 60–120°). A *measured* lattice (``reduce_basis``) also takes γ in 90–120° and ``a``
pointing into the upper half plane of its ``(y, x)`` frame. Vectors are in Å unless named ``frac``.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np

from .model import AutomatError, Lattice2D

#: The 8 settings of a reduced cell ``(A, B)``: rows of ``[v1; v2] = M [A; B]`` (swap, mirror and
#: ``b ± a``), under which one lattice is compared with another.
SETTINGS = np.array([[[1, 0], [0, 1]], [[1, 0], [0, -1]], [[0, 1], [1, 0]], [[0, 1], [-1, 0]],
                     [[1, 0], [1, 1]], [[1, 0], [-1, 1]], [[0, 1], [1, 1]], [[0, 1], [1, -1]]])
SETTINGS_INV = np.linalg.inv(SETTINGS)
#: Periodic images to try for the nearest copy of a fractional offset.
_IMAGES = np.array(list(product((-1, 0, 1), repeat=2)), float)


def gauss_reduce(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduction of a 2D basis: ``(a', b', M)`` with ``[a'; b'] = M [a; b]``, Gauss-reduced."""
    m = np.eye(2, dtype=int)
    vecs = [np.asarray(a, float), np.asarray(b, float)]
    for _ in range(100):
        if vecs[0] @ vecs[0] > vecs[1] @ vecs[1]:
            vecs.reverse()
            m = m[::-1].copy()
        k = int(round(vecs[0] @ vecs[1] / (vecs[0] @ vecs[0])))
        if k == 0:
            break
        vecs[1] = vecs[1] - k * vecs[0]
        m[1] -= k * m[0]
    return vecs[0], vecs[1], m


def reduce_basis(a, b) -> tuple[np.ndarray, np.ndarray]:
    """The measured-lattice form of a basis: Gauss-reduced, γ in 90–120°, ``a`` with ``y > 0`` (or
    ``y = 0, x > 0``)."""
    a, b, _ = gauss_reduce(a, b)
    a, b = a.copy(), b.copy()
    if a @ b > 0:
        b = -b
    if a[1] < 0 or (a[1] == 0 and a[0] < 0):
        a, b = -a, -b
    return a, b


def measured_cell(lattice: Lattice2D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The measured cell Gauss-reduced: ``(cell (2, 2) [Å] in its own frame, motif fractional
    positions (k, 2) in that cell, intensities (k,))``. The frame puts a along x."""
    va, vb = np.asarray(lattice.a_vec_A, float), np.asarray(lattice.b_vec_A, float)
    if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))) or \
            abs(va[0] * vb[1] - va[1] * vb[0]) < 1e-6 * (va @ va + vb @ vb):
        raise AutomatError("the measured lattice is degenerate (parallel, zero or undefined basis vectors)")
    a2, b2, m = gauss_reduce(va, vb)
    a, b = np.linalg.norm(a2), np.linalg.norm(b2)
    cosg = float(a2 @ b2) / (a * b)
    cell = np.array([[a, 0.0], [b * cosg, b * math.sqrt(max(0.0, 1 - cosg ** 2))]])
    frac = np.array([s.frac for s in lattice.motif], float).reshape(-1, 2)
    frac = np.mod(frac @ np.linalg.inv(m), 1.0) if len(frac) else frac
    intensity = np.array([s.intensity for s in lattice.motif], float)
    return cell, frac, intensity


def periodic_distance(f1: np.ndarray, f2: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Distances [Å] between fractional positions ``f1`` (..., k, 2) and ``f2`` (..., n, 2) to the
    nearest periodic copy, in the cell whose rows are the basis vectors: (..., k, n)."""
    d = f1[..., :, None, :] - f2[..., None, :, :]
    d -= np.round(d)
    cart = (d[..., None, :] + _IMAGES) @ cell
    return np.sqrt((cart ** 2).sum(-1)).min(-1)
