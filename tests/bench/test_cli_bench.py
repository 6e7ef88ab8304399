"""The instrument end to end as CI runs it: `automat bench run --quick`, then `automat bench report`."""

import json

import numpy as np

from napari_automat.bench.metrics import visible_mask
from napari_automat.cli import main

DESIGN_KEYS = {"tiers", "detection", "denoise", "retrieval", "timing"}
TIER_KEYS = {"n", "match_rate", "lattice_rmsd_A", "formation_energy_mae_meV", "composition_correct_rate",
             "formation_energy_mae_vs_reference_meV", "reference_floor_mae_meV"}


def test_oxygen_columns_next_to_strontium_are_invisible_in_haadf_only():
    labels = ["Sr", "Ti+O", "O", "O"]
    assert visible_mask(labels, "HAADF").tolist() == [True, True, False, False]
    assert visible_mask(labels, "ABF").all()
    assert visible_mask(["Na", "Cl"], "HAADF").all()


def test_quick_benchmark_run_and_report(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "run", "--quick", "-o", str(out), "--energy-model", "none"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert DESIGN_KEYS <= set(metrics)
    assert set(metrics["tiers"]) == {"unary", "binary", "ternary"}
    for row in metrics["tiers"].values():
        assert TIER_KEYS <= set(row) and row["n"] == 2
    assert {"recall", "precision", "position_rmse_pm", "s_per_1000_columns"} <= set(metrics["detection"])
    assert {"top1", "top5", "ms_per_query", "library_size"} <= set(metrics["retrieval"])
    # The quick set is easy: most visible columns are found, and found columns are real ones.
    assert metrics["detection"]["precision"] > 0.8
    assert metrics["detection"]["recall"] > 0.7
    assert np.isfinite(metrics["timing"]["median_s_per_image"])
    page = tmp_path / "benchmarks.md"
    assert main(["bench", "report", "-o", str(out), "--markdown", str(page), "--images", str(tmp_path / "img")]) == 0
    text = page.read_text()
    assert "unary" in text and "AutoMat" in text
