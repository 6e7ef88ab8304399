"""The packaged sample (scripts/make_sample.py): calibrated, and its true columns match the image."""

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "src" / "napari_automat" / "data"


def test_sample_files_agree():
    import tifffile

    tif = DATA / "srtio3_001_haadf.tif"
    if not tif.exists():
        pytest.skip("sample not generated (run scripts/make_sample.py)")
    assert tif.stat().st_size < 300_000
    image = tifffile.imread(tif)
    record = json.loads((DATA / "srtio3_001_haadf.json").read_text())
    columns = np.load(DATA / "srtio3_001_haadf_columns.npy")
    assert image.shape == tuple(record["shape"]) == (256, 256)
    assert record["structure"]["a_A"] == 3.905 and record["pixel_size_A"] == [0.15, 0.15]
    assert len(columns) == len(record["columns_species"]) == 400
    labels = np.array(record["columns_species"])
    # SrTiO3 [001]: one Sr, one Ti+O and two O columns per 3.905 Å cell
    assert (labels == "O").sum() == 2 * (labels == "Sr").sum() == 2 * (labels == "Ti+O").sum()
    smooth = image.astype(float)
    at = {lab: smooth[tuple(np.round(columns[labels == lab]).astype(int).T)].mean() for lab in ("Sr", "Ti+O", "O")}
    assert at["Sr"] > 1.3 * at["Ti+O"] > 1.3 * at["O"] and at["O"] < image.mean()
    # a Sr - Sr distance of one lattice parameter
    sr = columns[labels == "Sr"]
    d = np.linalg.norm(sr[1:] - sr[0], axis=1)
    assert d.min() * 0.15 == pytest.approx(3.905, abs=1e-3)


def test_sample_reads_calibrated():
    tif = DATA / "srtio3_001_haadf.tif"
    if not tif.exists():
        pytest.skip("sample not generated (run scripts/make_sample.py)")
    from napari_automat.io.read import read_micrograph

    m = read_micrograph(tif)
    assert m.calibrated and m.pixel_size_A == pytest.approx((0.15, 0.15))
    assert m.metadata.get("voltage_kV") == 200 and m.metadata.get("signal") == "HAADF"
