"""Zone-axis projections of a 3D structure: the 2D lattice and the atom columns seen along [uvw].

A structure seen along the lattice direction ``t = u a + v b + w c`` is a periodic 2D pattern of
atom columns. Its translation lattice is spanned by the projections of two integer vectors
``p, q`` that complete ``t`` to a unimodular basis (``det[p, q, t] = ±1``). Column weights are
``Σ Z^n`` per period ``|t|`` (HAADF Z-contrast). Lengths in Å, angles in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import reduce
from itertools import product

import numpy as np

from ..geometry2d import gauss_reduce

#: Columns whose projections lie closer than this are one column [Å].
MERGE_A = 0.2


@dataclass
class Pattern2D:
    """A periodic 2D pattern of columns in one cell.

    ``basis_frac3`` (2, 3): the cell vectors as 3D vectors in fractional coordinates of the
    structure's lattice (their projections ⟂ t are the 2D cell); ``cell_A`` (2, 2): the cell
    vectors in the in-plane frame [Å]; ``frac`` (n, 2): column positions along the cell vectors;
    ``composition``: atoms per period ``|t|`` per column; ``weight`` (n,): ``Σ Z^n`` per column.
    """

    basis_frac3: np.ndarray
    cell_A: np.ndarray
    frac: np.ndarray
    composition: list[dict[str, float]]
    weight: np.ndarray

    @property
    def a_A(self) -> float:
        return float(np.linalg.norm(self.cell_A[0]))

    @property
    def b_A(self) -> float:
        return float(np.linalg.norm(self.cell_A[1]))

    @property
    def gamma_deg(self) -> float:
        return _angle_deg(self.cell_A[0], self.cell_A[1])

    @property
    def area_A2(self) -> float:
        return float(abs(np.linalg.det(self.cell_A)))

    def __len__(self) -> int:
        return len(self.frac)


@dataclass
class Projection(Pattern2D):
    """A structure seen along ``zone_axis`` [uvw]: the full column pattern in the projected cell.

    ``p``, ``q``, ``t`` are the integer vectors (lattice coordinates) with ``det = ±1``; the cell
    vectors are the projections of ``p`` and ``q`` (Gauss-reduced). ``t_A`` is the period along
    the beam [Å] and ``frame`` (3, 3) the Cartesian in-plane axes e1, e2 and the beam direction.
    """

    zone_axis: tuple[int, int, int] = (0, 0, 1)
    p: np.ndarray = field(default_factory=lambda: np.zeros(3, int))
    q: np.ndarray = field(default_factory=lambda: np.zeros(3, int))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3, int))
    t_A: float = 0.0
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    z_exponent: float = 1.7


def _angle_deg(u, v) -> float:
    c = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _ext_gcd(a: int, b: int) -> tuple[int, int, int]:
    """``(g, x, y)`` with ``a x + b y = g = gcd(a, b) >= 0``."""
    x0, y0, x1, y1 = 1, 0, 0, 1
    while b:
        k, a, b = a // b, b, a % b
        x0, x1 = x1, x0 - k * x1
        y0, y1 = y1, y0 - k * y1
    if a < 0:
        a, x0, y0 = -a, -x0, -y0
    return a, x0, y0


def unimodular_completion(t) -> tuple[np.ndarray, np.ndarray]:
    """Integer vectors ``p, q`` with ``det[p, q, t] = ±1`` for a primitive integer vector ``t``."""
    u, v, w = (int(x) for x in t)
    if reduce(math.gcd, (u, v, w)) != 1:
        raise ValueError(f"zone axis {tuple(t)} is not a primitive integer vector")
    g, x, y = _ext_gcd(u, v)  # x u + y v = g
    if g == 0:  # t = (0, 0, ±1)
        return np.array([1, 0, 0]), np.array([0, 1, 0])
    _, s, r = _ext_gcd(g, w)  # s g + r w = 1
    # Integer column operations with det 1 that take t to (0, 0, 1): (u, v, w) -> (g, 0, w) -> (0, 0, 1).
    c1 = np.array([[x, -v // g, 0], [y, u // g, 0], [0, 0, 1]])
    c2 = np.array([[w, 0, s], [0, 1, 0], [-g, 0, r]])
    basis = np.round(np.linalg.inv(c1 @ c2)).astype(int)  # rows p, q, t
    return basis[0], basis[1]


def project(structure, zone_axis, z_exponent: float = 1.7, merge_A: float = MERGE_A) -> Projection:
    """The column pattern of ``structure`` (pymatgen Structure) seen along ``zone_axis`` [uvw].

    ``zone_axis`` is in the lattice coordinates of ``structure``. Atoms whose projections lie
    within ``merge_A`` [Å] form one column; weights are ``Σ occupancy · Z^z_exponent`` per period.
    """
    t = np.asarray(zone_axis, dtype=int)
    p, q = unimodular_completion(t)
    lat = structure.lattice.matrix
    t_cart = t @ lat
    t_len = float(np.linalg.norm(t_cart))
    beam = t_cart / t_len

    def inplane(v):
        return v - (v @ beam) * beam

    e1 = inplane(p @ lat)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(beam, e1)
    frame = np.array([e1, e2, beam])
    to2d = lambda v: np.array([v @ e1, v @ e2])  # noqa: E731
    a2, b2, m = gauss_reduce(to2d(p @ lat), to2d(q @ lat))
    p, q = m @ np.array([p, q])
    basis = np.array([p, q, t])
    cell = np.array([a2, b2])
    # Fractional coordinates in the (p, q, t) basis: the first two are the in-plane positions.
    frac3 = np.array(structure.frac_coords) @ np.linalg.inv(basis)
    frac2 = np.mod(frac3[:, :2], 1.0)
    labels = _cluster_periodic(frac2, cell, merge_A)
    frac, comps = [], []
    for k in range(labels.max() + 1):
        idx = np.flatnonzero(labels == k)
        ref = frac2[idx[0]]
        delta = frac2[idx] - ref
        frac.append(np.mod(ref + np.mean(delta - np.round(delta), axis=0), 1.0))
        comp: dict[str, float] = {}
        for i in idx:
            for el, occ in structure[int(i)].species.items():
                sym = getattr(el, "symbol", str(el))
                comp[sym] = comp.get(sym, 0.0) + float(occ)
        comps.append(comp)
    weights = np.array([column_weight(c, z_exponent) for c in comps])
    return Projection(basis_frac3=np.array([p, q], float), cell_A=cell, frac=np.array(frac).reshape(-1, 2),
                      composition=comps, weight=weights, zone_axis=tuple(int(x) for x in t), p=p, q=q, t=t,
                      t_A=t_len, frame=frame, z_exponent=z_exponent)


def column_weight(composition: dict[str, float], z_exponent: float = 1.7) -> float:
    """HAADF weight ``Σ count · Z^n`` of one column."""
    from pymatgen.core import Element

    return float(sum(n * Element(el).Z ** z_exponent for el, n in composition.items()))


def periodic_distances(f1: np.ndarray, f2: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Shortest distances [Å] between fractional positions ``f1`` (n, 2) and ``f2`` (m, 2) in a
    reduced 2D ``cell`` (rows are the cell vectors), over periodic images."""
    d = np.asarray(f1)[:, None, :] - np.asarray(f2)[None, :, :]
    d -= np.round(d)
    shifts = np.array(list(product((-1, 0, 1), repeat=2)), float)
    cart = (d[:, :, None, :] + shifts[None, None]) @ cell
    return np.sqrt((cart ** 2).sum(-1)).min(-1)


