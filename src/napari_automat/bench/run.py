"""Run the pipeline on every benchmark sample, with and without the element hint, and score it.

``run_benchmark`` reads ``BENCH_DIR/manifest.json`` (format: ``docs``/bench generate), runs the
rules planner (the one ``agent.run_agent`` uses offline) on each image and writes
``OUTDIR/metrics.json`` (keys fixed by DESIGN.md, plus extras), ``OUTDIR/samples.json`` and
``OUTDIR/samples.csv`` (one row per sample and hint mode). A sample that fails is a failure row
with its reason; it never stops the run.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..model import AutomatError, Progress, no_progress

TIERS = ("unary", "binary", "ternary")
#: Quick mode: relaxation step limit and force threshold [eV/Å].
QUICK_RELAX = (40, 0.1)
#: Truth energies computed in this process: cache key → formation energy [eV/atom].
_TRUTH_ENERGY: dict = {}


def _truth_formation_energy(structure, cif_text: str, model: str, max_steps: int, fmax: float,
                            cache_dir: Optional[Path] = None) -> Optional[float]:
    """Formation energy [eV/atom] of the relaxed ground truth, computed once per structure and model.

    With ``cache_dir`` the value is also kept on disk (one JSON file per key), so worker processes
    and a resumed run share it.
    """
    import hashlib

    from ..energy import compute_energy
    from ..io.write import write_json

    key = hashlib.sha1(f"{model}|{max_steps}|{fmax}|{cif_text}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if key not in _TRUTH_ENERGY and path is not None and path.is_file():
        _TRUTH_ENERGY[key] = json.loads(path.read_text())["formation_energy_per_atom_eV"]
    if key not in _TRUTH_ENERGY:
        report = compute_energy(structure, model=model, relax=True, fmax_eV_A=fmax, max_steps=max_steps)
        _TRUTH_ENERGY[key] = report.formation_energy_per_atom_eV
        if path is not None:
            write_json(path, {"formula": structure.composition.reduced_formula, "model": model,
                              "formation_energy_per_atom_eV": report.formation_energy_per_atom_eV})
    return _TRUTH_ENERGY[key]


def evaluate_sample(bench_dir: Union[str, Path], meta: dict, hint: bool, energy_model: str = "none",
                    quick: bool = False, truth_cache: Optional[Union[str, Path]] = None,
                    domains: bool = False) -> dict:
    """Run and score one sample; returns a flat JSON-ready row (``error`` set when something failed).

    ``truth_cache``: folder for the ground-truth energies shared between processes and runs.
    ``domains``: segment the field into domains and score the main one (``pipeline.run`` with
    ``PipelineConfig.domains``; a failure then keeps no partial metrics).

    The chain is ``pipeline.start`` + the rules planner (as ``run_agent(planner="rules")``), kept
    separate so the metrics of the stages that did finish survive a later failure.
    """
    from pymatgen.core import Structure

    from ..agent.planner import plan
    from ..config import PipelineConfig
    from ..pipeline import start
    from . import metrics as M

    folder = Path(bench_dir) / "samples" / meta["tier"] / meta["id"]
    row = {"id": meta["id"], "tier": meta["tier"], "formula": meta.get("formula"), "hint": bool(hint),
           "zone_axis": meta.get("zone_axis"), "dose_e_per_A2": meta.get("dose_e_per_A2"),
           "detector": meta.get("detector"), "simulator": meta.get("simulator"),
           "generalisation": _absent_from_library(meta), "error": None,
           "matched": False, "type_matched": False, "composition_correct": False, "formula_rank": None,
           "zone_rank": None}
    result = None
    steps, fmax = QUICK_RELAX if quick else (200, 0.05)
    from ..templates import load_library

    load_library()  # read once per process, outside the per-image time
    t0 = time.perf_counter()
    try:
        truth = Structure.from_file(folder / "truth.cif")
        row["formula"] = truth.composition.reduced_formula
        config = PipelineConfig(elements=tuple(meta.get("elements", ())) if hint else (),
                                energy_model=energy_model, max_relax_steps=steps, fmax_eV_A=fmax, domains=domains)
        image = folder / Path(meta.get("image", "image.tif")).name
        if domains:
            from ..pipeline import run

            result = run(image, config)
        else:
            result = start(image, config)
            plan(result, lambda *args: None)
    except Exception as exc:  # a failing sample is a result, not a crash
        row["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AutomatError) else str(exc)
    row["wall_s"] = time.perf_counter() - t0
    if result is None:
        return row
    row["timings_s"] = {k: float(v) for k, v in result.timings_s.items()}
    if domains:
        row["n_domains"] = len(result.domains or [])
    try:
        _score(row, result, truth, folder, steps, fmax, M, truth_cache)
    except Exception as exc:
        row["error"] = row["error"] or f"scoring failed: {type(exc).__name__}: {exc}"
    return row


def _score(row: dict, result, truth, folder: Path, steps: int, fmax: float, M, truth_cache) -> None:
    clean = np.load(folder / "clean.npy")
    noisy = np.asarray(result.micrograph.data, float)
    if noisy.shape == clean.shape:
        row["psnr_in_dB"] = M.psnr_dB(noisy, clean)
        row["ssim_in"] = M.ssim(noisy, clean)
        if result.denoised is not None:
            row["psnr_out_dB"] = M.psnr_dB(result.denoised.data, clean)
            row["ssim_out"] = M.ssim(result.denoised.data, clean)
    row["denoise_method"] = (result.denoise_info or {}).get("method")
    if result.columns is not None:
        true_px = np.load(folder / "columns.npy")
        labels_path = folder / "columns_species.json"
        visible = None  # only the columns the detector can show count as misses
        if labels_path.exists():
            visible = M.visible_mask(json.loads(labels_path.read_text()), row.get("detector") or "HAADF")
        # positions in the full image's frame: the chain may have cropped to the crystalline region
        det = M.match_columns(true_px, result.full_frame_columns().positions_px,
                              result.micrograph.mean_pixel_size_A, clean.shape[-2:], visible=visible)
        row.update({f"det_{k}": v for k, v in det.items()}, n_columns=result.columns.count)
    if result.hits:
        row.update(M.retrieval_ranks(result.hits, truth, row.get("zone_axis")))
        row["top_hit"] = result.hits[0].formula
        row["hits"] = hit_rows(result.hits, truth, M, result.chosen_index)
        row["chosen_index"] = result.chosen_index
        row["prior_weight"] = result.score_params.prior_weight
        decision = result.decision
        row["probability"], row["status"], row["alike"] = decision.probability, decision.status, decision.alike
        row["calibration_factor"] = (result.calibration or {}).get("scale_factor")
    if result.reconstruction is not None:
        pred = result.reconstruction.structure
        row["predicted_formula"] = pred.composition.reduced_formula
        row["matched"] = M.structures_match(pred, truth)
        row["type_matched"] = row["matched"] or M.structure_types_match(pred, truth)
        row["composition_correct"] = M.composition_correct(pred, truth)
        row["lattice_rmsd_A"] = M.lattice_rmsd_A(pred, truth) if row["matched"] else None
        if row["matched"]:
            row["lattice_rmsd_recalibrated_A"] = M.lattice_rmsd_A(_recalibrated(result), truth)
            library_cell = _library_cell(result)
            if library_cell is not None:
                row["lattice_rmsd_library_A"] = M.lattice_rmsd_A(library_cell, truth)
    row["e_form_exp_eV"] = M.experimental_formation_energy(truth.composition.reduced_formula)
    if result.energy is not None and result.energy.formation_energy_per_atom_eV is not None:
        row["e_form_pred_eV"] = result.energy.formation_energy_per_atom_eV
        row["energy_model"] = result.energy.model
        cif = (folder / "truth.cif").read_text()
        row["e_form_true_eV"] = _truth_formation_energy(truth, cif, result.energy.model, steps, fmax, truth_cache)
    row["warnings"] = list(result.warnings)


def _recalibrated(result):
    """The reconstruction as ``--recalibrate`` would write it: scaled by the calibration factor when
    the factor is significant (``decision.calibration_warning``)."""
    from ..decision import calibration_warning

    structure, cal = result.reconstruction.structure, result.calibration
    if calibration_warning(cal) is None:
        return structure
    return _scaled(structure, cal["scale_factor"], result.hits[result.chosen_index].details.get("is_2d"))


def _library_cell(result):
    """The reconstruction scaled by the calibration factor whatever its size: the cell of the
    library structure it was referenced to, so the floor of the recalibrated RMSD (None without a
    factor)."""
    cal = result.calibration or {}
    if cal.get("scale_factor") is None:
        return None
    return _scaled(result.reconstruction.structure, cal["scale_factor"],
                   result.hits[result.chosen_index].details.get("is_2d"))


def _scaled(structure, factor: float, is_2d: bool):
    """``structure`` with its lengths times ``factor``; a monolayer's a and b only (c spans the vacuum)."""
    from pymatgen.core import Lattice, Structure

    if not is_2d:
        scaled = structure.copy()
        scaled.scale_lattice(structure.volume * factor ** 3)
        return scaled
    m = structure.lattice.matrix.copy()
    m[:2] *= factor
    return Structure(Lattice(m), structure.species, structure.frac_coords)


