"""Atomic writers: text, JSON, CIF, columns CSV and calibrated TIFF (round trips)."""

import json
import math

import numpy as np
import pytest

from napari_automat.io.read import read_micrograph
from napari_automat.io.write import (COLUMNS_CSV_HEADER, atomic_path, read_columns_csv, write_cif,
                                     write_columns_csv, write_json, write_text_atomic, write_tiff_calibrated)
from napari_automat.model import AutomatError, Columns, Micrograph


def test_atomic_text_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "first")
    write_text_atomic(target, "second ü")
    assert target.read_text(encoding="utf-8") == "second ü"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_numpy_and_nan(tmp_path):
    m = Micrograph(np.zeros((4, 4)), (0.5, 0.5), True, "x.tif", {"voltage_kV": 300.0})
    obj = {"a": np.float64("nan"), "b": [1.0, float("inf"), np.int64(3)], "c": np.arange(3),
           "d": (np.bool_(True), None), "path": tmp_path, "m": m, 5: "int key"}
    text = write_json(tmp_path / "r.json", obj).read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["a"] is None and back["b"] == [1.0, None, 3] and back["c"] == [0, 1, 2]
    assert back["d"] == [True, None] and back["path"] == str(tmp_path) and back["5"] == "int key"
    assert back["m"]["pixel_size_A"] == [0.5, 0.5] and back["m"]["metadata"]["voltage_kV"] == 300.0
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})


def _srtio3(perturb=0.0):
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    if perturb:
        s.perturb(perturb, min_distance=perturb / 2)
    return s


def test_cif_has_space_group_and_reads_back(tmp_path):
    from pymatgen.io.cif import CifParser

    path = write_cif(tmp_path / "sto.cif", _srtio3(perturb=0.02), symprec=0.1)
    text = path.read_text()
    assert "Pm-3m" in text and "_symmetry_Int_Tables_number   221" in text
    back = CifParser(str(path)).parse_structures(primitive=False)[0]
    assert back.composition.reduced_formula == "SrTiO3"
    assert back.get_space_group_info(symprec=0.01) == ("Pm-3m", 221)
    assert back.lattice.abc == pytest.approx((3.905, 3.905, 3.905), abs=0.02)


def test_cif_falls_back_to_p1(tmp_path, monkeypatch):
    import pymatgen.io.cif as cif

    real = cif.CifWriter

    def failing(structure, symprec=None, **kw):
        if symprec is not None:
            raise ValueError("symmetry failed")
        return real(structure, **kw)

    monkeypatch.setattr(cif, "CifWriter", failing)
    text = write_cif(tmp_path / "p1.cif", _srtio3(), symprec=0.1).read_text()
    assert "P 1" in text or "P1" in text
    assert text.count(" Sr") >= 1 and text.count(" O") >= 3


def _columns():
    pos = np.array([[10.25, 20.5], [30.125, 5.75], [0.0, 63.0]])
    return Columns(pos, (0.125, 0.25), intensity=[1.5, np.nan, 3.25], sigma_px=[1.1, 1.2, np.nan],
                   sublattice=[0, 1, -1], species=["Sr", "Ti+O", ""], species_confidence=[0.9, 0.5, 0.0],
                   provenance=["detected", "moved", "added"])


def test_columns_csv_round_trip(tmp_path):
    cols = _columns()
    path = write_columns_csv(tmp_path / "c.csv", cols)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS_CSV_HEADER) and len(lines) == 4
    assert lines[1].split(",")[2] == repr(10.25 * 0.125)  # y_A
    back = read_columns_csv(path)
    assert back.pixel_size_A == pytest.approx((0.125, 0.25), rel=1e-12)
    np.testing.assert_allclose(back.positions_px, cols.positions_px)
    np.testing.assert_allclose(back.intensity, cols.intensity, equal_nan=True)
    np.testing.assert_allclose(back.sigma_px, cols.sigma_px, equal_nan=True)
    assert back.sublattice.tolist() == [0, 1, -1]
    assert back.species == ["Sr", "Ti+O", ""] and back.provenance == ["detected", "moved", "added"]
    np.testing.assert_allclose(back.species_confidence, [0.9, 0.5, 0.0])


def test_columns_csv_empty_and_bad(tmp_path):
    empty = Columns.from_positions(np.zeros((0, 2)), (0.5, 0.5))
    back = read_columns_csv(write_columns_csv(tmp_path / "e.csv", empty), pixel_size_A=(0.5, 0.5))
    assert len(back) == 0 and back.pixel_size_A == (0.5, 0.5)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(AutomatError, match="not a columns table"):
        read_columns_csv(tmp_path / "bad.csv")


@pytest.mark.parametrize("shape, pixel_A", [((48, 64), (0.0933, 0.12)), ((3, 40, 40), 0.5)])
def test_tiff_round_trip(tmp_path, shape, pixel_A):
    import tifffile

    data = np.random.default_rng(0).random(shape) * 1000
    path = write_tiff_calibrated(tmp_path / "img.tif", data, pixel_A,
                                 {"voltage_kV": 300, "signal": "HAADF", "convergence_angle_mrad": 21.4})
    assert tifffile.imread(path).dtype == np.float32
    m = read_micrograph(path)
    expected = pixel_A if isinstance(pixel_A, tuple) else (pixel_A, pixel_A)
    assert m.calibrated and m.pixel_size_A == pytest.approx(expected, rel=1e-7)
    assert m.shape == shape
    np.testing.assert_allclose(m.data, data.astype(np.float32))
    assert m.metadata["voltage_kV"] == 300.0 and m.metadata["signal"] == "HAADF"
    assert math.isclose(m.metadata["convergence_angle_mrad"], 21.4)
