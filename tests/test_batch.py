"""Batch processing on a local dask cluster: every image gets a folder; a bad one gets a row, not a crash."""

import csv
import shutil

import pytest

from napari_automat.batch import DONE_STATUSES, find_inputs, run_batch
from napari_automat.config import PipelineConfig


def test_ser_of_an_emi_pair_is_read_once(tmp_path):
    for name in ("scan.emi", "scan_1.ser", "other.ser", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_inputs(str(tmp_path))] == ["other.ser", "scan.emi"]


@pytest.mark.slow
def test_batch_processes_good_and_bad_images(tmp_path):
    from napari_automat.io.datasets import sample_path

    sample = sample_path("srtio3")
    if not sample.exists():
        pytest.skip("bundled sample not generated yet")
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(sample, inputs / "a.tif")
    shutil.copy(sample, inputs / "b.tif")
    (inputs / "broken.tif").write_bytes(b"not a tiff")
    rows = run_batch(str(inputs), tmp_path / "out", PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none"),
                     workers=1, show_progress=False)
    status = {r["input"].rsplit("/", 1)[-1]: r["status"] for r in rows}
    assert status["a.tif"] in DONE_STATUSES and status["b.tif"] in DONE_STATUSES
    assert status["broken.tif"].startswith("error:")
    assert (tmp_path / "out" / "a" / "structure.cif").exists()
    with open(tmp_path / "out" / "summary.csv") as f:
        table = list(csv.DictReader(f))
    done = [r for r in table if r["status"] in DONE_STATUSES]
    assert {r["formula"] for r in done} == {"SrTiO3"}
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["structure_type"] for r in done)
