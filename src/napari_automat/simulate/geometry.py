"""Zone-axis geometry shared by the simulators (numpy only; pymatgen objects are read, not imported).

A zone axis ``[uvw]`` is made the third vector of a unimodular integer basis, so the new cell has
the same atoms as the old one. Rotating that cell so ``[uvw]`` lies along ``z`` gives the projected
2D lattice (the projections of the two other vectors) and the atom columns inside it.
In-plane coordinates here are ``(x, y)`` in Å; image positions are returned as ``(y, x)`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from ..model import AutomatError


@dataclass
class ProjectedCell:
    """The crystal seen along a zone axis: one period of the projected structure.

    ``basis_A``: rows are the two in-plane lattice vectors ``(x, y)`` [Å] (first along ``x``);
    ``columns_A``: ``(n, 2)`` column positions ``(x, y)`` [Å] inside the cell; ``column_atoms``:
    per column, ``(Z, occupancy)`` pairs of the atoms in one repeat along the beam;
    ``column_labels``: element label per column such as ``"Ti+O"`` (heaviest first);
    ``repeat_A``: period along the beam [Å]; ``transform``: integer rows expressing the new cell
    vectors in the old ones (third row = zone axis).
    """

    basis_A: np.ndarray
    columns_A: np.ndarray
    column_atoms: list
    column_labels: list
    repeat_A: float
    transform: np.ndarray

    def column_weights(self, z_exponent: float = 1.7) -> np.ndarray:
        """Incoherent (Z-contrast) weight per column: Σ occupancy · Z^n over one repeat."""
        return np.array([sum(occ * z ** z_exponent for z, occ in atoms) for atoms in self.column_atoms])


def zone_transform(zone_axis) -> np.ndarray:
    """Integer 3x3 matrix with determinant +1 whose last row is the (reduced) zone axis."""
    uvw = np.array([int(round(v)) for v in zone_axis], dtype=int)
    if uvw.shape != (3,) or not uvw.any():
        raise AutomatError(f"zone axis must be three integers, not all zero; got {tuple(zone_axis)}")
    uvw //= math.gcd(*uvw.tolist())
    reach = int(np.abs(uvw).max()) + 1
    cand = np.array([v for v in product(range(-reach, reach + 1), repeat=3) if any(v)])
    cand = cand[np.lexsort((-cand.sum(1), np.abs(cand).sum(1)))]  # short first, then positive
    dets = cand @ np.cross(uvw, cand).T  # dets[i, j] = det[cand_j, cand_i, uvw]
    hits = np.argwhere(dets == 1)
    if not len(hits):
        raise AutomatError(f"could not complete zone axis {uvw.tolist()} to a unimodular basis")
    i, j = hits[np.argmin(hits.sum(1))]
    return np.array([cand[j], cand[i], uvw])


def zone_frame(lattice_matrix, zone_axis) -> tuple[np.ndarray, np.ndarray]:
    """New cell and rotation for viewing along ``zone_axis``.

    Returns ``(transform, rotation)``: integer ``transform`` (rows: new vectors in old ones, third =
    zone axis, in-plane pair Lagrange-reduced) and the 3x3 ``rotation`` taking old Cartesian
    coordinates to a frame with the zone axis along ``+z`` and the first in-plane vector along ``+x``.
    """
    L = np.asarray(lattice_matrix, dtype=float)
    M = zone_transform(zone_axis)
    c = M[2] @ L
    zhat = c / np.linalg.norm(c)

    def proj(row):
        v = row @ L
        return v - (v @ zhat) * zhat

    a1, a2 = M[0].copy(), M[1].copy()
    for _ in range(100):  # Lagrange (Gauss) reduction of the projected 2D basis, on integer rows
        p1, p2 = proj(a1), proj(a2)
        if p2 @ p2 < p1 @ p1 - 1e-9:
            a1, a2 = a2, a1
            continue
        m = int(round((p1 @ p2) / (p1 @ p1)))
        if m == 0:
            break
        a2 = a2 - m * a1
    if np.cross(proj(a1), proj(a2)) @ zhat < 0:
        a2 = -a2
    # shortest representatives: remove whole zone-axis vectors along the beam
    a1 = a1 - int(round((a1 @ L) @ c / (c @ c))) * M[2]
    a2 = a2 - int(round((a2 @ L) @ c / (c @ c))) * M[2]
    xhat = proj(a1) / np.linalg.norm(proj(a1))
    rotation = np.array([xhat, np.cross(zhat, xhat), zhat])
    return np.array([a1, a2, M[2]]), rotation


def projected_cell(structure, zone_axis, tolerance_A: float = 0.1) -> ProjectedCell:
    """Project a pymatgen ``Structure`` along ``zone_axis`` into a :class:`ProjectedCell`.

    Atoms closer than ``tolerance_A`` in projection belong to the same column.
    """
    L = np.asarray(structure.lattice.matrix, dtype=float)
    M, R = zone_frame(L, zone_axis)
    new_L = M @ L
    frac = np.asarray(structure.frac_coords, dtype=float) @ np.linalg.inv(M)  # coordinates in new cell
    frac2 = np.mod(frac[:, :2], 1.0)
    basis = (new_L[:2] @ R.T)[:, :2]
    basis[0, 1] = 0.0
    species = [[(sp.Z, float(occ)) for sp, occ in site.species.items()] for site in structure]
    symbols = {sp.Z: sp.symbol for site in structure for sp in site.species}

    col_frac, column_atoms, labels = cluster_columns(frac2, basis, species, symbols, tolerance_A)
    return ProjectedCell(basis, col_frac @ basis, column_atoms, labels, float(np.linalg.norm(new_L[2])), M)


def cluster_columns(frac2, basis_A, species, symbols, tolerance_A: float = 0.1):
    """Group atoms by projected position: ``(column fractions (n, 2), atoms per column, labels)``.

    ``frac2``: in-plane fractional coordinates per atom; ``species``: per atom ``[(Z, occupancy)]``;
    ``symbols``: ``{Z: symbol}``. Distances are periodic in the 2D cell ``basis_A``.
    """
    centres, members = [], []
    for k, f in enumerate(np.mod(np.asarray(frac2, dtype=float), 1.0)):
        for c_idx, centre in enumerate(centres):
            d = f - centre
            d -= np.round(d)
            if np.linalg.norm(d @ basis_A) < tolerance_A:
                members[c_idx].append((k, d))
                break
        else:
            centres.append(f.copy())
            members.append([(k, np.zeros(2))])
    col_frac = np.array([np.mod(c + np.mean([d for _, d in m], axis=0), 1.0) for c, m in zip(centres, members)])
    column_atoms = [[zo for k, _ in m for zo in species[k]] for m in members]
    labels = ["+".join(symbols[z] for z in sorted({z for z, _ in atoms}, reverse=True)) for atoms in column_atoms]
    return col_frac, column_atoms, labels


def field_shape(cell: ProjectedCell, pixel_size_A: float, field_of_view_A=None) -> tuple[int, int]:
    """Output image shape ``(ny, nx)`` for a field of view [Å]: one number (square), ``(height, width)``,
    or None for 8 lattice repeats (at least 25 Å)."""
    if not pixel_size_A > 0:
        raise AutomatError(f"pixel size must be positive, got {pixel_size_A}")
    if field_of_view_A is None:
        field_of_view_A = max(25.0, 8 * float(np.max(np.linalg.norm(cell.basis_A, axis=1))))
    fov = np.broadcast_to(np.asarray(field_of_view_A, dtype=float), (2,))
    if np.any(fov <= 0):
        raise AutomatError(f"field of view must be positive, got {field_of_view_A}")
    return tuple(max(8, int(round(v / pixel_size_A))) for v in fov)


def field_points(shape_px, pixel_size_A: float, rotation_deg: float = 0.0) -> np.ndarray:
    """Crystal-frame ``(x, y)`` [Å] of every pixel centre of an output image, shape ``(ny, nx, 2)``.

    Pixel ``(i, j)`` sits at ``(x, y) = (j, i) · pixel_size_A`` in the image; the crystal is rotated
    by ``rotation_deg`` about the image centre (counter-clockwise in ``(x, y)``).
    """
    ny, nx = shape_px
    y, x = np.mgrid[0:ny, 0:nx] * float(pixel_size_A)
    return _to_crystal(np.stack([x, y], axis=-1), shape_px, pixel_size_A, rotation_deg)


def field_columns(cell: ProjectedCell, shape_px, pixel_size_A: float, rotation_deg: float = 0.0,
                  margin_A: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """All column images in an output field: ``(positions_px (n, 2) as (y, x), column index (n,))``.

    Columns up to ``margin_A`` outside the field are included (useful for rendering tails).
    """
    ny, nx = shape_px
    p = float(pixel_size_A)
    lo, hi = -0.5 * p - margin_A, np.array([nx, ny]) * p - 0.5 * p + margin_A
    corners = np.array([[lo, lo], [hi[0], lo], [lo, hi[1]], [hi[0], hi[1]]])
    frac = _to_crystal(corners, shape_px, p, rotation_deg) @ np.linalg.inv(cell.basis_A)
    n1 = np.arange(math.floor(frac[:, 0].min()) - 1, math.ceil(frac[:, 0].max()) + 1)
    n2 = np.arange(math.floor(frac[:, 1].min()) - 1, math.ceil(frac[:, 1].max()) + 1)
    shifts = (np.stack(np.meshgrid(n1, n2, indexing="ij"), -1).reshape(-1, 1, 2) @ cell.basis_A)[:, 0]
    xy = (shifts[:, None, :] + cell.columns_A[None]).reshape(-1, 2)
    index = np.tile(np.arange(len(cell.columns_A)), len(shifts))
    img = _to_image(xy, shape_px, p, rotation_deg)
    keep = np.all((img >= lo) & (img < hi), axis=1)
    return img[keep][:, ::-1] / p, index[keep]


def _rot(rotation_deg: float) -> np.ndarray:
    t = math.radians(rotation_deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def _centre(shape_px, pixel_size_A):
    return (np.array(shape_px[::-1], dtype=float) - 1) * 0.5 * pixel_size_A


def _to_crystal(xy, shape_px, pixel_size_A, rotation_deg):
    c = _centre(shape_px, pixel_size_A)
    return (xy - c) @ _rot(rotation_deg) + c  # row-vector form of R(-θ)·(r - c) + c


def _to_image(xy, shape_px, pixel_size_A, rotation_deg):
    c = _centre(shape_px, pixel_size_A)
    return (xy - c) @ _rot(rotation_deg).T + c

