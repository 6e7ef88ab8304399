"""The 2D translation lattice of a set of columns and its motif (the column sites of one cell).

A vector is a lattice translation when it maps (nearly) every column onto a column of the same
intensity class. The two shortest such vectors among the frequent neighbour differences form the
basis; columns linked by basis steps share a site, which gives integer cell indices that survive
slow image distortions; a least-squares fit over all columns then refines basis and sites.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ..model import AutomatError, Columns, Lattice2D, Micrograph, MotifSite, Progress, no_progress
from ..geometry2d import reduce_basis
from .spectrum import basis_from_spots, spectrum_peaks, spot_mismatch
from .features import intensity_flags, lattice_displacements_pm
from .params import DEFAULT_DETECT, DetectParams
from .sublattice import intensity_classes

_MIN_SIN = np.sin(np.radians(15))


def find_lattice(columns: Columns, image=None, progress: Progress = no_progress,
                 params: DetectParams = DEFAULT_DETECT) -> tuple[Lattice2D, Columns]:
    """The 2D lattice of ``columns`` and the columns with ``sublattice`` set to their motif site.

    Intensity classes (from ``columns.intensity``) restrict the lattice to translations that keep
    every class in place (SrTiO3 [001]: a = 3.905 Å, not the a/√2 of all columns). Motif sites are
    ordered by mean intensity (0 = brightest) with the brightest at fractional ``(0, 0)``; columns on
    no site get ``-1``; every column gets its displacement from the ideal lattice and an intensity
    outlier flag (``detect.features``). With ``image`` (Micrograph or array), ``fft_mismatch`` compares the basis
    with the Bragg spots of its power spectrum.
    """
    if len(columns) < 4:
        raise AutomatError(f"need at least 4 columns to find a lattice, got {len(columns)}")
    pts = columns.positions_A
    nn = cKDTree(pts).query(pts, k=2)[0][:, 1]
    tol = params.tolerance * float(np.median(nn))
    try:
        hull = ConvexHull(pts)
    except QhullError as err:
        raise AutomatError("the columns lie on a line: no 2D lattice") from err

    progress(0.1, "lattice basis")
    basis, tried = None, set()
    for max_classes in (3, 2, 1):  # fewer classes when a split breaks every translation
        classes = intensity_classes(columns.intensity, max_classes, params)
        if classes.max() not in tried:
            tried.add(classes.max())
            basis = _basis(pts, classes, tol, hull, params.min_invariance)
            if basis is not None:
                break
    if basis is None:
        raise AutomatError("no 2D lattice found: no two translations map the columns onto themselves")
    a, b = reduce_basis(*basis)
    spots = None
    if image is not None:
        data = image.data if isinstance(image, Micrograph) else np.asarray(image)
        if data.ndim == 2:
            spots = spectrum_peaks(data, columns.pixel_size_A)
            a, b = _superlattice_from_spots(a, b, *spots, params.max_fft_mismatch)

    progress(0.5, "motif")
    site, idx = _sites(pts, classes, a, b, tol)
    if site.max() < 0:
        raise AutomatError("no 2D lattice found: the columns are not periodic")
    a, b, offsets, uncertainty = _least_squares(pts, site, idx)
    a, b = reduce_basis(a, b)

    # order sites by intensity, brightest first, and put the brightest at the origin
    n_sites = site.max() + 1
    mean_int = np.full(n_sites, -np.inf)  # sites without a measured intensity go last
    for s in range(n_sites):
        values = columns.intensity[site == s]
        if np.any(np.isfinite(values)):
            mean_int[s] = np.nanmean(values)
    order = np.argsort(-mean_int, kind="stable")
    rank = np.empty(n_sites, dtype=int)
    rank[order] = np.arange(n_sites)
    basis_m = np.stack([a, b], axis=1)
    frac = np.linalg.solve(basis_m, (offsets - offsets[order[0]]).T).T
    frac = frac - np.floor(frac + 0.005)
    motif = [MotifSite((float(frac[s, 0]), float(frac[s, 1])),
                       float(mean_int[s]) if np.isfinite(mean_int[s]) else np.nan, int(rank[s]), int(np.sum(site == s)))
             for s in order]
    sublattice = np.where(site >= 0, rank[np.maximum(site, 0)], -1)
    origin_px = offsets[order[0]] / np.asarray(columns.pixel_size_A, float)

    mismatch = spot_mismatch(*spots, a, b) if spots is not None else float("nan")
    out = columns.subset(np.arange(len(columns)))
    out.sublattice = sublattice
    lattice = Lattice2D(a, b, origin_px, motif, mismatch, uncertainty)
    out.displacement_pm = lattice_displacements_pm(out, lattice)
    out.flag = intensity_flags(out, None if spots is None else data.shape, params)
    progress(1.0, "lattice found")
    return lattice, out


def _superlattice_from_spots(a, b, g, strength, max_mismatch: float):
    """A larger cell when Bragg spots that ``(a, b)`` cannot index show one.

    Columns whose intensities do not separate into classes (a varying background, mixed
    materials) leave only the lattice of all columns; spots of the true, larger cell then sit
    between its reciprocal points. The cell of the spots is taken when it is built from 2 to 4
    of the current cells (integer combinations of ``a`` and ``b``).
    """
    if spot_mismatch(g, strength, a, b) <= max_mismatch:
        return a, b
    spot_basis = basis_from_spots(g, strength)
    if spot_basis is None:
        return a, b
    combo = np.linalg.solve(np.stack([a, b], axis=1), np.stack(spot_basis, axis=1))
    whole = np.rint(combo)
    if np.max(np.abs(combo - whole)) > 0.1 or not 2 <= abs(round(np.linalg.det(whole))) <= 4:
        return a, b
    new = np.stack([a, b], axis=1) @ whole
    if spot_mismatch(g, strength, new[:, 0], new[:, 1]) > max_mismatch:
        return a, b
    return reduce_basis(new[:, 0], new[:, 1])


def _basis(pts, classes, tol, hull, min_invariance: float):
    """The two shortest non-collinear translations that keep every class invariant, or None."""
    found = []
    groups = _Classes(pts, classes)
    for t in _candidate_vectors(pts, classes, tol):
        if found and abs(np.cross(found[0], t)) < _MIN_SIN * np.linalg.norm(found[0]) * np.linalg.norm(t):
            continue
        if _invariance(groups, t, tol, hull) >= min_invariance:
            found.append(t)
            if len(found) == 2:
                return found
    return None


def _candidate_vectors(pts, classes, tol) -> list[np.ndarray]:
    """Frequent neighbour difference vectors (all columns and within each class), shortest first."""
    groups = [np.arange(len(pts))]
    if classes.max() > 0:
        groups += [np.flatnonzero(classes == c) for c in range(classes.max() + 1)]
    centres = []
    for members in groups:
        if len(members) < 4:
            continue
        k = min(12, len(members) - 1)
        sub = pts[members]
        _, nb = cKDTree(sub).query(sub, k=k + 1)
        diff = (sub[nb[:, 1:]] - sub[:, None, :]).reshape(-1, 2)
        centres += _cluster(diff, tol, min_count=0.2 * len(members))
    centres = [c if (c[1] > 0 or (c[1] == 0 and c[0] > 0)) else -c for c in centres]  # one of ±t
    centres.sort(key=lambda c: np.linalg.norm(c))
    unique = []
    for c in centres:
        if np.linalg.norm(c) > tol and all(np.linalg.norm(c - u) > tol for u in unique):
            unique.append(c)
    return unique


def _cluster(vectors, tol, min_count, max_points: int = 3000) -> list[np.ndarray]:
    """Greedy density clustering: centres of groups of at least ``min_count`` vectors within ``tol``.

    Densities are counted on an evenly thinned sample of at most ``max_points`` vectors; the
    centres are then averaged over all vectors.
    """
    stride = max(1, int(np.ceil(len(vectors) / max_points)))
    sample = vectors[::stride]
    need = min_count / stride
    tree = cKDTree(sample)
    density = tree.query_ball_point(sample, tol, return_length=True)
    taken = np.zeros(len(sample), dtype=bool)
    full = cKDTree(vectors)
    centres = []
    for i in np.argsort(-density):
        if density[i] < need:
            break
        if taken[i]:
            continue
        members = [j for j in tree.query_ball_point(sample[i], tol) if not taken[j]]
        if len(members) >= need:
            centre = sample[members].mean(0)
            centres.append(vectors[full.query_ball_point(centre, tol)].mean(0))
        taken[members] = True
    return centres


class _Classes:
    """Columns split by intensity class, with a search tree per class (unknown class -1 matches any)."""

    def __init__(self, pts, classes):
        self.pts, self.classes = pts, classes
        self.members, self.trees = {}, {}
        for c in np.unique(classes):
            members = np.flatnonzero((classes == c) | (classes < 0)) if c >= 0 else np.arange(len(pts))
            self.members[c], self.trees[c] = members, cKDTree(pts[members])

    def match(self, c, targets, tol):
        """Index of the column of class ``c`` within ``tol`` of each target (-1 if none)."""
        d, j = self.trees[c].query(targets, distance_upper_bound=tol)
        return np.where(np.isfinite(d), self.members[c][np.minimum(j, len(self.members[c]) - 1)], -1)


def _invariance(groups: _Classes, t, tol, hull) -> float:
    """Smallest fraction, over intensity classes, of columns that ``t`` maps onto a column of their class."""
    target = groups.pts + t
    inside = np.all(target @ hull.equations[:, :2].T + hull.equations[:, 2] <= -tol, axis=1)
    if np.sum(inside) < 3:
        return 0.0
    worst = 1.0
    for c in groups.trees:
        sel = np.flatnonzero(inside & (groups.classes == c))
        if len(sel) >= 3:
            worst = min(worst, float(np.mean(groups.match(c, target[sel], tol) >= 0)))
    return worst


def _sites(pts, classes, a, b, tol) -> tuple[np.ndarray, np.ndarray]:
    """Motif site of every column (-1: none) and its integer cell indices, by linking basis steps."""
    n = len(pts)
    rows, cols, steps = [], [], []
    groups = _Classes(pts, classes)
    for c in groups.trees:
        src = np.flatnonzero(classes == c)
        for step, vec in (((1, 0), a), ((0, 1), b)):
            j = groups.match(c, pts[src] + vec, tol)
            rows.append(src[j >= 0])
            cols.append(j[j >= 0])
            steps += [step] * int(np.sum(j >= 0))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    steps = np.array(steps, dtype=int).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    n_comp, comp = connected_components(graph, directed=False)
    step_of = {}
    for r, c, s in zip(rows, cols, steps):
        step_of[(r, c)] = s
        step_of[(c, r)] = -s
    idx = np.zeros((n, 2), dtype=int)
    sizes = np.bincount(comp, minlength=n_comp)
    for k in np.flatnonzero(sizes > 1):
        root = int(np.flatnonzero(comp == k)[0])
        order, pred = breadth_first_order(graph, root, directed=False, return_predecessors=True)
        for node in order[1:]:
            idx[node] = idx[pred[node]] + step_of[(pred[node], node)]

    basis_m = np.stack([a, b], axis=1)
    frac = np.linalg.solve(basis_m, pts.T).T - idx  # continuous site offset of each column
    site = np.full(n, -1, dtype=int)
    site_frac: list[np.ndarray] = []
    min_size = max(3, 0.25 * sizes.max())
    for k in np.argsort(-sizes):
        members = comp == k
        f = _circular_mean(frac[members])
        match = [s for s, g in enumerate(site_frac) if np.linalg.norm(basis_m @ _wrap(f - g)) < tol]
        if match:
            site[members] = match[0]
            idx[members] += np.rint(f - site_frac[match[0]]).astype(int)
        elif sizes[k] >= min_size:
            site[members] = len(site_frac)
            site_frac.append(f)
    return site, idx


def _wrap(f):
    """Fractional difference folded into [-0.5, 0.5)."""
    return f - np.rint(f)


def _circular_mean(frac: np.ndarray) -> np.ndarray:
    """Mean of fractional coordinates on the unit torus, returned near the first one's unwrapped value."""
    angle = 2 * np.pi * frac
    mean = np.angle(np.mean(np.exp(1j * angle), axis=0)) / (2 * np.pi)
    return mean + np.rint(frac[0] - mean)


def _least_squares(pts, site, idx):
    """Fit ``p = O_site + i a + j b`` to the sited columns (twice, dropping outliers beyond 3 rms).

    Returns a, b, the site offsets [Å] and the standard error of the basis vectors [Å].
    """
    n_sites = site.max() + 1
    design = np.zeros((len(pts), 2 + n_sites))
    design[:, :2] = idx
    design[np.arange(len(pts)), 2 + np.maximum(site, 0)] = 1.0
    use = site >= 0
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[use], pts[use], rcond=None)
        resid = np.linalg.norm(pts - design @ coef, axis=1)
        rms = np.sqrt(np.mean(resid[use] ** 2))
        fitted = use
        use = (site >= 0) & (resid <= max(3 * rms, 1e-12))
    dof = max(1, 2 * int(fitted.sum()) - 2 * (2 + n_sites))
    sigma2 = np.sum(resid[fitted] ** 2) / dof
    cov = sigma2 * np.linalg.pinv(design[fitted].T @ design[fitted])
    uncertainty = float(np.sqrt(max(cov[0, 0], cov[1, 1])))
    return coef[0], coef[1], coef[2:], uncertainty
