"""Fit the posterior's parameters on a tuning split and judge them on a held-out split.

The rows of ``automat bench run`` keep, per sample, each hit's log-evidence, structure, structure
type and whether its template matches the truth (``bench.run.hit_rows``). The posterior of
:mod:`napari_automat.decision` is a function of those alone, so fitting needs no re-run:

* fit: for each hint mode, ``(β, log e_0, ε)`` maximise the likelihood of whether each stated
  answer is right, given its stated probability (the top-1 probability a user reads is what must be
  calibrated), times a weak prior on ``log e_0`` (:data:`NONE_PRIOR`); the power of the priors in
  the score, κ (``ScoreParams.prior_weight``), which changes the ranking, is chosen on
  :data:`PRIOR_WEIGHTS` by the likelihood of the truth among the hits of the hinted rows (the summed
  probability of the structures that match it, or of "none of these" when none does), each hit's evidence re-weighed as ``log-likelihood + κ · log-prior`` (the rows
  keep both) and the chosen answer re-taken as the best so re-weighed;
* judge: the expected calibration error (ECE) of the reported top-1 probability against whether the
  reconstruction matched, with a reliability table, and the precision of confident statements.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..decision import PosteriorParams, posterior_masses, species_log_prior

#: Reliability bins of the top-1 probability.
N_BINS = 10
#: Outcome draws for the ECE a perfectly calibrated posterior would show by chance.
CHANCE_DRAWS = 500
#: Weak Gaussian prior on log e_0 (mean, sd): a split where the truth is always among the hits must
#: not drive the "none of these" mass to zero for images unlike it.
NONE_PRIOR = (-3.0, 3.0)
#: The values of κ (``ScoreParams.prior_weight``) tried: 1 tempers the priors with the likelihood
#: (β · log-prior), 1/β would take them as stated.
PRIOR_WEIGHTS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12)


def at_prior_weight(row: dict, kappa: float) -> dict:
    """``row`` as if scored with prior weight ``kappa``: each hit's log-evidence re-weighed and the
    chosen hit the best so re-weighed (unchanged at the row's own κ or without log-priors)."""
    used = float(row.get("prior_weight", 1.0))
    hits = row.get("hits") or []
    if abs(kappa - used) < 1e-9 or not hits or any("log_prior" not in h for h in hits):
        return row
    hits = [{**h, "log_evidence": h["log_evidence"] + (kappa - used) * h["log_prior"]} for h in hits]
    best = max(range(len(hits)), key=lambda i: hits[i]["log_evidence"])
    return {**row, "hits": hits, "chosen_index": best, "matched": bool(hits[best]["correct"]),
            "prior_weight": kappa}


def _masses(hits: Sequence[dict], params: tuple, level: str = "group", hinted: bool = False) -> tuple[list, float]:
    """Probabilities per group (``group``: answers; ``type_group``: structure types, each weighed by
    its best hit and, without a hint, by the species-count prior, as :func:`decision.decide` does)
    and of none."""
    types = level == "type_group"
    prior = None
    if types and not hinted and all("structure" in h for h in hits):
        prior = [species_log_prior(h["structure"][0]) for h in hits]
    return posterior_masses([h["log_evidence"] for h in hits], [h[level] for h in hits], *params, profile=types,
                            log_prior=prior)


def truth_probability(hits: Sequence[dict], beta: float, none_log: float, misrank: float = 0.0,
                      level: str = "group") -> float:
    """The probability the posterior gives the truth: its groups' sum, or none's when absent
    (``level``: ``group`` against ``correct``, ``type_group`` against ``type_correct``)."""
    masses, none_p = _masses(hits, (beta, none_log, misrank), level)
    right = "correct" if level == "group" else "type_correct"
    correct = {h[level] for h in hits if h[right]}
    return sum(masses[g] for g in correct) if correct else none_p


def stated(row: dict, params: tuple, level: str = "group") -> tuple[float, bool]:
    """The probability of the answer a row states and whether it is right: the chosen hit's
    structure against the reconstruction's match (``group``), or without a hint the most probable
    structure type against the truth's type (``type_group``); with a hint the type is the chosen one's."""
    hits = row["hits"]
    masses, _ = _masses(hits, params, level, row["hint"])
    chosen = hits[min(row.get("chosen_index", 0), len(hits) - 1)]
    if level == "group":
        return masses[chosen["group"]], bool(row.get("matched"))
    t = chosen["type_group"] if row["hint"] else max(range(len(masses)), key=masses.__getitem__)
    return masses[t], any(h["type_correct"] for h in hits if h["type_group"] == t)


def fit_mode(rows: Sequence[dict], level: str = "group", objective: str = "stated") -> tuple[float, float, float]:
    """``(β, log e_0, ε)`` over ``rows`` (one hint mode; ``level`` as in :func:`truth_probability`)
    maximising, with ``objective``, the likelihood of whether each stated answer is right
    (``stated``: what the user reads, the top-1 probability, is calibrated) or of the truth among
    the hits (``truth``)."""
    from scipy.optimize import minimize

    rows = [r for r in rows if r.get("hits")]
    if not rows:
        raise ValueError("no benchmark rows with hits to fit the posterior on")

    def unpack(x) -> tuple[float, float, float]:  # (log β, log e_0, logit ε), kept in a sane range
        return (math.exp(min(max(x[0], -5.0), 6.0)), min(max(x[1], -30.0), 30.0),
                1.0 / (1.0 + math.exp(-min(max(x[2], -30.0), 30.0))))

    def log_likelihood(row, params) -> float:
        if objective == "truth":
            return math.log(max(truth_probability(row["hits"], *params, level), 1e-12))
        p, right = stated(row, params, level)
        p = min(max(p, 1e-12), 1.0 - 1e-12)
        return math.log(p if right else 1.0 - p)

    def nll(x):  # negative log posterior
        params = unpack(x)
        prior = 0.5 * ((params[1] - NONE_PRIOR[0]) / NONE_PRIOR[1]) ** 2
        return prior - sum(log_likelihood(r, params) for r in rows)

    starts = [(math.log(b), n, e) for b in (1.0, 5.0, 20.0) for n in (-4.0, -1.0) for e in (-3.0, -1.0)]
    best = min((minimize(nll, s, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-4, "maxiter": 2000})
                for s in starts), key=lambda r: r.fun)
    beta, none_log, misrank = unpack(best.x)
    return round(beta, 4), round(none_log, 4), round(misrank, 4)


