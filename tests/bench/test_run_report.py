"""Benchmark runner, metrics and report on a tiny bench built here (SrTiO3 [001], Cu [001])."""

import json

import numpy as np
import pytest

from napari_automat.bench import metrics as M

DESIGN_KEYS = {
    "tiers": None,
    "detection": {"recall", "precision", "position_rmse_pm", "s_per_1000_columns"},
    "denoise": {"psnr_in_dB", "psnr_out_dB", "ssim_out"},
    "retrieval": {"top1", "top5", "ms_per_query", "library_size"},
    "timing": {"median_s_per_image"},
}
TIER_KEYS = {"n", "match_rate", "lattice_rmsd_A", "formation_energy_mae_meV", "composition_correct_rate",
             "formation_energy_mae_vs_reference_meV", "reference_floor_mae_meV"}


def _srtio3():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _cu():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])


def _write_sample(root, sid, tier, structure, dose, seed):
    from napari_automat.io.write import write_tiff_calibrated
    from napari_automat.simulate import incoherent_image

    px = 0.15
    clean = incoherent_image(structure, (0, 0, 1), pixel_size_A=px, field_of_view_A=30.0)
    noisy = incoherent_image(structure, (0, 0, 1), pixel_size_A=px, field_of_view_A=30.0, dose=dose, seed=seed)
    folder = root / "samples" / tier / sid
    folder.mkdir(parents=True)
    write_tiff_calibrated(folder / "image.tif", noisy.data, px, {"signal": "HAADF"})
    np.save(folder / "clean.npy", clean.data.astype(np.float32))
    np.save(folder / "columns.npy", clean.true_columns_px)
    structure.to(filename=str(folder / "truth.cif"))
    comp = structure.composition
    meta = {"id": sid, "tier": tier, "formula": comp.reduced_formula,
            "elements": sorted(e.symbol for e in comp.elements), "zone_axis": [0, 0, 1], "pixel_size_A": px,
            "dose_e_per_A2": dose, "detector": "HAADF", "thickness_A": 0.0, "rotation_deg": 0.0,
            "is_2d": False, "generalisation": False, "source": "test", "simulator": "incoherent",
            "image": f"samples/{tier}/{sid}/image.tif"}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    samples = [_write_sample(root, "srtio3-001", "ternary", _srtio3(), 1e3, 1),
               _write_sample(root, "cu-001", "unary", _cu(), 1e3, 2)]
    (root / "manifest.json").write_text(json.dumps({"version": 1, "seed": 0, "quick": True, "samples": samples}))
    return root


@pytest.fixture(scope="module")
def metrics(bench, tmp_path_factory):
    from napari_automat.bench.run import run_benchmark

    out = tmp_path_factory.mktemp("out")
    return out, run_benchmark(bench, out, quick=True, energy_model="none")


def test_structure_metrics_known_cases():
    sto = _srtio3()
    bto = sto.copy()
    bto.replace_species({"Sr": "Ba"})
    assert not M.structures_match(bto, sto)
    assert M.structure_types_match(bto, sto) and not M.structure_types_match(_cu(), sto)  # same type, not Cu
    assert not M.composition_correct(bto, sto)
    assert M.lattice_rmsd_A(bto, sto) is None
    scaled = sto.copy()
    scaled.scale_lattice(sto.volume * 1.02 ** 3)
    assert M.structures_match(scaled, sto)
    assert M.lattice_rmsd_A(scaled, sto) == pytest.approx(0.0781, abs=1e-3)
    cu_prim = _cu().get_primitive_structure()  # mapped back onto the conventional cell
    assert M.lattice_rmsd_A(cu_prim, _cu()) == pytest.approx(0.0, abs=1e-6)


def test_detection_denoise_and_reference_metrics():
    rng = np.random.default_rng(0)
    true = rng.uniform(10, 90, size=(50, 2))
    found = np.vstack([true[:45] + 0.1, [[50.3, 50.3]]])  # 45 right (0.1414 px off), 1 spurious
    d = M.match_columns(true, found, pixel_size_A=0.1, shape=(100, 100), radius_A=0.5, margin_A=0.5)
    assert d["recall"] == pytest.approx(45 / 50) and d["precision"] == pytest.approx(45 / 46, abs=0.03)
    assert d["position_rmse_pm"] == pytest.approx(np.hypot(0.1, 0.1) * 10, rel=1e-6)
    faint = np.zeros(50, bool)
    faint[:5] = True  # 5 true columns too faint to be required: finding them is right, missing them no loss
    d = M.match_columns(true, found, pixel_size_A=0.1, shape=(100, 100), radius_A=0.5, margin_A=0.5, visible=~faint)
    assert d["n_true"] == 45 and d["recall"] == pytest.approx(40 / 45)
    assert d["n_correct"] == 45 and d["precision"] == pytest.approx(45 / 46)
    clean = rng.random((64, 64))
    assert M.psnr_dB(3 * clean + 7, clean) > 100  # scale and offset do not count
    assert M.psnr_dB(clean + 0.1 * rng.standard_normal(clean.shape), clean) == pytest.approx(20, abs=0.5)
    assert M.experimental_formation_energy("SrTiO3") == pytest.approx(-3.46, abs=0.05)
    assert M.experimental_formation_energy("Cu") == 0.0