def _cluster_periodic(frac: np.ndarray, cell: np.ndarray, tol: float) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components

    close = periodic_distances(frac, frac, cell) < tol
    return connected_components(close, directed=False)[1]


def translation_cell(pattern: Pattern2D, pos_tol_A: float = MERGE_A, labelled: bool = True) -> Pattern2D:
    """The pattern in the smallest cell of its translation lattice: a sub-cell when a fractional
    translation maps every column onto one of the same composition (onto any column when
    ``labelled`` is False: geometry only). The cell is Gauss-reduced and the columns folded into
    it; a site keeps the mean composition and weight of the columns folded onto it."""
    n = len(pattern)
    if n == 0:
        return pattern
    same = np.ones((n, n), bool)
    if labelled:
        els = sorted({el for c in pattern.composition for el in c})
        counts = np.array([[c.get(el, 0.0) for el in els] for c in pattern.composition])
        same = np.abs(counts[:, None, :] - counts[None, :, :]).max(-1) < 1e-3
    new = np.eye(2)
    # Pseudo-translations accepted at a loose tolerance need not form a group: tighten until they do.
    for tol in (pos_tol_A, pos_tol_A / 4, 0.01):
        taus = [np.zeros(2)]
        for j in np.flatnonzero(same[0])[1:]:
            tau = pattern.frac[j] - pattern.frac[0]
            # A few columns reject most candidates before all are checked.
            if all(np.all(np.any((periodic_distances(pattern.frac[part] + tau, pattern.frac, pattern.cell_A) < tol)
                                 & same[part], axis=1)) for part in (slice(0, 8), slice(8, None))):
                taus.append(np.mod(tau, 1.0))
        sub = _sub_lattice(np.array(taus), pattern.cell_A)
        if sub is not None:
            new = sub
            break
    cell = new @ pattern.cell_A
    a2, b2, m = gauss_reduce(cell[0], cell[1])
    new = m @ new
    frac = np.mod(pattern.frac @ np.linalg.inv(new), 1.0)
    cell = np.array([a2, b2])
    keep: list[int] = []
    for i in range(n):
        if not keep or periodic_distances(frac[i:i + 1], frac[keep], cell).min() >= pos_tol_A:
            keep.append(i)
    # Each kept site carries the mean composition and weight of the columns folded onto it.
    site = periodic_distances(frac, frac[keep], cell).argmin(axis=1)
    comps = []
    for k in range(len(keep)):
        members = np.flatnonzero(site == k)
        mean: dict[str, float] = {}
        for i in members:
            for el, c in pattern.composition[i].items():
                mean[el] = mean.get(el, 0.0) + c / len(members)
        comps.append(mean)
    weight = np.array([pattern.weight[site == k].mean() for k in range(len(keep))])
    return Pattern2D(basis_frac3=new @ pattern.basis_frac3, cell_A=cell, frac=frac[keep], composition=comps,
                     weight=weight)