def fit_prior_weight(rows: Sequence[dict], weights: Sequence[float] = PRIOR_WEIGHTS) -> tuple[float, dict]:
    """``(κ, {κ: negative log-likelihood of the hinted truths at its fitted β, e_0, ε})``."""
    hinted = [r for r in rows if r["hint"] and r.get("hits")]
    table = {}
    for kappa in weights:
        moved = [at_prior_weight(r, kappa) for r in hinted]
        b, n, e = fit_mode(moved, objective="truth")
        table[kappa] = round(-sum(math.log(max(truth_probability(r["hits"], b, n, e), 1e-12)) for r in moved), 3)
    return min(table, key=table.get), table


def fit(rows: Sequence[dict], base: PosteriorParams = PosteriorParams()) -> PosteriorParams:
    """Posterior parameters fitted on ``rows`` (both hint modes; thresholds kept from ``base``), all
    rows taken at one prior weight."""
    bh, nh, eh = fit_mode([r for r in rows if r["hint"]])
    # Without a hint the truth objective: a posterior calibrated on its stated answers would still
    # state a type or compound at 0.8 that is wrong one time in five, and there a confident wrong
    # answer costs most; the truth among the hits keeps it conservative.
    bn, nn, en = fit_mode([r for r in rows if not r["hint"]], objective="truth")
    bt, nt, et = fit_mode([r for r in rows if not r["hint"]], level="type_group", objective="truth")
    return PosteriorParams(**{**base.to_dict(), "temperature_hint": bh, "none_log_evidence_hint": nh,
                              "misrank_hint": eh, "temperature_no_hint": bn, "none_log_evidence_no_hint": nn,
                              "misrank_no_hint": en, "temperature_type": bt, "none_log_evidence_type": nt,
                              "misrank_type": et})


def statement(row: dict, params: PosteriorParams) -> dict:
    """What the posterior would state for a benchmark row: top-1 probability and whether the
    reconstruction matched, and the confident statement (compound or structure type) if any."""
    hits = row.get("hits") or []
    if not hits:
        return {"p": 0.0, "right": False, "claim": None, "claim_right": False, "type_right": False}
    p, right = stated(row, params.for_mode(row["hint"]))
    type_p, type_right = stated(row, params.for_type(row["hint"]), "type_group")
    claim = "compound" if p >= params.confident else "type" if type_p >= params.confident else None
    claim_right = right if claim == "compound" else type_right if claim == "type" else False
    return {"p": p, "right": right, "claim": claim, "claim_right": claim_right, "type_right": type_right,
            "alike": has_alike(hits)}


def has_alike(hits: Sequence[dict]) -> Optional[bool]:
    """Whether another structure fits the image alike the chosen hit (the rows' ``alike``, from
    ``decision.alike_in_image``); None for rows of runs that did not record it."""
    if any("alike" not in h for h in hits):
        return None
    return any(h["alike"] for h in hits)


