"""Dataset registry: hashes of the real files, local folder use, offline error, bundled sample."""

import dataclasses

import pytest

from napari_automat.io import datasets
from napari_automat.io.read import read_micrograph
from napari_automat.model import AutomatError

NAMES = [d["name"] for d in datasets.list_datasets() if d["kind"] != "sample"]


def test_list_datasets_has_attribution():
    entries = datasets.list_datasets()
    names = {d["name"] for d in entries}
    assert {"srtio3", "atomap_adf", "atomap_abf", "ncem_sto_emi", "ncem_sto_ser", "temul_pto_sro",
            "temul_pto_positions", "ncem_dm3", "ncem_dm4", "ncem_velox_emd", "ncem_mrc", "rsciio_dm_tif"} <= names
    for d in entries:
        assert d["description"] and d["attribution"] and d["licence"]
        if d["kind"] != "sample":
            assert d["url"].startswith("https://raw.githubusercontent.com/") and len(d["sha256"]) == 64
            assert d["file"].startswith(("real/", "formats/"))


@pytest.mark.parametrize("name", NAMES)
def test_fetch_uses_local_folder_after_hash_check(data_dir, monkeypatch, name):
    monkeypatch.setenv("AUTOMAT_DATA_DIR", str(data_dir))
    path = datasets.fetch(name)
    assert path == data_dir / datasets.get_dataset(name).path
    assert datasets.sha256_of(path) == datasets.get_dataset(name).sha256


def test_fetched_emi_reads(data_dir, monkeypatch):
    monkeypatch.setenv("AUTOMAT_DATA_DIR", str(data_dir))
    m = read_micrograph(datasets.fetch("ncem_sto_emi"))
    assert m.shape == (1024, 1024) and m.metadata["voltage_kV"] == 80.0


def test_hash_mismatch_is_refused(tmp_path, monkeypatch):
    entry = datasets.get_dataset("atomap_adf")
    (tmp_path / entry.path).parent.mkdir(parents=True)
    (tmp_path / entry.path).write_bytes(b"not the real file")
    monkeypatch.setenv("AUTOMAT_DATA_DIR", str(tmp_path))
    with pytest.raises(AutomatError, match="does not match the registered sha256"):
        datasets.fetch("atomap_adf")


def test_offline_gives_clear_error(tmp_path, monkeypatch):
    entry = datasets.get_dataset("ncem_mrc")
    unreachable = dataclasses.replace(entry, url="http://127.0.0.1:9/temp.mrc")  # nothing listens on port 9
    monkeypatch.setitem(datasets._REGISTRY, "ncem_mrc", unreachable)
    monkeypatch.setenv("AUTOMAT_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(AutomatError, match="could not be downloaded.*AUTOMAT_DATA_DIR"):
        datasets.fetch("ncem_mrc")


def test_unknown_names():
    with pytest.raises(AutomatError, match="unknown dataset"):
        datasets.fetch("nope")
    with pytest.raises(AutomatError, match="unknown sample"):
        datasets.sample_path("nope")


def test_bundled_sample_reads_calibrated():
    try:
        path = datasets.sample_path("srtio3")
    except AutomatError as exc:
        pytest.skip(f"bundled sample not generated yet: {exc}")
    m = read_micrograph(path)
    assert m.calibrated and m.data.ndim == 2 and 0.05 < m.mean_pixel_size_A < 1.0
