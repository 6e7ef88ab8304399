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