def hit_rows(hits, truth, M, chosen: int = 0) -> list[dict]:
    """What the posterior fit needs of each hit: its log-evidence and log-prior, its answer group and
    structure-type group (``decision.answer_groups``), how its pattern fits the image
    (``decision.IMAGE_TERMS``), whether it fits the image alike the chosen hit
    (``decision.alike_in_image``), and whether its template matches the truth (with and without species)."""
    from ..decision import IMAGE_TERMS, alike_in_image, answer_groups, log_evidence, log_prior, structure_key

    groups, types = answer_groups(hits), answer_groups(hits, anonymous=True)
    out = []
    for hit, g, t in zip(hits, groups, types):
        correct = hit.structure is not None and M.structures_match(hit.structure, truth)
        terms = hit.terms
        out.append({"log_evidence": log_evidence(hit), "log_prior": log_prior(hit), "group": g, "type_group": t,
                    "image_fit": None if terms is None else [getattr(terms, k) for k in IMAGE_TERMS],
                    "alike": g != groups[chosen] and alike_in_image(hits[chosen], hit),
                    "structure": list(structure_key(hit)), "correct": bool(correct),
                    "type_correct": bool(correct or (hit.structure is not None
                                                     and M.structure_types_match(hit.structure, truth)))})
    return out


def _mean(values) -> Optional[float]:
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _median(values) -> Optional[float]:
    values = [float(v) for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def _mae_meV(rows, key_a: str, key_b: str) -> Optional[float]:
    diffs = [abs(r[key_a] - r[key_b]) for r in rows if r.get(key_a) is not None and r.get(key_b) is not None]
    return 1000.0 * float(np.mean(diffs)) if diffs else None


def tier_metrics(rows: list[dict]) -> dict:
    """The DESIGN.md tier block for ``rows`` of one tier and hint mode (failures count as misses)."""
    n = len(rows)
    return {"n": n,
            "match_rate": sum(r["matched"] for r in rows) / n if n else None,
            "lattice_rmsd_A": _mean(r.get("lattice_rmsd_A") for r in rows),
            "lattice_rmsd_recalibrated_A": _mean(r.get("lattice_rmsd_recalibrated_A") for r in rows),
            "lattice_rmsd_library_A": _mean(r.get("lattice_rmsd_library_A") for r in rows),
            "formation_energy_mae_meV": _mae_meV(rows, "e_form_pred_eV", "e_form_true_eV"),
            "composition_correct_rate": sum(r["composition_correct"] for r in rows) / n if n else None,
            "formation_energy_mae_vs_reference_meV": _mae_meV(rows, "e_form_pred_eV", "e_form_exp_eV"),
            "reference_floor_mae_meV": _mae_meV(rows, "e_form_true_eV", "e_form_exp_eV"),
            "n_failed": sum(r["error"] is not None for r in rows)}


def _share(rows, key: str) -> Optional[float]:
    """Fraction of ``rows`` whose ``key`` is true (None when no row has the key: older rows)."""
    known = [r for r in rows if key in r]
    return sum(bool(r[key]) for r in known) / len(known) if known else None


def _rate(rows, key: str, k: int) -> Optional[float]:
    return sum(r.get(key) is not None and r[key] <= k for r in rows) / len(rows) if rows else None


def aggregate(rows: list[dict], library_size: Optional[int] = None) -> dict:
    """``metrics.json`` from per-sample rows (see DESIGN.md for the fixed keys)."""
    hinted = [r for r in rows if r["hint"]]
    bare = [r for r in rows if not r["hint"]]
    det = [r for r in hinted if r.get("det_n_true")]
    n_true = sum(r["det_n_true"] for r in det)
    n_found = sum(r["det_n_found"] for r in det)
    n_pair = sum(r["det_n_matched"] for r in det)
    n_correct = sum(r.get("det_n_correct", r["det_n_matched"]) for r in det)
    sq = sum(r["det_n_matched"] * r["det_position_rmse_pm"] ** 2 for r in det if r["det_n_matched"])
    detect_s = sum(r["timings_s"].get("detect", 0.0) for r in det)
    n_cols = sum(r.get("n_columns", 0) for r in det)
    queries = [r["timings_s"]["retrieve"] for r in hinted if "retrieve" in r.get("timings_s", {})]
    stages = sorted({k for r in hinted for k in r.get("timings_s", {})})
    general = [r for r in hinted if r["generalisation"]]
    bare_known = [r for r in bare if not r["generalisation"]]  # without a hint only library compounds can be found
    return {
        "tiers": {t: tier_metrics([r for r in hinted if r["tier"] == t]) for t in TIERS},
        "tiers_no_hint": {t: tier_metrics([r for r in bare if r["tier"] == t]) for t in TIERS},
        "detection": {"recall": n_pair / n_true if n_true else None,
                      "precision": n_correct / n_found if n_found else None,
                      "position_rmse_pm": float(np.sqrt(sq / n_pair)) if n_pair else None,
                      "s_per_1000_columns": 1000.0 * detect_s / n_cols if n_cols else None,
                      "n_true": n_true, "n_found": n_found},
        "denoise": {"psnr_in_dB": _mean(r.get("psnr_in_dB") for r in hinted),
                    "psnr_out_dB": _mean(r.get("psnr_out_dB") for r in hinted),
                    "ssim_out": _mean(r.get("ssim_out") for r in hinted),
                    "ssim_in": _mean(r.get("ssim_in") for r in hinted)},
        "retrieval": {"top1": _rate(hinted, "formula_rank", 1), "top5": _rate(hinted, "formula_rank", 5),
                      "ms_per_query": 1000.0 * statistics.median(queries) if queries else None,
                      "library_size": library_size,
                      "top1_zone": _rate(hinted, "zone_rank", 1), "top5_zone": _rate(hinted, "zone_rank", 5),
                      "top1_no_hint": _rate(bare, "formula_rank", 1), "top5_no_hint": _rate(bare, "formula_rank", 5),
                      "top1_no_hint_in_library": _rate(bare_known, "formula_rank", 1),
                      "n_in_library": len(bare_known),
                      "structure_type_no_hint": _share(bare, "type_matched"),
                      "generalisation_top1": _rate(general, "formula_rank", 1), "generalisation_n": len(general)},
        "timing": {"median_s_per_image": _median(r["wall_s"] for r in hinted),
                   "median_s_per_image_no_hint": _median(r["wall_s"] for r in bare),
                   "median_stage_s": {s: _median(r["timings_s"].get(s) for r in hinted if "timings_s" in r)
                                      for s in stages}},
        "failures": [{"id": r["id"], "hint": r["hint"], "error": r["error"]} for r in rows if r["error"]],
    }


def _evaluate_task(args: tuple) -> dict:
    import importlib.util

    if importlib.util.find_spec("torch") is not None:  # the [energy] extra: one thread per process
        import torch

        torch.set_num_threads(1)
    return evaluate_sample(*args)


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("timings_s", "warnings", "hits")]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys + ["timings_s"], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r.get(k) for k in keys}, "timings_s": json.dumps(r.get("timings_s", {}))})


