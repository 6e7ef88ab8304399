"""Fit the posterior's parameters on a tuning split and judge them on a held-out split.

The rows of ``automat bench run`` keep, per sample, each hit's log-evidence, structure, structure
type and whether its template matches the truth (``bench.run.hit_rows``). The posterior of
:mod:`napari_automat.decision` is a function of those alone, so fitting needs no re-run:

* fit: for each hint mode, ``(β, log e_0)`` maximise the likelihood of the truth — the summed
  probability of the structures among the hits that match it, or of "none of these" when none does —
  times a weak prior on ``log e_0`` (:data:`NONE_PRIOR`);
* judge: the expected calibration error (ECE) of the reported top-1 probability against whether the
  reconstruction matched, with a reliability table, and the precision of confident statements.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..decision import PosteriorParams, posterior_masses

#: Reliability bins of the top-1 probability.
N_BINS = 10
#: Weak Gaussian prior on log e_0 (mean, sd): a split where the truth is always among the hits must
#: not drive the "none of these" mass to zero for images unlike it.
NONE_PRIOR = (-3.0, 3.0)


def _masses(hits: Sequence[dict], beta: float, none_log: float) -> tuple[list, list, float]:
    """Probabilities per answer group and per structure-type group, and of none, for one sample's hits."""
    logs = [h["log_evidence"] for h in hits]
    by_group, none_p = posterior_masses(logs, [h["group"] for h in hits], beta, none_log)
    by_type, _ = posterior_masses(logs, [h["type_group"] for h in hits], beta, none_log)
    return by_group, by_type, none_p


def truth_probability(hits: Sequence[dict], beta: float, none_log: float) -> float:
    """The probability the posterior gives the truth: its answer groups' sum, or none's when absent."""
    by_group, _, none_p = _masses(hits, beta, none_log)
    correct = {h["group"] for h in hits if h["correct"]}
    return sum(by_group[g] for g in correct) if correct else none_p


def fit_mode(rows: Sequence[dict]) -> tuple[float, float]:
    """``(β, log e_0)`` maximising the likelihood of the truth over ``rows`` (one hint mode)."""
    from scipy.optimize import minimize

    samples = [r["hits"] for r in rows if r.get("hits")]
    if not samples:
        raise ValueError("no benchmark rows with hits to fit the posterior on")

    def nll(x):  # negative log posterior of (log β, log e_0)
        beta, none_log = math.exp(x[0]), x[1]
        prior = 0.5 * ((none_log - NONE_PRIOR[0]) / NONE_PRIOR[1]) ** 2
        return prior - sum(math.log(max(truth_probability(h, beta, none_log), 1e-12)) for h in samples)

    starts = [(math.log(b), n) for b in (1.0, 5.0, 20.0) for n in (-4.0, -1.0)]
    best = min((minimize(nll, s, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-4})
                for s in starts), key=lambda r: r.fun)
    return round(math.exp(best.x[0]), 4), round(float(best.x[1]), 4)


def fit(rows: Sequence[dict], base: PosteriorParams = PosteriorParams()) -> PosteriorParams:
    """Posterior parameters fitted on ``rows`` (both hint modes; thresholds kept from ``base``)."""
    bh, nh = fit_mode([r for r in rows if r["hint"]])
    bn, nn = fit_mode([r for r in rows if not r["hint"]])
    return PosteriorParams(**{**base.to_dict(), "temperature_hint": bh, "none_log_evidence_hint": nh,
                              "temperature_no_hint": bn, "none_log_evidence_no_hint": nn})


def statement(row: dict, params: PosteriorParams) -> dict:
    """What the posterior would state for a benchmark row: top-1 probability and whether the
    reconstruction matched, and the confident statement (compound or structure type) if any."""
    beta, none_log = params.for_mode(row["hint"])
    hits = row.get("hits") or []
    if not hits:
        return {"p": 0.0, "right": False, "claim": None, "claim_right": False}
    by_group, by_type, _ = _masses(hits, beta, none_log)
    chosen = hits[min(row.get("chosen_index", 0), len(hits) - 1)]
    p, p_type = by_group[chosen["group"]], by_type[chosen["type_group"]]
    claim = "compound" if p >= params.confident else "type" if p_type >= params.confident else None
    right = bool(row.get("matched"))
    claim_right = right if claim == "compound" else bool(row.get("type_matched")) if claim == "type" else False
    return {"p": p, "right": right, "claim": claim, "claim_right": claim_right}


def reliability(rows: Sequence[dict], params: PosteriorParams) -> dict:
    """ECE of the top-1 probability, its bins, and the precision of confident statements."""
    stated = [statement(r, params) for r in rows]
    p = np.array([s["p"] for s in stated], float)
    right = np.array([s["right"] for s in stated], float)
    bins, ece = [], 0.0
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    for i in range(N_BINS):
        inside = (p >= edges[i]) & ((p < edges[i + 1]) if i < N_BINS - 1 else (p <= 1.0))
        if not inside.any():
            continue
        conf, acc = float(p[inside].mean()), float(right[inside].mean())
        ece += inside.sum() / max(len(p), 1) * abs(acc - conf)
        bins.append({"low": round(float(edges[i]), 2), "high": round(float(edges[i + 1]), 2),
                     "n": int(inside.sum()), "confidence": round(conf, 4), "accuracy": round(acc, 4)})
    claims = [s for s in stated if s["claim"]]
    return {"ece_top1": round(float(ece), 4), "n": len(stated), "bins": bins,
            "confident_n": len(claims),
            "confident_precision": round(sum(s["claim_right"] for s in claims) / len(claims), 4) if claims else None,
            "confident_compound_n": sum(s["claim"] == "compound" for s in claims),
            "confident_type_n": sum(s["claim"] == "type" for s in claims),
            "match_rate": round(float(right.mean()), 4) if len(right) else None}


def _rows(run_dir: Union[str, Path]) -> list[dict]:
    path = Path(run_dir) / "samples.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run 'automat bench run' on that split first")
    return json.loads(path.read_text())


def calibrate(tuning_dir: Union[str, Path], heldout_dir: Optional[Union[str, Path]], outdir: Union[str, Path]) -> dict:
    """Fit on the tuning run's rows, judge on both; write ``OUTDIR/posterior.json`` (the fitted
    parameters and figures) and ``OUTDIR/metrics.json`` with the ``splits`` and
    ``calibration_error`` blocks of DESIGN.md. The held-out rows are only read to be judged."""
    from ..io.write import write_json
    from .run import aggregate

    tuning = _rows(tuning_dir)
    params = fit(tuning)
    out = {"parameters": params.to_dict(), "tuning_dir": str(tuning_dir), "heldout_dir": str(heldout_dir)}
    splits = {"tuning": tuning}
    if heldout_dir is not None:
        splits["heldout"] = _rows(heldout_dir)
    metrics: dict = {"splits": {}, "reliability": {}}
    for name, rows in splits.items():
        agg = aggregate(rows)
        metrics["splits"][name] = {"tiers": agg["tiers"], "tiers_no_hint": agg["tiers_no_hint"],
                                   "retrieval": agg["retrieval"]}
        metrics["reliability"][name] = {mode: reliability([r for r in rows if r["hint"] == hinted], params)
                                        for mode, hinted in (("hint", True), ("no_hint", False))}
    judged = "heldout" if "heldout" in splits else "tuning"
    metrics["calibration_error"] = {"split": judged, **metrics["reliability"][judged]["hint"]}
    metrics["posterior"] = out
    write_json(Path(outdir) / "metrics.json", metrics)
    write_json(Path(outdir) / "posterior.json", out)
    return metrics
