"""2D lattice, intensity classes and motif from column positions."""

import numpy as np
import pytest
from detect_synth import lattice_points, perovskite

from napari_automat.detect import detect_columns, find_lattice, reduce_basis
from napari_automat.detect.sublattice import intensity_classes
from napari_automat.model import AutomatError, Columns


def _columns(shape, pixel_A, a, b, motif, intensities, jitter_px=0.0, seed=0):
    pos, site = lattice_points(shape, pixel_A, np.asarray(a, float), np.asarray(b, float), motif,
                               origin_px=(4.3, 2.1), margin_px=3)
    rng = np.random.default_rng(seed)
    pos = pos + rng.normal(0, jitter_px, pos.shape)
    inten = np.asarray(intensities, float)[site] * rng.normal(1, 0.05, len(site))
    return Columns.from_positions(pos, (pixel_A, pixel_A), intensity=inten), site


def _frac_set(lattice):
    return sorted(tuple(np.round(np.mod(np.asarray(m.frac) + 1e-3, 1.0) - 1e-3, 2)) for m in lattice.motif)


def test_perovskite_lattice_is_that_of_the_bright_columns():
    """SrTiO3-like: all columns form a centred a/√2 net; the translation lattice is a = 3.905 Å."""
    micrograph, truth, site = perovskite(dose=200.0)
    columns = detect_columns(micrograph)
    lattice, out = find_lattice(columns, micrograph)
    assert lattice.a_A == pytest.approx(3.905, rel=2e-3) and lattice.b_A == pytest.approx(3.905, rel=2e-3)
    assert lattice.gamma_deg == pytest.approx(90.0, abs=0.2)
    assert lattice.fft_mismatch < 0.01
    assert 0 < lattice.uncertainty_A < 0.01
    assert _frac_set(lattice) == [(0.0, 0.0), (0.5, 0.5)]
    assert lattice.motif[0].intensity > 1.5 * lattice.motif[1].intensity  # brightest site first, at the origin
    assert lattice.motif[0].frac == pytest.approx((0.0, 0.0), abs=0.01)
    # every column on its sublattice: bright = 0, dim = 1
    nearest = np.argmin(np.linalg.norm(out.positions_px[:, None] - truth[None], axis=2), axis=1)
    assert np.array_equal(out.sublattice, site[nearest])
    # the origin is a bright column
    assert np.min(np.linalg.norm(truth[site == 0] - lattice.origin_px, axis=1)) < 0.5


def test_one_intensity_class_gives_the_lattice_of_all_columns():
    columns, _ = _columns((300, 300), 0.1, [0, 3.905], [3.905, 0], [(0, 0), (0.5, 0.5)], [1.0, 1.0])
    lattice, out = find_lattice(columns)
    assert lattice.a_A == pytest.approx(3.905 / np.sqrt(2), rel=1e-3)
    assert len(lattice.motif) == 1 and np.all(out.sublattice == 0)
    assert np.isnan(lattice.fft_mismatch)


def test_honeycomb_is_hexagonal_with_two_sites():
    a = 2.46 * np.array([0.0, 1.0])
    b = 2.46 * np.array([np.sqrt(3) / 2, -0.5])
    columns, site = _columns((300, 300), 0.08, a, b, [(1 / 3, 2 / 3), (2 / 3, 1 / 3)], [1.0, 1.0], jitter_px=0.1)
    lattice, out = find_lattice(columns)
    assert lattice.a_A == pytest.approx(2.46, rel=2e-3) and lattice.b_A == pytest.approx(2.46, rel=2e-3)
    assert lattice.gamma_deg == pytest.approx(120.0, abs=0.3)
    fracs = _frac_set(lattice)
    assert len(fracs) == 2 and fracs[0] == (0.0, 0.0)
    assert fracs[1] in [(pytest.approx(1 / 3, abs=0.02), pytest.approx(2 / 3, abs=0.02)),
                        (pytest.approx(2 / 3, abs=0.02), pytest.approx(1 / 3, abs=0.02))]
    assert len(set(zip(site, out.sublattice))) == 2  # the two sites map one-to-one