def _row_path(outdir: Path, sample_id: str, hint: bool) -> Path:
    return outdir / "rows" / f"{sample_id}.{'hint' if hint else 'nohint'}.json"


def _finished_row(outdir: Path, task: tuple, settings: dict) -> Optional[dict]:
    """The row of ``task`` saved by an earlier run with the same settings, else ``None``."""
    path = _row_path(outdir, task[1]["id"], task[2])
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return None
    return saved["row"] if saved.get("settings") == settings else None


def _absent_from_library(meta: dict) -> bool:
    """Whether the sample's compound is absent from the template library in use (the generalisation
    split; the library may have grown since the benchmark was generated)."""
    from pymatgen.core import Composition

    from .structures import library_formulas

    formula = meta.get("formula")
    if not formula:
        return bool(meta.get("generalisation"))
    return Composition(formula).reduced_formula not in library_formulas()


def _failed_row(meta: dict, hint: bool, error: str) -> dict:
    return {"id": meta["id"], "tier": meta["tier"], "hint": hint, "matched": False, "type_matched": False,
            "composition_correct": False, "generalisation": _absent_from_library(meta),
            "wall_s": None, "error": error}


def run_benchmark(bench_dir: Union[str, Path], outdir: Union[str, Path], quick: bool = False,
                  energy_model: str = "auto", workers: int = 1, energy_without_hint: bool = True,
                  domains: bool = False, progress: Progress = no_progress) -> dict:
    """Run every sample of ``bench_dir`` with and without the element hint; write and return the metrics.

    ``energy_model``: ``auto``/``mattersim``/``chgnet`` (the same model relaxes the reconstruction and
    the ground truth) or ``none`` (energy figures null); ``energy_without_hint`` False skips the
    energy stage in the no-hint pass; ``domains``: each image segmented into domains, the main one
    scored (:func:`evaluate_sample`). ``quick`` relaxes at most ``QUICK_RELAX`` steps. ``workers``
    > 1 runs samples in a process pool. Each finished run is saved under ``OUTDIR/rows/``, so an
    interrupted benchmark resumes where it stopped (rows from other settings are recomputed).
    """
    from ..io.write import write_json
    from ..templates import load_library

    bench_dir, outdir = Path(bench_dir), Path(outdir)
    manifest_path = bench_dir / "manifest.json"
    if not manifest_path.is_file():
        raise AutomatError(f"{manifest_path} not found: generate a benchmark first (automat bench generate)")
    manifest = json.loads(manifest_path.read_text())
    model = (energy_model or "none").strip().lower()
    if model != "none":
        from ..energy import resolve_model

        model = resolve_model(model)[0]
    truth_cache = outdir / "truth-energies"
    tasks = [(str(bench_dir), meta, hint, model if hint or energy_without_hint else "none", quick, str(truth_cache),
              bool(domains)) for hint in (True, False) for meta in manifest["samples"]]  # hinted first: truth cache
    settings = {"bench_dir": str(bench_dir.resolve()), "quick": bool(quick), "seed": manifest.get("seed")}
    if domains:  # rows of runs without domains are recomputed (and the other way round: older rows lack the key)
        settings["domains"] = True
    rows: list[dict] = []
    todo = []
    for task in tasks:
        saved = _finished_row(outdir, task, {**settings, "energy_model": task[3]})
        if saved is None:
            todo.append(task)
        else:
            rows.append(saved)
    progress(0.0, f"{len(tasks)} runs ({len(tasks) // 2} samples × with/without hint), {len(rows)} done before")
    t0 = time.perf_counter()

    def finished(task: tuple, row: dict) -> None:
        rows.append(row)
        write_json(_row_path(outdir, task[1]["id"], task[2]), {"settings": {**settings, "energy_model": task[3]},
                                                                "row": row})
        progress(len(rows) / len(tasks), f"{task[1]['id']} ({'hint' if task[2] else 'no hint'})")

    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_evaluate_task, task): task for task in todo}
            for future in as_completed(futures):
                task = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # a crashed worker is one failed sample
                    row = _failed_row(task[1], task[2], f"worker failed: {exc}")
                finished(task, row)
    else:
        for task in todo:
            finished(task, evaluate_sample(*task))
    order = {(t[1]["id"], t[2]): i for i, t in enumerate(tasks)}
    rows.sort(key=lambda r: order.get((r["id"], r["hint"]), 0))
    metrics = aggregate(rows, library_size=len(load_library()))
    metrics["run"] = {"bench_dir": str(bench_dir), "quick": bool(quick), "energy_model": model,
                      "energy_without_hint": bool(energy_without_hint), "domains": bool(domains),
                      "workers": int(workers), "n_samples": len(manifest["samples"]),
                      "n_resumed": len(tasks) - len(todo),
                      "seed": manifest.get("seed"), "wall_s": time.perf_counter() - t0}
    write_json(outdir / "samples.json", rows)
    _write_csv(outdir / "samples.csv", rows)
    write_json(outdir / "metrics.json", metrics)
    progress(1.0, "benchmark done")
    return json.loads((outdir / "metrics.json").read_text())
