"""read_micrograph on real files (calibrations from /work/shared/data/README.md) and on bad input.

Real files: Atomap (atomap-dev/atomap), openNCEM (ercius/openNCEM), TEMUL (PinkShnack/TEMUL) and
RosettaSciIO (hyperspy/rosettasciio) test data, GPL-3.0; reached through $AUTOMAT_DATA_DIR.
"""

import shutil

import numpy as np
import pytest

from napari_automat.io.read import (angstrom_per_unit, apply_pixel_size, micrograph_from_array, read_micrograph,
                                    read_signals, supported_path, validate_image)
from napari_automat.io.write import write_tiff_calibrated
from napari_automat.model import AutomatError

# file, shape, pixel size (y, x) [Å], metadata that must be present
REAL = [
    ("real/atomap_test_ADF_cropped.hdf5", (400, 380), (0.09326270238, 0.09326270238), {"signal": "ADF"}),
    ("real/atomap_test_ABF_cropped.hdf5", (400, 380), (0.09326270238, 0.09326270238), {"signal": "ABF"}),
    ("real/ncempy_16_STOimage.emi", (1024, 1024), (0.1001270424, 0.1001270424), {"voltage_kV": 80.0}),
    ("real/ncempy_16_STOimage_1.ser", (1024, 1024), (0.1001270424, 0.1001270424), {"voltage_kV": 80.0}),
    ("real/temul_Cropped_PTO-SRO_Aligned.hspy", (224, 1312), (0.1499680298, 0.1499680298),
     {"voltage_kV": 300.0, "signal": "HAADF", "detector": "HAADF"}),
    ("formats/ncempy_dmTest_float32_nonSquare_diffPixelSize.dm3", (64, 128), (2.0, 10.0), {}),
    ("formats/ncempy_dmTest_float32_nonSquare_diffPixelSize.dm4", (64, 128), (2.0, 10.0), {}),
    ("formats/ncempy_STEM_HAADF_Diffraction_Micro.emd", (128, 128), (873.7079614, 873.7079614),
     {"voltage_kV": 300.0, "signal": "HAADF"}),
    ("formats/ncempy_temp.mrc", (3, 128, 128), (2.0, 2.0), {}),
    ("formats/rsciio_test_loading_image_saved_with_DM.tif", (68, 68), (1686.746925, 1686.746925), {}),
]


@pytest.mark.parametrize("name, shape, pixel_A, meta", REAL, ids=[r[0].split("/")[1] for r in REAL])
def test_real_files_calibration(data_dir, name, shape, pixel_A, meta):
    m = read_micrograph(data_dir / name)
    assert m.shape == shape
    assert m.calibrated
    assert m.pixel_size_A == pytest.approx(pixel_A, rel=1e-8)
    for key, value in meta.items():
        assert m.metadata[key] == value
    assert m.path.endswith(name.split("/")[1])
    assert np.isfinite(m.data).all() and m.data.dtype != np.float16


def test_unitless_hyperspy_scale_is_read_as_nm(data_dir):
    m = read_micrograph(data_dir / "real/atomap_test_ADF_cropped.hdf5")
    assert m.metadata["original_units"] == ["", ""]
    assert m.metadata["original_scale"][0] == pytest.approx(0.009326270238)
    assert "read as nm" in m.metadata["calibration_note"]


def test_units_are_converted_from_what_the_file_says(data_dir):
    dm = read_micrograph(data_dir / "formats/ncempy_dmTest_float32_nonSquare_diffPixelSize.dm3")
    assert dm.metadata["original_units"] == ["A", "nm"] and dm.metadata["original_scale"] == [2.0, 1.0]
    tif = read_micrograph(data_dir / "formats/rsciio_test_loading_image_saved_with_DM.tif")
    assert tif.metadata["original_units"] == ["µm", "µm"]
    assert tif.pixel_size_A[0] == pytest.approx(tif.metadata["original_scale"][0] * 1e4, rel=1e-12)
    temul = read_micrograph(data_dir / "real/temul_Cropped_PTO-SRO_Aligned.hspy")
    assert temul.metadata["convergence_angle_mrad"] == pytest.approx(17.90, abs=0.01)


def test_ser_alone_and_emi_alone(data_dir, tmp_path):
    shutil.copy(data_dir / "real/ncempy_16_STOimage_1.ser", tmp_path / "sto_1.ser")
    m = read_micrograph(tmp_path / "sto_1.ser")  # no .emi: image and calibration, no voltage
    assert m.shape == (1024, 1024) and m.pixel_size_A[0] == pytest.approx(0.1001270424)
    assert "voltage_kV" not in m.metadata
    shutil.copy(data_dir / "real/ncempy_16_STOimage.emi", tmp_path / "lonely.emi")
    with pytest.raises(AutomatError, match="lonely_1.ser"):
        read_micrograph(tmp_path / "lonely.emi")