@pytest.mark.parametrize("a,b,gamma", [
    ([0.0, 3.1], [4.6, 0.0], 90.0),     # rectangular
    ([0.4, 3.2], [3.9, -1.6], None),    # oblique
])
def test_rectangular_and_oblique(a, b, gamma):
    columns, _ = _columns((300, 300), 0.1, a, b, [(0, 0)], [1.0], jitter_px=0.1)
    lattice, _ = find_lattice(columns)
    ra, rb = reduce_basis(np.array(a), np.array(b))
    assert sorted([lattice.a_A, lattice.b_A]) == pytest.approx(sorted([np.linalg.norm(ra), np.linalg.norm(rb)]),
                                                               rel=2e-3)
    cos = np.dot(ra, rb) / np.linalg.norm(ra) / np.linalg.norm(rb)
    expected = gamma if gamma is not None else np.degrees(np.arccos(cos))
    assert lattice.gamma_deg == pytest.approx(expected, abs=0.3)
    assert 90.0 <= lattice.gamma_deg <= 120.0


def test_three_sites_and_distortion_tolerance():
    """Three column types; the image is sheared by 3% across its width (scan drift)."""
    columns, site = _columns((400, 400), 0.1, [0, 3.905], [3.905, 0], [(0, 0), (0.5, 0.5), (0.5, 0.0)],
                             [1.0, 0.45, 0.15], jitter_px=0.15)
    p = columns.positions_px
    columns.positions_px = np.stack([p[:, 0] + 0.03 * p[:, 1] * p[:, 1] / 400, p[:, 1]], axis=1)
    lattice, out = find_lattice(columns)
    assert len(lattice.motif) == 3
    assert [m.sublattice for m in lattice.motif] == [0, 1, 2]
    assert [m.intensity for m in lattice.motif] == sorted([m.intensity for m in lattice.motif], reverse=True)
    assert np.array_equal(out.sublattice, site)
    assert _frac_set(lattice) == [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5)] or \
        _frac_set(lattice) == [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5)]


def test_missing_intensities_and_stray_columns():
    columns, site = _columns((300, 300), 0.1, [0, 3.905], [3.905, 0], [(0, 0), (0.5, 0.5)], [1.0, 0.5])
    columns.intensity[::7] = np.nan  # user-added columns have no intensity yet
    stray = Columns.from_positions(np.vstack([columns.positions_px, [[150.2, 160.7]]]), columns.pixel_size_A,
                                   intensity=np.append(columns.intensity, 0.8))
    lattice, out = find_lattice(stray)
    assert lattice.a_A == pytest.approx(3.905, rel=2e-3)
    assert np.array_equal(out.sublattice[:-1], site) and out.sublattice[-1] == -1


def test_reduce_basis():
    a, b = reduce_basis([0.0, 3.0], [0.0 + 3.0 * 5, 3.0 * 7 + 4.0])  # a long, skewed choice of the same lattice
    assert np.linalg.norm(a) <= np.linalg.norm(b)
    gamma = np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert 90 <= gamma <= 120
    assert abs(np.cross(a, b)) == pytest.approx(abs(np.cross([0.0, 3.0], [15.0, 25.0])))
    hexa, hexb = reduce_basis([0.0, 2.0], [np.sqrt(3), 1.0])
    assert np.degrees(np.arccos(hexa @ hexb / 4)) == pytest.approx(120.0)


def test_intensity_classes():
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(100, 5, 60), rng.normal(45, 4, 50)])
    labels = intensity_classes(two)
    assert np.all(labels[:60] == 0) and np.all(labels[60:] == 1)
    one = rng.normal(100, 10, 200)  # one broad class is never split
    assert np.all(intensity_classes(one) == 0)
    three = np.concatenate([rng.normal(100, 4, 40), rng.normal(50, 3, 40), rng.normal(15, 2, 40), [np.nan]])
    labels = intensity_classes(three)
    assert labels[-1] == -1 and list(np.unique(labels[:-1])) == [0, 1, 2]
    assert intensity_classes(three, max_classes=2).max() == 1


def test_too_few_or_collinear_columns():
    with pytest.raises(AutomatError, match="at least 4"):
        find_lattice(Columns.from_positions(np.zeros((3, 2)), (0.1, 0.1)))
    line = Columns.from_positions(np.stack([np.full(10, 5.0), np.arange(10) * 20.0], 1), (0.1, 0.1))
    with pytest.raises(AutomatError, match="line"):
        find_lattice(line)
    rng = np.random.default_rng(2)
    gas = Columns.from_positions(rng.uniform(0, 500, (200, 2)), (0.1, 0.1))
    with pytest.raises(AutomatError, match="lattice"):
        find_lattice(gas)