def reliability(rows: Sequence[dict], params: PosteriorParams) -> dict:
    """ECE of the top-1 probability, its bins, and the precision of confident statements."""
    statements = [statement(r, params) for r in rows]
    p = np.array([s["p"] for s in statements], float)
    right = np.array([s["right"] for s in statements], float)
    ece, bins = expected_calibration_error(p, right)
    # A perfectly calibrated posterior stating these probabilities still shows an ECE by chance
    # (few samples per bin): its mean and sd over outcomes drawn with those probabilities.
    rng = np.random.default_rng(0)
    chance = [expected_calibration_error(p, rng.random(len(p)) < p)[0] for _ in range(CHANCE_DRAWS)]
    claims = [s for s in statements if s["claim"]]
    return {"ece_top1": round(float(ece), 4), "n": len(statements), "bins": bins,
            "ece_if_calibrated": [round(float(np.mean(chance)), 4), round(float(np.std(chance)), 4)],
            "confident_n": len(claims),
            "confident_precision": round(sum(s["claim_right"] for s in claims) / len(claims), 4) if claims else None,
            "confident_compound_n": sum(s["claim"] == "compound" for s in claims),
            "confident_type_n": sum(s["claim"] == "type" for s in claims),
            # confident compounds with a polymorph the image fits alike: told apart by the priors
            "confident_alike_n": sum(s["claim"] == "compound" and bool(s["alike"]) for s in claims),
            "confident_alike_right": sum(s["claim"] == "compound" and bool(s["alike"]) and s["claim_right"]
                                         for s in claims),
            "match_rate": round(float(right.mean()), 4) if len(right) else None}


def expected_calibration_error(p: np.ndarray, right: np.ndarray) -> tuple[float, list[dict]]:
    """ECE of probabilities ``p`` against outcomes ``right`` over :data:`N_BINS` equal bins, and the bins."""
    right = np.asarray(right, float)
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
    return float(ece), bins


def plot_reliability(reliability_by_split: dict, path: Union[str, Path]) -> Path:
    """Reliability diagram: per bin of the stated top-1 probability, the fraction of right answers
    (one panel per hint mode, one line per split; marker area ∝ samples in the bin)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    styles = {"tuning": ("#1f77b4", "o"), "heldout": ("#d62728", "s")}
    for ax, (mode, title) in zip(axes, (("hint", "with the element hint"), ("no_hint", "without a hint"))):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
        for split, modes in reliability_by_split.items():
            r = modes[mode]
            conf = [b["confidence"] for b in r["bins"]]
            acc = [b["accuracy"] for b in r["bins"]]
            colour, marker = styles.get(split, ("k", "^"))
            ax.plot(conf, acc, color=colour, lw=1)
            ax.scatter(conf, acc, s=[min(10 + 2 * b["n"], 120) for b in r["bins"]], color=colour, marker=marker,
                       label=f"{split}: ECE {r['ece_top1']:.3f} (n = {r['n']}; calibrated, by chance: "
                             f"{r['ece_if_calibrated'][0]:.3f})", zorder=3)
        ax.set_title(title)
        ax.set_xlabel("stated probability of the answer")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    axes[0].set_ylabel("fraction right (reconstruction matches the truth)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _rows(run_dir: Union[str, Path]) -> list[dict]:
    path = Path(run_dir) / "samples.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run 'automat bench run' on that split first")
    return json.loads(path.read_text())


def calibrate(tuning_dir: Union[str, Path], heldout_dir: Optional[Union[str, Path]], outdir: Union[str, Path],
              figure: Optional[Union[str, Path]] = None) -> dict:
    """Fit on the tuning runs' rows (one folder or several), judge on both; write ``OUTDIR/posterior.json`` (the fitted
    parameters and figures) and ``OUTDIR/metrics.json`` with the ``splits`` and
    ``calibration_error`` blocks of DESIGN.md. The held-out rows are only read to be judged."""
    from ..io.write import write_json
    from .run import aggregate

    tuning_dirs = [tuning_dir] if isinstance(tuning_dir, (str, Path)) else list(tuning_dir)
    tuning = [r for d in tuning_dirs for r in _rows(d)]
    kappa, kappa_nll = fit_prior_weight(tuning)
    tuning = [at_prior_weight(r, kappa) for r in tuning]
    params = fit(tuning)
    out = {"parameters": params.to_dict(), "prior_weight": kappa, "prior_weight_nll": kappa_nll,
           "tuning_dir": [str(d) for d in tuning_dirs], "heldout_dir": str(heldout_dir)}
    splits = {"tuning": tuning}
    if heldout_dir is not None:
        splits["heldout"] = [at_prior_weight(r, kappa) for r in _rows(heldout_dir)]
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
    for name, rows in splits.items():  # the structure type without a hint, over compounds in the library
        known = [r for r in rows if not r["hint"] and not r.get("generalisation")]
        metrics["splits"][name]["structure_type_no_hint_in_library"] = {
            "n": len(known),
            "reconstruction": round(sum(bool(r.get("type_matched")) for r in known) / len(known), 4) if known else None,
            "stated_type": round(sum(statement(r, params)["type_right"] for r in known) / len(known), 4)
            if known else None}
    if figure is not None:
        metrics["reliability_figure"] = str(plot_reliability(metrics["reliability"], figure))
    write_json(Path(outdir) / "metrics.json", metrics)
    write_json(Path(outdir) / "posterior.json", out)
    return metrics
