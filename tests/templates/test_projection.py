"""Zone-axis projections: unimodular completion, column patterns, visibility, translation cells."""

import math
from functools import reduce
from itertools import product

import numpy as np
import pytest

from napari_automat.templates.projection import (gauss_reduce, periodic_distances, project, symmetry_unique_axes,
                                                 to_lattice2d, unimodular_completion, visible_columns, visible_mask)


def perovskite(a=3.905):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


def cubic(symbol, kind, a):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(bulk(symbol, kind, a=a, cubic=True))


def test_unimodular_completion_has_unit_determinant():
    for t in product(range(-3, 4), repeat=3):
        if any(t) and reduce(math.gcd, t) == 1:
            p, q = unimodular_completion(t)
            assert abs(round(np.linalg.det(np.array([p, q, t])))) == 1, t
    with pytest.raises(ValueError):
        unimodular_completion((2, 0, 2))


def test_gauss_reduce_gives_short_basis_and_tracks_integers():
    a, b = np.array([1.0, 0.0]), np.array([7.3, 1.0])
    a2, b2, m = gauss_reduce(a, b)
    assert np.allclose(m @ np.array([a, b]), [a2, b2])
    assert np.linalg.norm(a2) <= np.linalg.norm(b2)
    assert abs(a2 @ b2) <= 0.5 * a2 @ a2 + 1e-12
    assert abs(round(np.linalg.det(m))) == 1


def test_srtio3_001_columns_and_visibility():
    proj = project(perovskite(), (0, 0, 1))
    assert proj.a_A == pytest.approx(3.905) and proj.b_A == pytest.approx(3.905)
    assert proj.gamma_deg == pytest.approx(90)
    assert proj.t_A == pytest.approx(3.905)
    comps = sorted(tuple(sorted(c.items())) for c in proj.composition)
    assert comps == sorted([(("Sr", 1.0),), (("O", 1.0), ("Ti", 1.0)), (("O", 1.0),), (("O", 1.0),)])
    weight = {tuple(sorted(c)): w for c, w in zip(proj.composition, proj.weight)}
    assert weight[("Sr",)] == pytest.approx(38 ** 1.7)
    assert weight[("O", "Ti")] == pytest.approx(22 ** 1.7 + 8 ** 1.7)
    # O columns are ~7% of Sr: invisible at the 10% threshold, visible at 5%.
    assert weight[("O",)] / weight[("Sr",)] == pytest.approx(0.071, abs=0.002)
    assert visible_mask(proj.weight).sum() == 2 and visible_mask(proj.weight, 0.05).sum() == 4
    vis = visible_columns(proj)
    assert len(vis) == 2 and vis.a_A == pytest.approx(3.905) and vis.b_A == pytest.approx(3.905)
    d = vis.frac[1] - vis.frac[0]
    assert np.allclose(np.abs(d - np.round(d)), 0.5)
    # Geometry alone (Sr and TiO columns taken as equal): the a/√2 centred cell with one site.
    geo = visible_columns(proj, labelled=False)
    assert len(geo) == 1 and geo.a_A == pytest.approx(3.905 / math.sqrt(2))


def test_si_110_dumbbells_in_the_primitive_cell():
    a = 5.431
    vis = visible_columns(project(cubic("Si", "diamond", a), (1, 1, 0)))
    assert len(vis) == 2
    # The centred a/√2 × a rectangle, reduced to its primitive rhombus: half the diagonal, a√6/4.
    assert [vis.a_A, vis.b_A] == pytest.approx([a * math.sqrt(6) / 4] * 2, rel=1e-4)
    dumbbell = periodic_distances(vis.frac[:1], vis.frac[1:], vis.cell_A)[0, 0]
    assert dumbbell == pytest.approx(a / 4, rel=1e-4)  # 1.36 Å
    assert [c["Si"] for c in vis.composition] == [2.0, 2.0]  # two atoms per period a√2


@pytest.mark.parametrize("axis, length, gamma", [((0, 0, 1), 3.615 / 2, 90),  # square, a/2
                                                 ((1, 1, 1), 3.615 / math.sqrt(6), 60),  # hexagonal ABC stacking
                                                 ((1, 1, 0), 3.615 * math.sqrt(3 / 8), None)])  # centred rectangle
def test_fcc_copper_projections(axis, length, gamma):
    vis = visible_columns(project(cubic("Cu", "fcc", 3.615), axis))
    assert len(vis) == 1
    assert vis.a_A == pytest.approx(length, rel=1e-4)
    if gamma is not None:
        assert vis.b_A == pytest.approx(length, rel=1e-4)
        assert min(vis.gamma_deg, 180 - vis.gamma_deg) == pytest.approx(gamma, abs=0.01)


def test_zone_axes_are_deduplicated_by_point_group():
    axes = symmetry_unique_axes(perovskite())
    assert axes == [(0, 0, 1), (1, 1, 0), (2, 1, 0), (1, 1, 1), (2, 1, 1), (2, 2, 1)]
    from pymatgen.core import Lattice, Structure

    tetragonal = Structure(Lattice.tetragonal(4.0, 6.0), ["Ti", "O"], [[0, 0, 0], [.5, .5, .5]])
    t_axes = symmetry_unique_axes(tetragonal)
    assert (0, 0, 1) in t_axes and (1, 0, 0) in t_axes and (0, 1, 0) not in t_axes
    assert len(t_axes) > len(axes)


def test_to_lattice2d_carries_motif_weights():
    vis = visible_columns(project(perovskite(), (0, 0, 1)))
    lat = to_lattice2d(vis)
    assert lat.a_A == pytest.approx(3.905) and len(lat.motif) == 2
    ratio = max(m.intensity for m in lat.motif) / min(m.intensity for m in lat.motif)
    assert ratio == pytest.approx(38 ** 1.7 / (22 ** 1.7 + 8 ** 1.7))
