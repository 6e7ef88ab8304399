"""``write_report``: the benchmark's ``metrics.json`` as a markdown page with tables and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

TIERS = ("unary", "binary", "ternary")
#: AutoMat paper (arXiv 2505.12650), reported figures quoted for comparison (not measured here).
PAPER = ("AutoMat paper (arXiv 2505.12650), as reported there, not measured here: formation-energy MAE of the "
         "reconstructed structures about 320–330 meV/atom; its potential on the ground-truth structures "
         "48–57 meV/atom against reference data.")


def _fmt(value, digits: int = 3, scale: float = 1.0, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not pct:
        return str(value)
    return f"{100 * value:.1f}%" if pct else f"{value * scale:.{digits}g}"


def _tier_table(tiers: dict) -> list[str]:
    lines = ["| tier | n | match rate | composition correct | lattice RMSD [Å] | E_f MAE vs truth [meV/atom] "
             "| E_f MAE vs experiment [meV/atom] | potential floor vs experiment [meV/atom] | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for tier in TIERS:
        t = tiers.get(tier) or {}
        lines.append(f"| {tier} | {t.get('n', 0)} | {_fmt(t.get('match_rate'), pct=True)} "
                     f"| {_fmt(t.get('composition_correct_rate'), pct=True)} | {_fmt(t.get('lattice_rmsd_A'))} "
                     f"| {_fmt(t.get('formation_energy_mae_meV'))} | {_fmt(t.get('formation_energy_mae_vs_reference_meV'))} "
                     f"| {_fmt(t.get('reference_floor_mae_meV'))} | {t.get('n_failed', 0)} |")
    return lines


def _kv_table(title: str, block: dict, pct_keys=()) -> list[str]:
    lines = [f"| {title} | value |", "|---|---|"]
    for key, value in block.items():
        if isinstance(value, (dict, list)):
            continue
        lines.append(f"| {key} | {_fmt(value, pct=key in pct_keys)} |")
    return lines


def _plot_match_rates(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(TIERS))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for k, (key, label) in enumerate((("tiers", "with element hint"), ("tiers_no_hint", "without hint"))):
        rates = [((metrics.get(key) or {}).get(t) or {}).get("match_rate") or 0.0 for t in TIERS]
        ax.bar(x + (k - 0.5) * 0.38, rates, 0.38, label=label)
    ax.set_xticks(x, TIERS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("structure match rate")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_vs_dose(rows: list[dict], path: Path, n_bins: int = 6) -> bool:
    """Match rate per tier and median column RMSE in log-spaced dose bins (with the hint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    rows = [r for r in rows if r.get("hint") and r.get("dose_e_per_A2")]
    doses = np.array([r["dose_e_per_A2"] for r in rows], float)
    if len(np.unique(doses)) < 2:
        return False
    edges = np.geomspace(doses.min(), doses.max() * (1 + 1e-9), min(n_bins, len(np.unique(doses))) + 1)
    which = np.clip(np.searchsorted(edges, doses, side="right") - 1, 0, len(edges) - 2)
    centres = np.sqrt(edges[:-1] * edges[1:])
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    for tier in ("unary", "binary", "ternary"):
        match = [np.mean([r["matched"] for r, b in zip(rows, which) if b == k and r["tier"] == tier] or [np.nan])
                 for k in range(len(centres))]
        ax.semilogx(centres, match, "o-", label=f"match rate, {tier}")
    ax.set_xlabel("dose [e/Å²]")
    ax.set_ylabel("structure match rate")
    ax.set_ylim(0, 1.05)
    ax2 = ax.twinx()
    rmse = [np.median([r["det_position_rmse_pm"] for r, b in zip(rows, which)
                       if b == k and r.get("det_position_rmse_pm") is not None] or [np.nan])
            for k in range(len(centres))]
    ax2.semilogx(centres, rmse, "s--", color="C3", label="column RMSE (median) [pm]")
    ax2.set_ylabel("column position RMSE [pm]")
    ax2.set_ylim(0, None)
    for axis in (ax, ax2):
        axis.set_xlim(edges[0], edges[-1])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.legend(loc="lower center", fontsize=7, ncol=2)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(metrics_path: Union[str, Path], out_md: Union[str, Path] = "docs/benchmarks.md",
                 images_dir: Union[str, Path] = "docs/images", extra_metrics: Optional[dict] = None) -> Path:
    """Write the benchmark page ``out_md`` from ``metrics_path`` (and ``samples.json`` beside it).

    Plots go to ``images_dir`` (linked relative to the page). ``extra_metrics``: optional
    ``{section title: {name: value}}`` tables appended to the page (e.g. real-data figures).
    """
    import os

    metrics_path, out_md, images_dir = Path(metrics_path), Path(out_md), Path(images_dir)
    metrics = json.loads(metrics_path.read_text())
    samples_path = metrics_path.with_name("samples.json")
    rows = json.loads(samples_path.read_text()) if samples_path.is_file() else []
    images_dir.mkdir(parents=True, exist_ok=True)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    run = metrics.get("run", {})
    command = (f"automat bench run --bench {run.get('bench_dir', 'BENCH_DIR')} -o {metrics_path.parent}"
               f"{' --quick' if run.get('quick') else ''} --energy-model {run.get('energy_model', 'auto')}"
               f" --workers {run.get('workers', 1)}"
               f"{' --no-hint-energy no' if run.get('energy_without_hint') is False else ''}")
    rel = lambda p: os.path.relpath(p, out_md.parent)  # noqa: E731
    lines = ["# Benchmark", "",
             f"{run.get('n_samples', '?')} simulated samples (seed {run.get('seed')}), each run with and without "
             f"the element hint; energy model: {run.get('energy_model')}"
             f"{' (with the hint only)' if run.get('energy_without_hint') is False else ''}. Produced by:", "",
             f"```\n{command}\nautomat bench report -o {metrics_path.parent}\n```", "",
             "Definitions: `napari_automat/bench/metrics.py` (StructureMatcher ltol 0.2, stol 0.3, angle 5°; "
             "lattice RMSD of a, b, c on the true conventional cell; columns paired within 0.5 Å, 1 Å border "
             "left out; PSNR after a least-squares scale and offset).", "",
             "## Structures, with the element hint", "", *_tier_table(metrics.get("tiers", {})), "",
             "## Structures, without hint", "", *_tier_table(metrics.get("tiers_no_hint", {})), ""]
    match_png = images_dir / "bench-match-rate.png"
    _plot_match_rates(metrics, match_png)
    lines += [f"![match rate per tier]({rel(match_png)})", ""]
    dose_png = images_dir / "bench-vs-dose.png"
    if _plot_vs_dose(rows, dose_png):
        lines += [f"![match rate and column error against dose]({rel(dose_png)})", ""]
    lines += ["## Compared with the paper", "", PAPER, ""]
    for title, key, pct in (("Detection", "detection", ("recall", "precision")), ("Denoising", "denoise", ()),
                            ("Retrieval", "retrieval", ("top1", "top5", "top1_zone", "top5_zone", "top1_no_hint",
                                                         "top5_no_hint", "top1_no_hint_in_library",
                                                         "structure_type_no_hint", "generalisation_top1")),
                            ("Timing [s]", "timing", ())):
        lines += [f"## {title}", "", *_kv_table(key, metrics.get(key, {}), pct), ""]
    stages = metrics.get("timing", {}).get("median_stage_s") or {}
    if stages:
        lines += ["Median time per stage [s]: " + ", ".join(f"{k} {v:.3g}" for k, v in stages.items()), ""]
    failures = metrics.get("failures") or []
    if failures:
        lines += [f"## Failures ({len(failures)})", "", "| sample | hint | reason |", "|---|---|---|"]
        lines += [f"| {f['id']} | {'yes' if f['hint'] else 'no'} | {str(f['error']).replace('|', '/')} |"
                  for f in failures]
        lines.append("")
    for title, block in (extra_metrics or {}).items():
        lines += [f"## {title}", "", *_kv_table("figure", block), ""]
    from ..io.write import write_text_atomic

    return write_text_atomic(out_md, "\n".join(lines))
