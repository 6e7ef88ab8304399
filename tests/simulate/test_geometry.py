"""Zone-axis geometry: unimodular cells, projected columns, the layout of an output field."""

import numpy as np
import pytest

from napari_automat.model import AutomatError
from napari_automat.simulate.geometry import field_columns, field_shape, projected_cell, zone_transform


@pytest.mark.parametrize("uvw", [(0, 0, 1), (1, 1, 0), (1, 1, 1), (2, 1, 0), (3, -1, 2), (0, 2, 4)])
def test_zone_transform_is_unimodular_with_the_axis_last(uvw):
    m = zone_transform(uvw)
    g = np.gcd.reduce(np.abs(uvw))
    assert round(np.linalg.det(m)) == 1
    assert m[2].tolist() == [v // g for v in uvw]


def test_zone_transform_rejects_zero():
    with pytest.raises(AutomatError):
        zone_transform((0, 0, 0))


def test_srtio3_001_columns(srtio3):
    cell = projected_cell(srtio3, (0, 0, 1))
    assert np.allclose(cell.basis_A, [[3.905, 0], [0, 3.905]])
    assert cell.repeat_A == pytest.approx(3.905)
    assert sorted(cell.column_labels) == ["O", "O", "Sr", "Ti+O"]
    by_label = dict(zip(cell.column_labels, cell.columns_A.tolist()))
    assert np.allclose(by_label["Sr"], [0, 0]) and np.allclose(by_label["Ti+O"], [1.9525, 1.9525])
    w = dict(zip(cell.column_labels, cell.column_weights(2.0)))
    assert w["Sr"] == pytest.approx(38 ** 2) and w["Ti+O"] == pytest.approx(22 ** 2 + 8 ** 2)


def test_srtio3_110_and_111(srtio3):
    c110 = projected_cell(srtio3, (1, 1, 0))
    assert sorted(np.linalg.norm(c110.basis_A, axis=1)) == pytest.approx([3.905 / np.sqrt(2), 3.905], abs=1e-6)
    assert c110.repeat_A == pytest.approx(3.905 * np.sqrt(2))
    assert sorted(c110.column_labels) == ["O", "Sr+O", "Ti"]
    c111 = projected_cell(srtio3, (1, 1, 1))
    a, b = c111.basis_A
    gamma = np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert gamma == pytest.approx(120) and np.linalg.norm(a) == pytest.approx(3.905 * np.sqrt(2 / 3))
    assert sorted(c111.column_labels) == ["O", "O", "O", "Sr+Ti"]


def test_hexagonal_gan(gan):
    cell = projected_cell(gan, (0, 0, 1))
    assert abs(np.cross(*cell.basis_A)) == pytest.approx(3.19 ** 2 * np.sqrt(3) / 2)
    assert cell.column_labels == ["Ga+N", "Ga+N"]
    side = projected_cell(gan, (1, 0, 0))
    assert side.repeat_A == pytest.approx(3.19)
    assert sorted(side.column_labels) == ["Ga", "Ga", "N", "N"]


def test_field_columns_cover_the_field_at_the_lattice_density(srtio3):
    cell = projected_cell(srtio3, (0, 0, 1))
    shape = field_shape(cell, 0.1, 50.0)
    assert shape == (500, 500)
    for rotation in (0.0, 23.0):
        pos, idx = field_columns(cell, shape, 0.1, rotation)
        expected = 4 * (50.0 / 3.905) ** 2
        assert abs(len(pos) - expected) < 0.1 * expected
        assert np.all(pos >= -0.5) and np.all(pos < 499.5)
        assert set(idx.tolist()) == {0, 1, 2, 3}
    # rotation about the image centre: nearest-neighbour Sr-Sr vectors turn by the same angle
    pos, idx = field_columns(cell, shape, 0.1, 23.0)
    sr = pos[np.array(cell.column_labels)[idx] == "Sr"]
    d = sr - sr[np.argmin(np.linalg.norm(sr - 250, axis=1))]
    near = d[(np.linalg.norm(d, axis=1) > 30) & (np.linalg.norm(d, axis=1) < 45)] * 0.1
    angles = np.degrees(np.arctan2(near[:, 0], near[:, 1])) % 90
    assert np.allclose(angles, 23.0, atol=1e-6)
    assert np.allclose(np.linalg.norm(near, axis=1), 3.905)
