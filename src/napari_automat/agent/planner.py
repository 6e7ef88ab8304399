"""The deterministic planner: runs the tools in chain order with quality gates.

Gates: too few columns, no lattice, or a lattice that disagrees with the Fourier transform → stronger
denoising and a lower threshold, then retry;
an uncertain posterior → said; candidates that project alike → compared by formation energy (with an
energy model); a candidate that fails to reconstruct → the next one; large lattice drift during
relaxation → flagged; with properties, a reconstruction far above the hull
(``PipelineConfig.max_e_above_hull_meV``) or with imaginary phonon modes away from Γ → the next
candidate (the first that passes is kept; none: the first built, with a warning).

The same gates check another planner's (the LLM's) stages (:func:`verified`); :func:`plan` then
finishes from the first that does not pass.
"""

from __future__ import annotations

from typing import Callable

from ..model import AutomatError, Progress, no_progress
from ..pipeline import AFTER_STAGES, MIN_COLUMNS, STAGES, PipelineResult, run_stage, sub_progress
from .tools import call_tool

#: How many candidates to try when reconstruction fails or a reconstruction fails the quality gate.
MAX_CANDIDATES = 3
#: Fields of the result that reconstructing, relaxing and the properties of a candidate set.
_CANDIDATE_FIELDS = ("reconstruction", "chosen_index", "columns", "lattice", "energy", "properties", "config",
                     "warnings")
#: Result fields the detection attempts set.
_DETECTION_FIELDS = ("denoised", "denoise_info", "columns", "lattice", "first_pass", "warnings")


class _Stop(Exception):
    """The stage named by ``stop_after`` has run."""


def plan(result: PipelineResult, say: Callable[[str, str, dict | None], None],
         progress: Progress = no_progress, stop_after: str | None = None,
         done: frozenset = frozenset()) -> PipelineResult:
    """Drive ``result`` through the chain; ``say(role, text, data)`` records the transcript.
    ``stop_after``: the last stage to run (its gates included). ``done``: stages already run and
    checked (:func:`verified`), kept as they are: the planner finishes from there."""
    try:
        _plan(result, say, progress, stop_after, done)
    except _Stop:
        pass
    progress(1.0, "done")
    return result


def _plan(result: PipelineResult, say, progress: Progress, stop_after: str | None, done_stages: frozenset) -> None:
    config = result.config
    user_columns = result.columns_source == "user"
    after = AFTER_STAGES if config.properties != "none" and config.energy_model != "none" else {}
    weights = {name: w for name, (_, w) in {**STAGES, **after}.items()}
    total = sum(weights.values())
    done = 0.0

    def step(name: str, tool: str, args: dict | None = None, span: tuple[float, float] | None = None,
             prefix: str = "") -> dict:
        span = span or (done, min(done + weights[name] / total, 1.0))
        say("tool_call", f"{tool}({_args_text(args)})", {"tool": tool, "arguments": args or {}})
        out = call_tool(result, tool, args, sub_progress(progress, *span, f"{prefix}{name}: "))
        say("tool_result", _result_text(tool, out), out)
        return out

    def finished(name: str) -> None:
        if name == stop_after:
            raise _Stop

    if not {"denoise", "detect", "lattice"} <= done_stages:
        _detect(result, step, say, user_columns)
    for name in ("denoise", "detect", "lattice"):
        finished(name)
    done = sum(weights[n] for n in ("denoise", "detect", "lattice")) / total

    if "retrieve" not in done_stages:
        out = step("retrieve", "retrieve_templates", {"elements": list(config.elements)} if config.elements else None)
        if "error" in out:
            raise AutomatError(out["error"])
        say_doubt(result, say)
    finished("retrieve")
    done += weights["retrieve"] / total
    if stability_needed(config) and "stability" not in done_stages:
        before = result.hits[0]
        out = step("stability", "check_stability")
        if "error" in out:
            result.warn(f"stability check skipped: {out['error']}")
        elif result.hits[0] is not before:
            say("planner", f"stability: {result.hits[0].formula} ({result.hits[0].details.get('spacegroup')}) is "
                           f"preferred to {before.formula} ({before.details.get('spacegroup')})", None)
    finished("stability")
    done += weights["stability"] / total

    base_warnings = list(result.warnings)  # those of the stages before the candidate's
    if "reconstruct" not in done_stages:
        _reconstruct(result, step, say)
    finished("reconstruct")
    done += weights["reconstruct"] / total

    if config.energy_model != "none" and "energy" not in done_stages:
        out = step("energy", "compute_energy", {"model": config.energy_model, "relax": config.relax})
        if "error" in out:
            result.warn(f"energy not computed: {out['error']}")
        else:
            flag_drift(result, say)
    finished("energy")
    done += weights["energy"] / total

    if "properties" in weights and "properties" not in done_stages and not _has_properties(result, config):
        _properties(result, say, sub_progress(progress, done, 1.0, "properties: "))
    if "properties" in weights:
        _quality_gate(result, say, lambda index: _candidate(result, index, step, say, progress, (done, 1.0)),
                      base_warnings)


