"""The npe2 reader, writer and sample data through a real viewer (run under Xvfb)."""

import numpy as np
import pytest

from napari_automat._napari.layers import MICROGRAPH_KEY
from napari_automat._napari.reader import get_reader
from napari_automat.model import Micrograph

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("path", [None, 123, b"x", "", "/nonexistent/file.dm4", "notes.txt", "/tmp",
                                  ["/nonexistent/a.tif"], [], {"a": 1}])
def test_get_reader_declines_without_raising(path):
    assert get_reader(path) is None


def test_get_reader_declines_unsupported_existing_file(tmp_path):
    f = tmp_path / "table.csv"
    f.write_text("a,b\n1,2\n")
    assert get_reader(str(f)) is None


def test_real_file_opens_with_angstrom_scale(make_napari_viewer, real_file):
    path = real_file("real/atomap_test_ADF_cropped.hdf5")
    assert get_reader(str(path)) is not None
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-automat")
    assert layer.name == "atomap_test_ADF_cropped"  # a single-signal file: named after the file
    assert layer.data.shape == (400, 380)
    # 9.33 pm/px in the file -> 0.0933 Å/px on both axes
    np.testing.assert_allclose(layer.scale, [0.0933, 0.0933], rtol=0.01)
    assert [str(u) for u in layer.units] == ["angstrom", "angstrom"]
    mg = layer.metadata[MICROGRAPH_KEY]
    assert isinstance(mg, Micrograph) and mg.calibrated
    assert layer.metadata["calibrated"] is True
    # world extent in Å: 380 px * 0.0933 Å
    assert layer.extent.world[1][1] == pytest.approx(380 * 0.0933, rel=0.01)


def test_anisotropic_calibration_is_kept(make_napari_viewer, real_file):
    path = real_file("formats/ncempy_dmTest_float32_nonSquare_diffPixelSize.dm3")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-automat")
    # y 2 Å/px, x 1 nm/px
    np.testing.assert_allclose(layer.scale, [2.0, 10.0], rtol=1e-3)


def test_stack_opens_whole(make_napari_viewer, real_file):
    path = real_file("formats/ncempy_temp.mrc")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-automat")
    assert layer.data.shape == (3, 128, 128)
    np.testing.assert_allclose(layer.scale, [1.0, 2.0, 2.0], rtol=1e-3)
    assert layer.metadata[MICROGRAPH_KEY].is_stack


def test_sample_data_opens(make_napari_viewer):
    from napari_automat.io.datasets import sample_path
    from napari_automat.model import AutomatError

    try:
        sample_path("srtio3")
    except AutomatError as exc:
        pytest.skip(f"sample not built in this checkout: {exc}")
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample("napari-automat", "srtio3")
    assert layer.metadata[MICROGRAPH_KEY].calibrated
    assert 0.05 < layer.scale[-1] < 1.0  # an atomic-resolution pixel size in Å


def test_points_layer_saves_as_columns_csv(make_napari_viewer, tmp_path):
    import napari
    from napari_automat._napari.layers import add_layer, columns_layer_data
    from napari_automat.io.write import read_columns_csv
    from napari_automat.model import Columns

    cols = Columns.from_positions([[10.0, 20.0], [30.5, 40.25]], (0.1, 0.2), intensity=[1.0, 2.0],
                                  sublattice=[0, 1], species=["Sr", "Ti+O"])
    viewer = make_napari_viewer()
    layer = add_layer(viewer, columns_layer_data(cols))
    layer.add([50.0, 60.0])
    out = tmp_path / "cols.csv"
    written = napari.save_layers(str(out), [layer], plugin="napari-automat")
    assert written == [str(out)]
    back = read_columns_csv(out)
    assert back.count == 3
    np.testing.assert_allclose(back.positions_px[1], [30.5, 40.25])
    np.testing.assert_allclose(back.positions_A[1], [3.05, 8.05])
    assert back.provenance == ["detected", "detected", "added"]
    assert back.species[:2] == ["Sr", "Ti+O"]


def test_denoised_image_saves_with_its_calibration(make_napari_viewer, tmp_path):
    # File ▸ Save Layers on a denoised micrograph: the TIFF keeps the Å pixel size and the signal
    import napari
    from napari_automat._napari.layers import add_layer, micrograph_layer_data
    from napari_automat.io.read import read_micrograph

    data = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    m = Micrograph(data, (0.12, 0.15), True, None, {"signal": "HAADF"})
    viewer = make_napari_viewer()
    layer = add_layer(viewer, micrograph_layer_data(m.with_data(data * 2, denoised="fourier"), name="x denoised"))
    out = tmp_path / "denoised.tif"
    assert napari.save_layers(str(out), [layer], plugin="napari-automat") == [str(out)]
    back = read_micrograph(out)
    assert back.calibrated and np.allclose(back.pixel_size_A, (0.12, 0.15), rtol=1e-4)
    np.testing.assert_allclose(back.data, data * 2, rtol=1e-6)
    assert back.metadata.get("signal") == "HAADF"
    # an image without a real pixel size is written without a made-up calibration
    plain = viewer.add_image(data, name="plain")
    out2 = tmp_path / "plain.tif"
    napari.save_layers(str(out2), [plain], plugin="napari-automat")
    assert not read_micrograph(out2).calibrated