def _sub_lattice(taus: np.ndarray, cell: np.ndarray):
    """Basis (fractional, 2x2) of the lattice spanned by the integers and the translations ``taus``
    (which include 0), or None when the translations are not a group."""
    if len(taus) == 1:
        return np.eye(2)
    pts = (taus[:, None, :] + np.array(list(product(range(-2, 2), repeat=2)))[None]).reshape(-1, 2)
    lengths = np.linalg.norm(pts @ cell, axis=1)
    pts, lengths = pts[lengths > 1e-6], lengths[lengths > 1e-6]
    order = np.argsort(lengths, kind="stable")
    first = pts[order[0]]
    second = next(v for v in pts[order[1:]] if abs(first[0] * v[1] - first[1] * v[0]) > 1e-6)
    new = np.array([first, second])
    coeffs = taus @ np.linalg.inv(new)
    if abs(abs(np.linalg.det(new)) * len(taus) - 1) > 1e-3 or np.abs(coeffs - np.round(coeffs)).max() > 1e-3:
        return None
    return new


def visible_mask(weight: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Columns at least ``fraction`` of the heaviest (O columns next to Sr in SrTiO3 [001]
    HAADF are ~7%: invisible)."""
    weight = np.asarray(weight, float)
    return weight >= fraction * weight.max()


def subpattern(pattern: Pattern2D, keep) -> Pattern2D:
    """The columns ``keep`` (indices or mask) of a pattern, in the same cell."""
    keep = np.flatnonzero(np.asarray(keep)) if np.asarray(keep).dtype == bool else np.asarray(keep, int)
    return Pattern2D(pattern.basis_frac3, pattern.cell_A, pattern.frac[keep],
                     [pattern.composition[i] for i in keep], pattern.weight[keep])


def visible_columns(proj: Pattern2D, fraction: float = 0.1, labelled: bool = True) -> Pattern2D:
    """The columns brighter than ``fraction`` of the heaviest, in the translation cell of that
    visible pattern (columns told apart by composition unless ``labelled`` is False)."""
    return translation_cell(subpattern(proj, visible_mask(proj.weight, fraction)), labelled=labelled)


def symmetry_unique_axes(structure, max_index: int = 2, symprec: float = 0.1) -> list[tuple[int, int, int]]:
    """All primitive [uvw] with ``|u|,|v|,|w| <= max_index``, one per class of directions that
    the point group (and ±) maps onto each other; low indices first."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ops = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(cartesian=False)
    rots = np.unique(np.round([op.rotation_matrix for op in ops]).astype(int), axis=0)
    seen: set[tuple[int, int, int]] = set()
    axes = []
    rng = range(-max_index, max_index + 1)
    cands = [c for c in product(rng, rng, rng) if any(c) and reduce(math.gcd, c) == 1]
    cands.sort(key=lambda c: (sum(abs(x) for x in c), c))
    for c in cands:
        if c in seen:
            continue
        orbit = {tuple(int(x) for x in r @ np.array(c)) for r in rots}
        orbit |= {tuple(-x for x in o) for o in orbit}
        seen |= orbit
        axes.append(_conventional_name(orbit))
    return axes


def _conventional_name(orbit: set[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The usual name of a class of directions: [001] for single axes, else descending indices
    ([110], [210], [211]) when the class has that member, else the largest non-negative one."""
    for c in orbit:
        if sum(x != 0 for x in c) == 1 and c[2] == 1:
            return c
    for c in orbit:
        if list(c) == sorted(c, reverse=True) and min(c) >= 0:
            return c
    return max(orbit, key=lambda c: (sum(x >= 0 for x in c), c))


def to_lattice2d(pattern: Pattern2D, uncertainty_A: float = float("nan")):
    """The measured-lattice object a perfect image of ``pattern`` would give: basis from its cell,
    one motif site per column with intensity = column weight (for tests and benchmarks)."""
    from ..model import Lattice2D, MotifSite

    motif = [MotifSite((float(f[0]), float(f[1])), float(w), i, 1, "+".join(sorted(c)))
             for i, (f, w, c) in enumerate(zip(pattern.frac, pattern.weight, pattern.composition))]
    return Lattice2D(pattern.cell_A[0], pattern.cell_A[1], motif=motif, uncertainty_A=uncertainty_A)