def _properties(result: PipelineResult, say, progress: Progress) -> None:
    """The properties stage at the config's level; a failure is a warning (``result.properties`` None)."""
    say("planner", f"properties ({result.config.properties}) of the relaxed structure", None)
    try:
        run_stage(result, "properties", progress=progress)
    except AutomatError as exc:
        result.properties = None
        result.warn(f"properties not computed: {exc}")


def quality_problem(properties: dict | None, config) -> str | None:
    """Why ``properties`` make the reconstruction implausible: energy above the hull over
    ``config.max_e_above_hull_meV``, or imaginary phonon modes away from Γ (None: neither, or not
    computed)."""
    if not properties:
        return None
    problems = []
    limit, e_hull = config.max_e_above_hull_meV, properties.get("e_above_hull_meV")
    if limit is not None and e_hull is not None and e_hull > limit:
        problems.append(f"E_hull {e_hull:.0f} meV/atom > {limit:.0f} meV/atom")
    away = [q for q in ((properties.get("phonon") or {}).get("qpoints") or []) if any(abs(v) > 1e-6 for v in q["q"])]
    if away:
        worst = min(away, key=lambda q: q["min_frequency_THz"])
        problems.append(f"imaginary phonon modes away from Γ at {len(away)} q-point{'s' * (len(away) > 1)} "
                        f"(lowest {worst['min_frequency_THz']:.2f} THz at q = "
                        f"({', '.join(f'{v:g}' for v in worst['q'])}))")
    return "; ".join(problems) or None


def _candidate(result: PipelineResult, index: int, step, say, progress: Progress,
               span: tuple[float, float]) -> str | None:
    """Reconstruct candidate ``index``, relax it and compute its properties (as the chain does for the
    first). Returns why it cannot be judged (None: its properties are there)."""
    config, (begin, end) = result.config, span
    cut = [begin + (end - begin) * f for f in (0.0, 0.1, 0.6, 1.0)]  # reconstruct, energy, properties
    prefix = f"candidate {index}: "
    result.energy = result.properties = None
    out = step("reconstruct", "reconstruct", {"candidate_index": index}, (cut[0], cut[1]), prefix)
    if "error" in out:
        return f"failed to reconstruct ({out['error']})"
    out = step("energy", "compute_energy", {"model": config.energy_model, "relax": config.relax}, (cut[1], cut[2]),
               prefix)
    if "error" in out:
        return f"has no energy ({out['error']})"
    flag_drift(result, say)
    _properties(result, say, sub_progress(progress, cut[2], cut[3], f"{prefix}properties: "))
    if result.properties is None:
        return "has no properties"
    return None