def test_run_benchmark_tiny(metrics):
    out, m = metrics
    for key, sub in DESIGN_KEYS.items():
        assert key in m
        assert sub is None or sub <= set(m[key])
    for tier in ("unary", "binary", "ternary"):
        assert TIER_KEYS <= set(m["tiers"][tier])
    assert m["tiers"]["ternary"]["n"] == 1 and m["tiers"]["binary"]["n"] == 0
    assert m["tiers"]["ternary"]["match_rate"] == 1.0
    assert m["tiers"]["ternary"]["composition_correct_rate"] == 1.0
    assert m["tiers"]["ternary"]["lattice_rmsd_A"] < 0.05
    assert m["tiers"]["ternary"]["formation_energy_mae_meV"] is None  # energy_model="none"
    assert m["detection"]["precision"] > 0.95 and m["detection"]["position_rmse_pm"] < 5
    rows = json.loads((out / "samples.json").read_text())
    assert len(rows) == 4 and (out / "samples.csv").is_file()
    by_id = {(r["id"], r["hint"]): r for r in rows}
    assert by_id["cu-001", True]["det_recall"] > 0.95
    # HAADF: pure-O columns of SrTiO3 [001] (7% of a Sr column) are invisible; all cation columns are found
    assert by_id["srtio3-001", True]["det_recall"] >= 0.5
    assert m["denoise"]["psnr_in_dB"] > 20 and m["denoise"]["ssim_out"] > 0.9
    assert m["retrieval"]["top1"] == 1.0 and m["retrieval"]["library_size"] > 100
    assert all(r["type_matched"] for r in rows if r["matched"])
    assert m["retrieval"]["structure_type_no_hint"] == pytest.approx(
        np.mean([r["type_matched"] for r in rows if not r["hint"]]))


def test_run_resumes_from_saved_rows(bench, metrics, monkeypatch, tmp_path):
    import shutil

    import napari_automat.bench.run as R

    first, m = metrics
    assert m["run"]["n_resumed"] == 0 and len(list((first / "rows").glob("*.json"))) == 4
    out = tmp_path / "out"
    shutil.copytree(first, out)
    monkeypatch.setattr(R, "evaluate_sample", lambda *a: pytest.fail("a finished run was redone"))
    again = R.run_benchmark(bench, out, quick=True, energy_model="none")
    assert again["run"]["n_resumed"] == 4 and again["tiers"] == m["tiers"]
    seen = []
    monkeypatch.setattr(R, "evaluate_sample", lambda *a: seen.append(a[1]["id"]) or R._failed_row(a[1], a[2], "x"))
    (out / "rows" / "cu-001.nohint.json").write_text("{truncated")  # a row cut off mid-write is redone
    R.run_benchmark(bench, out, quick=True, energy_model="none")
    assert seen == ["cu-001"]
    R.run_benchmark(bench, out, quick=False, energy_model="none")  # other settings: everything is redone
    assert sorted(seen) == ["cu-001"] * 3 + ["srtio3-001"] * 2


def test_truth_energy_is_cached_on_disk(tmp_path, monkeypatch):
    import napari_automat.energy as E
    from napari_automat.bench import run as R
    from napari_automat.model import EnergyReport

    calls = []

    def fake(structure, **kw):
        calls.append(kw)
        return EnergyReport(model="fake", energy_per_atom_eV=-1.0, formation_energy_per_atom_eV=-0.5,
                            relaxed=True, max_force_eV_A=0.0)

    monkeypatch.setattr(E, "compute_energy", fake)
    monkeypatch.setattr(R, "_TRUTH_ENERGY", {})
    assert R._truth_formation_energy(_cu(), "cif", "fake", 10, 0.1, tmp_path) == -0.5
    monkeypatch.setattr(R, "_TRUTH_ENERGY", {})  # another process
    assert R._truth_formation_energy(_cu(), "cif", "fake", 10, 0.1, tmp_path) == -0.5
    assert len(calls) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_failing_sample_is_counted(bench, tmp_path):
    from napari_automat.bench.run import aggregate, evaluate_sample

    meta = json.loads((bench / "manifest.json").read_text())["samples"][0]
    bad = dict(meta, id="missing")
    row = evaluate_sample(bench, bad, hint=True)
    assert row["error"] and not row["matched"]
    m = aggregate([row], library_size=1)
    assert m["tiers"]["ternary"]["match_rate"] == 0.0 and m["failures"][0]["id"] == "missing"


def test_write_report(metrics, tmp_path):
    from napari_automat.bench.report import write_report

    out, m = metrics
    page = write_report(out / "metrics.json", tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "images",
                        extra_metrics={"Real data": {"atomap a error": 0.001}})
    text = page.read_text()
    assert "| ternary | 1 | 100.0% |" in text and "automat bench run" in text
    assert "320–330 meV/atom" in text and "not measured here" in text and "Real data" in text
    png = tmp_path / "docs" / "images" / "bench-match-rate.png"
    assert png.stat().st_size > 1000 and "](images/bench-match-rate.png)" in text