def test_structure_writer_needs_a_structure_layer(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    layer = viewer.add_points(np.zeros((2, 3)), ndim=3)
    with pytest.warns(UserWarning, match="did not return any written paths"):
        assert napari.save_layers(str(tmp_path / "x.cif"), [layer], plugin="napari-automat") == []
    assert not (tmp_path / "x.cif").exists()


def test_multi_detector_file_opens_one_layer_per_signal(make_napari_viewer, real_file):
    # RosettaSciIO test data (hyperspy/rosettasciio, GPL-3.0): nine 2x2 signals of one scan
    path = real_file("formats/rsciio_fei_example_dpc_titles.emd")
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-automat")
    names = [layer.name for layer in layers]
    stem = path.stem
    assert sorted(names) == sorted(f"{stem} {t}" for t in ["DF4-A", "DF4-B", "DF4-C", "DF4-D", "A-C", "B-D",
                                                            "DPC", "iDPC", "Filtered iDPC"])
    # no HAADF in the file: iDPC is the one for analysis, on top of the layer list and alone visible
    assert names[-1] == f"{stem} iDPC" and viewer.layers[-1].name == f"{stem} iDPC"
    assert names[0] in {f"{stem} {t}" for t in ["DF4-A", "DF4-B", "DF4-C", "DF4-D", "A-C", "B-D", "DPC"]}
    assert [layer.visible for layer in layers] == [False] * 8 + [True]
    assert viewer.layers.selection.active is layers[-1]
    for layer in layers:
        assert layer.data.shape == (2, 2) and not np.iscomplexobj(layer.data)
        np.testing.assert_allclose(layer.scale, [0.996, 0.996], rtol=1e-3)  # 99.6 pm/px
        assert layer.metadata[MICROGRAPH_KEY].metadata["title"] == layer.name[len(stem) + 1:]


def _sample_columns():
    from napari_automat.model import Columns

    return Columns.from_positions([[10.0, 20.0], [30.5, 40.25], [12.0, 7.5]], (0.1, 0.2), intensity=[1.0, 2.0, 1.5],
                                  sublattice=[0, 1, 0], species=["Sr", "Ti+O", "Sr"])


def test_saved_columns_reopen_as_the_same_points_layer(make_napari_viewer, tmp_path):
    import napari
    from napari_automat._napari.layers import add_layer, columns_from_points_layer, columns_layer_data

    viewer = make_napari_viewer()
    layer = add_layer(viewer, columns_layer_data(_sample_columns()))
    layer.add([50.0, 60.0])
    out = tmp_path / "columns.csv"
    napari.save_layers(str(out), [layer], plugin="napari-automat")
    (back,) = viewer.open(str(out), plugin="napari-automat")
    assert back.name.startswith("columns") and back.ndim == 2
    np.testing.assert_allclose(back.data, layer.data)
    np.testing.assert_allclose(back.scale, layer.scale)
    assert tuple(back.units) == tuple(layer.units)
    before, after = columns_from_points_layer(layer).flat_features(), columns_from_points_layer(back).flat_features()
    assert after.keys() == before.keys()
    for name, values in before.items():
        if isinstance(values, list):
            assert after[name] == values, name
        else:
            np.testing.assert_allclose(after[name], values, err_msg=name)
    assert list(back.features["provenance"]) == ["detected"] * 3 + ["added"]


def test_columns_reader_takes_only_its_own_tables(tmp_path):
    from napari_automat._napari.reader import get_columns_reader

    foreign = tmp_path / "columns.csv"
    foreign.write_text("index,axis-0,axis-1\n0,1,2\n")
    assert get_columns_reader(str(foreign)) is None
    assert get_columns_reader(str(tmp_path / "missing_columns.csv")) is None
    assert get_columns_reader(None) is None and get_columns_reader([]) is None


def test_saved_structure_reopens_as_the_structure_layers(make_napari_viewer, tmp_path):
    import napari
    from pymatgen.core import Lattice, Structure

    from napari_automat._napari.layers import STRUCTURE_KEY, structure_layer_data
    from napari_automat.io.write import write_cif

    structure = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    path = write_cif(tmp_path / "structure.cif", structure)
    viewer = make_napari_viewer()
    from npe2 import PluginManager

    compatible = {r.plugin_name for r in PluginManager.instance().iter_compatible_readers([str(path)])}
    assert compatible == {"napari-automat"}  # File > Open takes it without a reader dialog
    atoms, cell = viewer.open(str(path), plugin="napari-automat")
    expected = structure_layer_data(structure)
    assert (atoms.name, cell.name) == ("structure", "structure cell")
    assert atoms.ndim == 3 and tuple(atoms.units) == ("angstrom",) * 3
    np.testing.assert_allclose(np.sort(atoms.data, axis=0), np.sort(expected[0][0], axis=0), atol=1e-6)
    assert sorted(atoms.features["element"]) == sorted(expected[0][1]["features"]["element"])
    back = atoms.metadata[STRUCTURE_KEY]
    assert back.composition == structure.composition
    np.testing.assert_allclose(back.lattice.abc, structure.lattice.abc)
    again = tmp_path / "again.cif"
    assert napari.save_layers(str(again), [atoms], plugin="napari-automat") == [str(again)]


def test_unreadable_cif_is_one_line(tmp_path):
    from napari_automat._napari.reader import get_structure_reader
    from napari_automat.model import AutomatError

    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3\n")
    reader = get_structure_reader(str(bad))
    with pytest.raises(AutomatError, match="broken.cif holds no structure"):
        reader(str(bad))
    assert get_structure_reader(str(tmp_path / "absent.cif")) is None
    assert get_structure_reader(str(tmp_path / "image.tif")) is None and get_structure_reader([]) is None


def test_plain_images_and_h5_get_no_reader_choice(make_napari_viewer):
    from npe2 import PluginManager

    make_napari_viewer()  # plugins discovered
    for name in ("image.png", "photo.jpg", "data.h5"):
        readers = {r.plugin_name for r in PluginManager.instance().iter_compatible_readers([f"/data/{name}"])}
        assert "napari-automat" not in readers, name