# --- synthetic HyperSpy files: unit rules and non-image signals --------------------------------


def _write_hspy(path, data, axes):
    from rsciio import hspy

    axes = [{"name": n, "size": s, "scale": sc, "offset": 0.0, "units": u, "navigate": nav}
            for n, s, sc, u, nav in axes]
    signal = {"data": np.asarray(data), "axes": axes, "original_metadata": {}, "learning_results": {},
              "models": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
              "package_info": {"name": "hyperspy", "version": "2.0"},
              "metadata": {"General": {"title": "test"}, "Signal": {"signal_type": ""}}}
    hspy.file_writer(str(path), signal, show_progressbar=False)
    return path


def _image_axes(scale, units, n=32):
    return [("y", n, scale, units, False), ("x", n, scale, units, False)]


@pytest.mark.parametrize("scale, units, expected, calibrated", [
    (0.02, None, 0.2, True),            # unit-less, atomic-resolution magnitude -> nm
    (0.4, "", 4.0, True),
    (1.0, None, 1.0, False),            # HyperSpy default scale: no calibration
    (3.0, None, 1.0, False),            # unit-less but not plausible nm
    (0.05, "n_m", 0.5, True),
    (0.05, "nanometers", 0.5, True),
    (50.0, "pm", 0.5, True),
    (0.5, "Å", 0.5, True),
    (0.5, "angstrom", 0.5, True),
    (5e-5, "µm", 0.5, True),
    (5e-5, "um", 0.5, True),
    (5e-11, "m", 0.5, True),
    (1.0, "pixels", 1.0, False),
    (0.01, "inch", 1.0, False),         # print resolution, not a microscope calibration
    (0.02, "furlong", 1.0, False),
])
def test_hyperspy_units(tmp_path, scale, units, expected, calibrated):
    data = np.random.default_rng(0).random((32, 32))
    m = read_micrograph(_write_hspy(tmp_path / "img.hspy", data, _image_axes(scale, units)))
    assert m.pixel_size_A == pytest.approx((expected, expected), rel=1e-9)
    assert m.calibrated is calibrated
    if not calibrated and scale != 1.0:
        assert m.metadata["calibration_note"]


@pytest.mark.parametrize("data_shape, axes, match", [
    ((100,), [("E", 100, 1.0, "eV", False)], "spectrum"),
    ((20, 20, 50), [("y", 20, 0.1, "nm", True), ("x", 20, 0.1, "nm", True), ("E", 50, 1.0, "eV", False)],
     "spectrum image"),
    ((3, 4, 20, 20), [("a", 3, 1.0, None, True), ("b", 4, 1.0, None, True), ("ky", 20, 0.1, "1/nm", False),
                      ("kx", 20, 0.1, "1/nm", False)], "4D"),
    ((20, 20), [("ky", 20, 0.1, "1/nm", False), ("kx", 20, 0.1, "1/nm", False)], "diffraction"),
])
def test_non_images_are_refused(tmp_path, data_shape, axes, match):
    data = np.random.default_rng(0).random(data_shape)
    with pytest.raises(AutomatError, match=match):
        read_micrograph(_write_hspy(tmp_path / "sig.hspy", data, axes))


def test_hyperspy_stack_keeps_frames_first(tmp_path):
    data = np.random.default_rng(0).random((20, 24, 3))  # navigation axis stored last in the array
    axes = [("y", 20, 0.02, "nm", False), ("x", 24, 0.03, "nm", False), ("t", 3, 1.0, "s", True)]
    m = read_micrograph(_write_hspy(tmp_path / "stack.hspy", data, axes))
    assert m.shape == (3, 20, 24)
    assert m.pixel_size_A == pytest.approx((0.2, 0.3))
    np.testing.assert_array_equal(m.data[1], data[:, :, 1])


@pytest.mark.parametrize("units, factor", [
    ("nm", 10.0), ("NM", 10.0), ("n_m", 10.0), ("nano meter", 10.0), ("nanometres", 10.0), ("pm", 0.01),
    ("picometers", 0.01), ("A", 1.0), ("Å", 1.0), ("\u212b", 1.0), ("Angstroms", 1.0), ("µm", 1e4),
    ("\u03bcm", 1e4), ("um", 1e4), ("micron", 1e4), ("m", 1e10), ("px", None), ("ms", None), ("", None),
    (None, None), ("1/nm", None),
])
def test_angstrom_per_unit(units, factor):
    assert angstrom_per_unit(units) == factor


# --- plain images and bad input ------------------------------------------------------------------


def _png(path, arr):
    import imageio.v3 as iio

    iio.imwrite(path, arr)
    return path


