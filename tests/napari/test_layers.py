"""Conversions between core objects and napari layers, without a viewer."""

import warnings

import numpy as np
import pytest
from napari.layers import Points

from napari_automat._napari import layers as L
from napari_automat.model import Columns, Lattice2D, Micrograph


def _columns(n=6):
    rng = np.random.default_rng(0)
    pos = rng.uniform(5, 95, (n, 2))
    return Columns(pos, (0.2, 0.25), rng.uniform(1, 2, n), np.full(n, 1.5), np.arange(n) % 2,
                   ["Sr" if i % 2 == 0 else "Ti+O" for i in range(n)], np.full(n, 0.9), ["detected"] * n)


def _layer(columns):
    data, kwargs, kind = L.columns_layer_data(columns)
    assert kind == "points"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*looks like categorical.*")
        layer = Points(data, **kwargs)
    L.track_provenance(layer)
    return layer


def test_columns_round_trip_keeps_positions_scale_and_features():
    cols = _columns()
    layer = _layer(cols)
    assert tuple(layer.scale) == (0.2, 0.25)
    back = L.columns_from_points_layer(layer)
    np.testing.assert_allclose(back.positions_px, cols.positions_px)
    np.testing.assert_allclose(back.positions_A, cols.positions_A)
    assert back.pixel_size_A == (0.2, 0.25)
    assert back.species == cols.species
    np.testing.assert_array_equal(back.sublattice, cols.sublattice)
    np.testing.assert_allclose(back.intensity, cols.intensity)
    assert back.provenance == ["detected"] * 6
    # sublattices get distinct face colours
    assert not np.allclose(layer.face_color[0], layer.face_color[1])
    np.testing.assert_allclose(layer.face_color[0], layer.face_color[2])


def test_added_points_get_added_provenance_and_chosen_defaults():
    layer = _layer(_columns())
    layer.feature_defaults = dict(L.ADDED_DEFAULTS, sublattice=1, species="Ti+O")
    layer.add([50.0, 50.0])
    layer.remove([0])
    cols = L.columns_from_points_layer(layer)
    assert cols.count == 6
    assert cols.provenance[-1] == "added"
    assert cols.sublattice[-1] == 1 and cols.species[-1] == "Ti+O"
    assert np.isnan(cols.intensity[-1])
    np.testing.assert_allclose(cols.positions_px[-1], [50, 50])


def test_moving_marks_only_moved_points():
    layer = _layer(_columns())
    layer.add([10.0, 10.0])
    # a mouse drag: CHANGING, in-place move, CHANGED with the selected indices
    layer.selected_data = {1, 6}
    center = layer.data[[1, 6]].mean(axis=0)
    layer.events.data(value=layer.data, action="changing", data_indices=(1, 6), vertex_indices=((),))
    with layer.events.data.blocker():
        layer._move({1, 6}, center)
    layer._move({1, 6}, center + 2.0)
    np.testing.assert_allclose(layer.data[1], _columns().positions_px[1] + 2.0)
    prov = list(layer.features["provenance"])
    assert prov[1] == "moved" and prov[6] == "added" and prov.count("moved") == 1
    # a whole-array assignment marks only the points whose position changed
    new = layer.data.copy()
    new[3] += 1.0
    layer.data = new
    prov = list(layer.features["provenance"])
    assert prov[3] == "moved" and prov.count("moved") == 2
    # programmatic refinement does not count as a user move
    with L.untracked(layer):
        new = layer.data.copy()
        new[4] += 0.5
        layer.data = new
    assert list(layer.features["provenance"])[4] == "detected"


def test_points_without_features_read_as_added():
    layer = Points(np.array([[1.0, 2.0], [3.0, 4.0]]), scale=(0.5, 0.5))
    cols = L.columns_from_points_layer(layer)
    assert cols.provenance == ["added", "added"]
    np.testing.assert_allclose(cols.positions_A, [[0.5, 1.0], [1.5, 2.0]])


def test_micrograph_layer_scale_and_stack():
    mg = Micrograph(np.random.rand(3, 32, 40), (0.2, 0.3), True, "/tmp/x.dm4", {"voltage_kV": 300.0})
    data, kwargs, kind = L.micrograph_layer_data(mg)
    assert kind == "image" and data.shape == (3, 32, 40)
    assert kwargs["scale"] == (1.0, 0.2, 0.3)
    assert kwargs["name"] == "x"
    assert kwargs["metadata"][L.MICROGRAPH_KEY] is mg
    assert kwargs["metadata"]["voltage_kV"] == 300.0


def test_lattice_vectors_end_at_basis_vectors_in_angstrom():
    lat = Lattice2D([0.0, 3.905], [3.905, 0.0], origin_px=[10.0, 12.0])
    data, kwargs, kind = L.lattice_layer_data(lat, (0.1, 0.2))
    assert kind == "vectors" and data.shape == (2, 2, 2)
    np.testing.assert_allclose(data[:, 0], [[10, 12], [10, 12]])
    np.testing.assert_allclose(data[0, 1] * (0.1, 0.2), lat.a_vec_A)
    np.testing.assert_allclose(data[1, 1] * (0.1, 0.2), lat.b_vec_A)


def test_structure_layers_show_full_cubic_perovskite_cell():
    pytest.importorskip("pymatgen")
    from pymatgen.core import Lattice, Structure

    sto = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    (atoms, akw, akind), (edges, ekw, ekind) = L.structure_layer_data(sto)
    assert akind == "points" and ekind == "shapes"
    elements = list(akw["features"]["element"])
    assert elements.count("Sr") == 8 and elements.count("Ti") == 1 and elements.count("O") == 6
    assert atoms.min() >= -1e-9 and atoms.max() <= 3.905 + 1e-9
    assert len(edges) == 12
    np.testing.assert_allclose([np.linalg.norm(e[1] - e[0]) for e in edges], 3.905)
    # bigger and differently coloured Sr than O
    sizes = dict(zip(elements, akw["size"]))
    assert sizes["Sr"] > sizes["O"]
    assert akw["metadata"][L.STRUCTURE_KEY] is sto


def test_unique_name():
    assert L.unique_name("columns", ["image"]) == "columns"
    assert L.unique_name("columns", ["columns", "columns [2]"]) == "columns [3]"


def test_lattice_vectors_start_at_lattice_point_nearest_a_given_point():
    lat = Lattice2D([0.0, 4.0], [4.0, 0.0], origin_px=[1.0, 2.0])
    data, _, _ = L.lattice_layer_data(lat, (1.0, 1.0), near_px=(50.0, 51.0))
    np.testing.assert_allclose(data[0, 0], [49.0, 50.0])