def _quality_gate(result: PipelineResult, say, candidate, base_warnings: list[str]) -> None:
    """Keep the first of the top ``MAX_CANDIDATES`` (from the one built) whose properties pass
    :func:`quality_problem`; ``candidate(index)`` builds one (reconstruct, energy, properties) and
    returns why it cannot be judged. A candidate of the same structure (formula and space group) as
    one that failed is skipped. None passes: the first built is kept, with a warning."""
    problem = quality_problem(result.properties, result.config)
    if problem is None:
        return
    first, hits = result.chosen_index, result.hits
    last = min(MAX_CANDIDATES, len(hits))

    def key(index: int) -> tuple:
        return hits[index].formula, hits[index].details.get("spacegroup")

    def name(index: int) -> str:
        return f"candidate {index} ({hits[index].formula} {hits[index].details.get('spacegroup') or ''})".replace(
            " )", ")")

    kept = {field: getattr(result, field) for field in _CANDIDATE_FIELDS}
    kept["warnings"] = list(result.warnings)
    failures, failed = [f"{name(first)}: {problem}"], {key(first): first}
    following = "; trying the next candidate" if first + 1 < last else ""
    say("planner", f"quality gate: {name(first)} fails: {problem}{following}", None)
    for index in range(first + 1, last):
        if key(index) in failed:
            say("planner", f"quality gate: {name(index)} is the structure of candidate {failed[key(index)]}: skipped",
                None)
            continue
        result.warnings = list(base_warnings)
        why = candidate(index)
        if why is None:
            why = quality_problem(result.properties, result.config)
            if why is None:
                e_hull = result.properties.get("e_above_hull_meV")
                say("planner", f"quality gate: {name(index)} passes"
                               + (f" (E_hull {e_hull:.0f} meV/atom)" if e_hull is not None else "") + ": it is kept",
                    None)
                result.warn(f"{name(first)} failed the quality gate ({problem}): {name(index)} was built instead")
                return
            why = f"fails: {why}"
            failed[key(index)] = index
        failures.append(f"{name(index)} {why}")
        say("planner", f"quality gate: {name(index)} {why}", None)
    for field, value in kept.items():
        setattr(result, field, value)
    say("planner", f"quality gate: no candidate of the top {last} passes; {name(first)} is kept", None)
    result.warn(f"no candidate of the top {last} passes the quality gate ({'; '.join(failures)}): "
                f"{name(first)} is kept")


def _has_properties(result: PipelineResult, config) -> bool:
    """Whether the properties at ``config.properties`` are there already (another planner's tool
    computed them on the energy the result keeps)."""
    p = result.properties
    return bool(p and result.energy is not None and p.get("level") == config.properties
                and p.get("model") == result.energy.model)


def _detect(result: PipelineResult, step, say, user_columns: bool) -> None:
    """Denoise, detect and fit the lattice, retrying with stronger settings when too little is found
    or the lattice disagrees with the Fourier transform."""
    config = result.config
    base_warnings, first_found = list(result.warnings), None
    detect_params = result.detect_params
    for attempt, (method, strength, threshold) in enumerate(detect_params.detection_attempts):
        result.warnings = list(base_warnings)
        if attempt:
            say("planner", f"retry {attempt}: stronger denoising ({method}, ×{strength}) and threshold ×{threshold}",
                None)
        step("denoise", "denoise", {"method": method or config.denoise_method,
                                    "strength": strength or config.denoise_strength})
        if not user_columns:
            step("detect", "detect_columns", {"threshold_scale": threshold or config.threshold_scale})
        count = 0 if result.columns is None else result.columns.count
        if count < MIN_COLUMNS:
            say("planner", f"only {count} columns (< {MIN_COLUMNS})", None)
            if user_columns:
                raise AutomatError(f"the given layer has only {count} columns; at least {MIN_COLUMNS} are needed")
            continue
        out = step("lattice", "fit_lattice")
        if "error" in out:
            if user_columns:
                raise AutomatError(out["error"])
            continue
        mismatch = result.lattice.fft_mismatch
        if user_columns or not mismatch > detect_params.fft_retry:  # NaN (no clear spectrum) passes
            first_found = None
            break
        say("planner", f"the column lattice differs from the Fourier transform by {100 * mismatch:.0f}%", None)
        if first_found is None:
            first_found = {name: getattr(result, name) for name in _DETECTION_FIELDS}
    else:
        if first_found is None:
            raise AutomatError("no lattice found after stronger denoising and lower thresholds: "
                               "is this an atomic-resolution image with a visible lattice?")
    if first_found is not None:  # no retry agreed better with the Fourier transform
        say("planner", "no retry agrees better with the Fourier transform: the first lattice is kept", None)
        for name, value in first_found.items():
            setattr(result, name, value)