def _noise(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) * 250).astype(np.uint8)


def test_plain_png_is_uncalibrated(tmp_path):
    arr = _noise((40, 50))
    calls = []
    m = read_micrograph(_png(tmp_path / "haadf_image.png", arr), progress=lambda f, msg: calls.append(f))
    np.testing.assert_array_equal(m.data, arr)
    assert (m.pixel_size_A, m.calibrated, m.metadata["signal"]) == ((1.0, 1.0), False, "HAADF")
    assert calls[0] == 0.0 and calls[-1] == 1.0


def test_grey_saved_as_rgb_is_accepted(tmp_path):
    grey = _noise((40, 50))
    m = read_micrograph(_png(tmp_path / "grey.png", np.stack([grey] * 3, axis=-1)))
    np.testing.assert_array_equal(m.data, grey)


def _bad_files(tmp_path):
    rng = np.random.default_rng(3)
    nan = rng.random((32, 32)).astype(np.float32)
    nan[[1, 5, 9], [2, 3, 4]] = np.nan
    inf = rng.random((32, 32)).astype(np.float32)
    inf[0, 0] = np.inf
    truncated = tmp_path / "truncated.tif"
    write_tiff_calibrated(tmp_path / "full.tif", rng.random((256, 256)), 1.0)
    truncated.write_bytes((tmp_path / "full.tif").read_bytes()[:40000])
    (tmp_path / "empty.dm3").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    write_tiff_calibrated(tmp_path / "nan.tif", nan, 1.0)
    write_tiff_calibrated(tmp_path / "inf.tif", inf, 1.0)
    write_tiff_calibrated(tmp_path / "constant.tif", np.full((32, 32), 7.0), 1.0)
    _png(tmp_path / "rgb.png", _noise((32, 32, 3)))
    _png(tmp_path / "one.png", np.array([[5]], np.uint8))
    _png(tmp_path / "small.png", _noise((8, 40)))
    _png(tmp_path / "png_truncated.png", _noise((64, 64)))
    (tmp_path / "png_truncated.png").write_bytes((tmp_path / "png_truncated.png").read_bytes()[:300])
    for ext in ("dm3", "dm4", "emd", "ser", "mrc", "tif", "hspy", "hdf5", "png", "jpg"):
        (tmp_path / f"random.{ext}").write_bytes(rng.bytes(4096))


BAD = [
    ("missing.dm3", "file not found"),
    ("empty.dm3", "empty"),
    ("notes.txt", "unsupported file type '.txt'"),
    ("truncated.tif", "damaged, truncated"),
    ("png_truncated.png", "damaged, truncated"),
    ("rgb.png", "^RGB image: save the micrograph as a single-channel \\(grayscale\\) image$"),
    ("one.png", "1x1 pixels: at least 16x16"),
    ("small.png", "8x40 pixels"),
    ("constant.tif", "constant"),
    ("nan.tif", "^3 of 1024 pixels are NaN or infinite"),
    ("inf.tif", "^1 of 1024 pixels"),
] + [(f"random.{ext}", "not a valid") for ext in ("dm3", "dm4", "emd", "ser", "mrc", "tif", "hspy", "hdf5",
                                                   "png", "jpg")]


@pytest.mark.parametrize("name, match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_one_line_error(tmp_path, name, match):
    _bad_files(tmp_path)
    with pytest.raises(AutomatError, match=match) as info:
        read_micrograph(tmp_path / name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data, match", [
    (np.zeros((20, 20), complex) + np.arange(20), "complex"),
    (np.ones((2, 3, 20, 20)), "shape \\(2, 3, 20, 20\\)"),
    (np.array([["a"] * 20] * 20), "not numeric"),
    (np.stack([np.arange(400.0).reshape(20, 20), np.ones((20, 20))]), "frame 1 of the stack is constant"),
    (np.random.default_rng(0).random((20, 20, 3)), "RGB"),
])
def test_validate_image(data, match):
    with pytest.raises(AutomatError, match=match):
        validate_image(data)


def test_validate_image_accepts_a_stack():
    validate_image(np.random.default_rng(0).random((3, 20, 20)))


def test_supported_path(tmp_path):
    (tmp_path / "a.DM4").write_bytes(b"x")
    (tmp_path / "a.txt").write_bytes(b"x")
    assert supported_path(tmp_path / "a.DM4") and supported_path(str(tmp_path / "a.DM4"))
    assert supported_path([tmp_path / "a.DM4"])
    assert not supported_path(tmp_path / "a.txt")
    assert not supported_path(tmp_path / "missing.dm4")
    assert not supported_path(None) and not supported_path(12) and not supported_path([])


