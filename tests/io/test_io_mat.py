"""MATLAB .mat micrographs (StatSTEM/QEM layout), v5 through scipy and v7.3 (HDF5) through h5py."""

import h5py
import numpy as np
import pytest
import scipy.io

from napari_automat.io.read import read_micrograph, supported_path
from napari_automat.model import AutomatError


def _image(h=40, w=56):
    """A non-square image whose rows and columns differ, so a transposition or flip shows."""
    y, x = np.mgrid[:h, :w]
    img = 10.0 + 0.5 * y + 0.1 * x
    img[3, 7] = 100.0  # a marker near the top left corner
    return img


def _write_v73(path, tree):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 after a 512-byte header, structs as groups,
    arrays stored column-major (transposed) with a MATLAB_class attribute."""

    def put(group, key, value):
        if isinstance(value, dict):
            sub = group.create_group(key)
            sub.attrs["MATLAB_class"] = np.bytes_("struct")
            for k, v in value.items():
                put(sub, k, v)
        elif isinstance(value, str):
            chars = np.frombuffer(value.encode("utf-16-le"), dtype=np.uint16).reshape(-1, 1)
            group.create_dataset(key, data=chars).attrs["MATLAB_class"] = np.bytes_("char")
        else:
            arr = np.atleast_2d(np.asarray(value, dtype=float))
            group.create_dataset(key, data=arr.T).attrs["MATLAB_class"] = np.bytes_("double")

    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in tree.items():
            put(f, key, value)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


def test_statstem_v5_struct_gives_obs_and_dx(tmp_path):
    obs = _image()
    path = tmp_path / "statstem.mat"
    scipy.io.savemat(path, {
        "input": {"obs": obs, "dx": 0.25, "coordinates": np.zeros((300, 3)), "name": "sto"},
        "output": {"model": np.ones((64, 80)), "dx": 0.5},  # larger than obs, but not the observation
    })
    assert supported_path(path)
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, obs)
    assert m.pixel_size_A == (0.25, 0.25) and m.calibrated
    assert m.metadata["variable"] == "input.obs" and m.metadata["format"] == "mat"
    assert "Å per pixel" in m.metadata["calibration_note"]


def test_v73_file_is_transposed_back_to_matlab_rows_and_columns(tmp_path):
    obs = _image()
    path = tmp_path / "qem.mat"
    _write_v73(path, {"input": {"obs": obs, "dx": 0.187, "name": "ADF"}, "dx": 0.9})
    m = read_micrograph(path)
    assert m.shape == obs.shape
    np.testing.assert_array_equal(m.data, obs)
    assert m.data[3, 7] == 100.0
    assert m.pixel_size_A == pytest.approx((0.187, 0.187)) and m.calibrated  # the image's own struct wins
    assert m.metadata["format"] == "mat-v7.3" and m.metadata["variable"] == "input.obs"


def test_largest_array_without_statstem_names(tmp_path):
    path = tmp_path / "haadf_scan.mat"
    scipy.io.savemat(path, {"small": np.ones((20, 20)), "img": _image(48, 64), "profile": np.arange(500.0)})
    m = read_micrograph(path)
    assert m.shape == (48, 64) and m.metadata["variable"] == "img"
    assert not m.calibrated and m.pixel_size_A == (1.0, 1.0)
    assert m.metadata["signal"] == "HAADF"  # from the file name


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_statstem_placeholder_dx_leaves_the_image_uncalibrated(tmp_path, version):
    path = tmp_path / "obs.mat"
    tree = {"input": {"obs": _image(), "dx": 1.0}}
    scipy.io.savemat(path, tree) if version == "v5" else _write_v73(path, tree)
    m = read_micrograph(path)
    assert not m.calibrated and "placeholder" in m.metadata["calibration_note"]


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_no_2d_image_is_a_clear_error(tmp_path, version):
    path = tmp_path / "numbers.mat"
    tree = {"dx": 0.2, "coordinates": np.zeros((50, 3)), "title": "not an image"}
    scipy.io.savemat(path, tree) if version == "v5" else _write_v73(path, tree)
    with pytest.raises(AutomatError, match=r"numbers.mat holds no 2D image of at least 16x16 pixels"
                                            r".*coordinates \(50x3\)"):
        read_micrograph(path)


def test_matlab_class_object_names_the_way_out(tmp_path):
    path = tmp_path / "fitted.mat"
    _write_v73(path, {})
    with h5py.File(path, "a") as f:
        ds = f.create_dataset("input", data=np.array([[3707764736, 2, 1, 1, 1, 1]], dtype=np.uint32))
        ds.attrs["MATLAB_class"] = np.bytes_("inputStatSTEM")
        ds.attrs["MATLAB_object_decode"] = np.int32(3)
    with pytest.raises(AutomatError, match=r"'input' is a MATLAB inputStatSTEM class object.*obs = input.obs"):
        read_micrograph(path)


def test_damaged_mat_file(tmp_path):
    path = tmp_path / "broken.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(AutomatError, match="cannot read broken.mat"):
        read_micrograph(path)


def test_v5_class_object_is_named(tmp_path, monkeypatch):
    from scipy.io.matlab import MatlabOpaque
    from scipy.io.matlab._mio5_params import OPAQUE_DTYPE

    path = tmp_path / "fitted.mat"
    scipy.io.savemat(path, {"x": 1.0})
    record = np.zeros(1, dtype=OPAQUE_DTYPE)
    for field in set(OPAQUE_DTYPE.names) & {"s2", "_Class"}:  # the class name's field before / after scipy 1.18
        record[field][0] = b"inputStatSTEM"
    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: {"__header__": b"", "input": MatlabOpaque(record)})
    with pytest.raises(AutomatError, match="'input' is a MATLAB inputStatSTEM class object"):
        read_micrograph(path)