def _reconstruct(result: PipelineResult, step, say) -> None:
    """Reconstruct the best candidate that can be, from the top ``MAX_CANDIDATES``."""
    for index in range(min(MAX_CANDIDATES, len(result.hits))):
        out = step("reconstruct", "reconstruct", {"candidate_index": index})
        if "error" not in out:
            return
        say("planner", f"candidate {index} failed to reconstruct; trying the next one", None)
    raise AutomatError("none of the top candidates could be reconstructed")


def verified(result: PipelineResult, ran: list[str], config) -> tuple[frozenset, str | None]:
    """The stages another planner (the LLM) ran that pass the rules' gates, in chain order, and why
    the first other one does not (None: all pass). ``ran``: the stages it completed that no earlier
    stage ran after; ``config``: the user's. The rules planner redoes that stage and all that follow."""
    kept = set()
    for stage in STAGES:
        problem = _gate(result, stage, ran, config)
        if problem is not None:
            return frozenset(kept), problem
        kept.add(stage)
    return frozenset(kept), None


def _gate(result: PipelineResult, stage: str, ran: list[str], config) -> str | None:
    """Why the LLM's ``stage`` cannot stand (None: it can, or the user's config does not need it)."""
    if not needed(result, stage, config):
        return None
    if stage not in ran:
        return f"{stage} was not run"
    if stage == "lattice" and result.columns.count < MIN_COLUMNS:
        return f"only {result.columns.count} columns (< {MIN_COLUMNS})"
    if stage == "lattice" and result.lattice.fft_mismatch > result.detect_params.fft_retry:
        return f"the column lattice differs from the Fourier transform by {100 * result.lattice.fft_mismatch:.0f}%"
    if stage == "retrieve" and set(result.config.elements) != set(config.elements):
        return (f"candidates were retrieved for elements {list(result.config.elements)}, "
                f"the user's are {list(config.elements)}")
    if stage in ("stability", "energy") and config.energy_model not in ("auto", result.config.energy_model):
        return f"{stage} used the {result.config.energy_model} model, the user's is {config.energy_model}"
    if stage == "energy" and result.config.relax != config.relax:
        return f"the energy was computed with relax={result.config.relax}, the user's setting is {config.relax}"
    if stage == "reconstruct" and result.chosen_index != 0:
        return (f"candidate {result.chosen_index} ({result.hits[result.chosen_index].formula}) was built, "
                f"not the most probable one ({result.hits[0].formula})")
    return None


def needed(result: PipelineResult, stage: str, config) -> bool:
    """Whether the chain runs ``stage`` under ``config`` (not detection of the user's columns,
    nor stability or energy without an energy model)."""
    return not (stage == "detect" and result.columns_source == "user" or stage == "energy"
                and config.energy_model == "none" or stage == "stability" and not stability_needed(config))


def stability_needed(config) -> bool:
    """Whether the chain compares candidates by stability (an energy model and two candidates)."""
    return config.energy_model != "none" and config.stability_candidates > 1


def say_doubt(result: PipelineResult, say) -> None:
    """Say so when the decision core is not sure of the candidates."""
    decision = result.decision
    if decision.status != "confident":
        say("planner", f"not sure of the candidates: {decision.line()}", None)


def flag_drift(result: PipelineResult, say) -> None:
    """Warn when relaxation moved the lattice more than ``config.max_lattice_change``."""
    limit = 100 * result.config.max_lattice_change
    if result.energy is not None and abs(result.energy.lattice_change_pct) > limit:
        drift = f"relaxation changed the lattice by {result.energy.lattice_change_pct:+.1f}%"
        result.warn(f"{drift}: the reconstructed structure may be wrong")
        say("planner", f"flag: {drift} (> {limit:.0f}%)", None)


def _args_text(args: dict | None) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (args or {}).items())


def _result_text(tool: str, out: dict) -> str:
    if "error" in out:
        return f"{tool} failed: {out['error']}"
    if tool in ("retrieve_templates", "check_stability"):
        cands = out.get("candidates", [])[:3]
        return "candidates: " + "; ".join(
            f"{c['formula']} {c['zone_axis']} ({c['score']:.2f}"
            + (f", Ef {c['formation_energy_eV']:+.3f} eV/atom" if "formation_energy_eV" in c else "") + ")"
            for c in cands)
    return f"{tool}: " + ", ".join(f"{k}={_short(v)}" for k, v in out.items() if not isinstance(v, (list, dict)))


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