def test_micrograph_from_array_and_pixel_size():
    arr = np.random.default_rng(0).random((30, 40)).astype(np.float16)
    m = micrograph_from_array(arr)
    assert m.data.dtype == np.float32 and not m.calibrated and m.pixel_size_A == (1.0, 1.0)
    m2 = micrograph_from_array(arr, (0.5, 0.25))
    assert m2.calibrated and m2.pixel_size_A == (0.5, 0.25)
    m3 = apply_pixel_size(m, 0.3)
    assert m3.pixel_size_A == (0.3, 0.3) and m3.calibrated and m3.metadata["calibration_note"] == "set by user"
    assert not m.calibrated  # the original is untouched
    for bad in (0, -1.0, float("nan"), "abc", (1.0, 2.0, 3.0)):
        with pytest.raises(AutomatError, match="pixel size"):
            apply_pixel_size(m, bad)


DPC_TITLES = "formats/rsciio_fei_example_dpc_titles.emd"  # RosettaSciIO test data, GPL-3.0


def test_read_signals_lists_every_detector_of_a_dpc_file(data_dir):
    signals = read_signals(data_dir / DPC_TITLES)
    titles = [m.metadata["title"] for m in signals]
    assert sorted(titles) == sorted(["DF4-A", "DF4-B", "DF4-C", "DF4-D", "A-C", "B-D", "DPC", "iDPC",
                                     "Filtered iDPC"])
    assert titles[:2] == ["iDPC", "Filtered iDPC"]  # no HAADF: iDPC first, segments and DPC after
    assert signals[0].metadata["signal"] == "iDPC" and signals[titles.index("DPC")].metadata["signal"] == "DPC"
    for m in signals:
        assert m.shape == (2, 2) and m.calibrated
        assert m.pixel_size_A == pytest.approx((0.99619916, 0.99619916), rel=1e-6)  # 99.6 pm/px
    dpc = signals[titles.index("DPC")]
    assert not np.iscomplexobj(dpc.data) and dpc.metadata["complex_shown_as"] == "magnitude"
    assert dpc.data[0, 0] == pytest.approx(abs(-32.84666 - 214.79666j), rel=1e-5)
    with pytest.raises(AutomatError, match="2x2 pixels"):  # too small to analyse
        read_micrograph(data_dir / DPC_TITLES)


def test_read_signals_of_a_single_image_file_is_read_micrograph(data_dir):
    path = data_dir / "real/temul_Cropped_PTO-SRO_Aligned.hspy"
    (only,) = read_signals(path)
    single = read_micrograph(path)
    assert only.pixel_size_A == single.pixel_size_A and only.metadata == single.metadata
    np.testing.assert_array_equal(only.data, single.data)


def _signal(title, data, detector=""):
    axes = [{"name": n, "scale": 0.01, "units": "nm", "navigate": False, "size": s}
            for n, s in zip("yx", np.shape(data)[-2:])]
    if np.ndim(data) == 1:
        axes = [{"name": "E", "scale": 1.0, "units": "eV", "navigate": False, "size": len(data)}]
    return {"data": np.asarray(data), "axes": axes, "metadata": {"General": {"title": title}, "Signal": {}},
            "original_metadata": {"Detector": detector} if detector else {}}


@pytest.mark.parametrize("titles, best", [
    (["DF4-A", "A-C", "DPC", "ABF", "iDPC", "HAADF"], "HAADF"),
    (["DF4-A", "A-C", "DPC", "ABF", "iDPC"], "iDPC"),
    (["DF4-B", "B-D", "DPC", "ABF"], "ABF"),
    (["DPC", "B-D", "BF"], "BF"),
])
def test_multi_signal_files_rank_signals_for_analysis(tmp_path, monkeypatch, titles, best):
    import rsciio.emd

    rng = np.random.default_rng(0)
    signals = [_signal(t, rng.random((32, 24)) + (1j if t == "DPC" else 0), detector="DF4") for t in titles]
    signals.append(_signal("EDS", np.ones(10)))  # a spectrum: not an image, skipped
    monkeypatch.setattr(rsciio.emd, "file_reader", lambda *args, **kwargs: signals)
    path = tmp_path / "scan.emd"
    path.write_bytes(b"stand-in")
    listed = read_signals(path)
    order = [m.metadata["title"] for m in listed]
    assert order[0] == best and sorted(order) == sorted(titles)
    assert listed[0].metadata["signal"] == best  # the title, not the shared detector DF4
    derived = [i for i, t in enumerate(order) if t == "DPC" or "-" in t]
    assert derived == list(range(len(order) - len(derived), len(order)))  # DPC and segments last
    assert read_micrograph(path).metadata["title"] == best
    assert all(m.pixel_size_A == pytest.approx((0.1, 0.1)) for m in listed)
