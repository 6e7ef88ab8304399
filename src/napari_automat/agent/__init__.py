"""The agent: runs the whole chain with quality gates, by a deterministic planner or an LLM.

The LLM proposes, the gates check: when it ends (its answer, a fault of the endpoint, a spent
budget), the stages it ran are checked by the rules planner's gates (:func:`planner.verified`) and
the rules planner finishes from the first that does not stand, with the user's config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..config import PipelineConfig
from ..model import AutomatError, Cancelled, Columns, Micrograph, Progress, no_progress
from ..pipeline import STAGES, PipelineResult, start, sub_progress, wants_domains

#: The transcript's file name in the output folder.
TRANSCRIPT_FILE = "transcript.jsonl"
PLANNERS = ("rules", "llm", "auto")


@dataclass
class AgentResult:
    """The filled pipeline result and the transcript (``{role, content, data, by}`` entries)."""

    result: PipelineResult
    transcript: list[dict] = field(default_factory=list)
    #: The planner that produced the result: ``rules``, ``llm`` or ``llm+rules``.
    planner: str = "rules"
    #: The model's final words, unchecked (None: no LLM, or it did not finish).
    summary: Optional[str] = None
    #: One line on what happened to the LLM (None: rules only).
    note: Optional[str] = None
    secrets: tuple = field(default=(), repr=False)

    def save(self, outdir: Union[str, Path]) -> dict[str, Path]:
        """Write ``transcript.jsonl`` (API key and home folder redacted) and the result's files."""
        from ..io.write import to_jsonable, write_text_atomic
        from .text import redacted

        path = Path(outdir) / TRANSCRIPT_FILE
        lines = [json.dumps(redacted(to_jsonable(e), self.secrets), allow_nan=False) for e in self.transcript]
        write_text_atomic(path, "".join(line + "\n" for line in lines))
        if self.result.agent is not None:
            self.result.agent["transcript_file"] = TRANSCRIPT_FILE
        return dict(self.result.save(outdir), transcript=path)


def wants_llm(planner: str, client: Any = None) -> bool:
    """Whether ``planner`` means the LLM: ``llm``, or ``auto`` with a client given or the user's
    setting ``AUTOMAT_PLANNER=llm`` (an API key in the environment alone is no choice)."""
    if planner not in PLANNERS:
        raise AutomatError(f"unknown planner {planner!r}; planners are {', '.join(PLANNERS)}")
    return planner == "llm" or (planner == "auto" and (
        client is not None or os.environ.get("AUTOMAT_PLANNER", "").strip().lower() == "llm"))


def run_agent(source: Union[str, Path, Micrograph], config: Optional[PipelineConfig] = None,
              columns: Optional[Columns] = None, progress: Progress = no_progress,
              on_message: Callable[[dict], None] = lambda entry: None, planner: str = "auto",
              client: Any = None, llm: Any = None) -> AgentResult:
    """Run the full chain on one image.

    ``planner``: ``rules`` (deterministic), ``llm`` (openai tool calling; ``client`` may be any object
    with the openai ``chat.completions.create`` interface; ``llm``: :class:`llm.LLMSettings`, default
    from the environment) or ``auto`` (see :func:`wants_llm`). Whatever the LLM does or fails to do,
    the rules planner finishes the chain from the last stage that passes its gates.
    """
    from ..pipeline import calibrated_from_structure, rerun_corrected
    from .planner import plan
    from .text import shown

    config = config or PipelineConfig()
    use_llm = wants_llm(planner, client)
    agent = AgentResult(start(source, config, sub_progress(progress, 0, 0.02, "read: "), columns))
    actor = ["rules"]

    def relay(entry: dict) -> None:
        agent.transcript.append(entry)
        on_message(entry)

    def say(role: str, content: str, data: Any = None) -> None:
        relay({"role": role, "content": shown(content, 800), "data": data, "by": actor[0]})

    if wants_domains(agent.result):  # one agent run per domain; the main domain's is returned
        return _by_domain(agent, lambda crop, p: run_agent(crop, config, progress=p, on_message=relay,
                                                           planner=planner, client=client, llm=llm), say, progress)
    result = agent.result
    if not result.micrograph.calibrated:
        agent.result = result = calibrated_from_structure(result, say, sub_progress(progress, 0.0, 0.02))
    say("planner", f"image {result.micrograph.shape}, pixel {result.micrograph.mean_pixel_size_A:.4g} Å"
                   f"{'' if result.micrograph.calibrated else ' (uncalibrated)'}; planner: "
                   f"{'llm' if use_llm else 'rules'}")
    provenance = {"model": None, "endpoint_host": None, "fallback": None}
    if use_llm:
        provenance.update(_llm_then_rules(agent, config, say, actor, client, llm, progress))
    else:
        plan(result, say, sub_progress(progress, 0.02, 1.0))
    agent.result = result = rerun_corrected(agent.result, say, progress)
    _check_summary(agent, say)
    calls = [e["by"] for e in agent.transcript if e["role"] == "tool_call"]
    steps = {who: calls.count(who) for who in ("llm", "rules")}
    result.agent = {"planner": agent.planner, **provenance, "steps": sum(steps.values()), "steps_by": steps,
                    "transcript_file": None}
    for text in result.warnings:
        say("warning", text)
    return agent


def _by_domain(agent: AgentResult, run_one: Callable[[Micrograph, Progress], AgentResult], say,
               progress: Progress) -> AgentResult:
    """``pipeline.by_domain`` with ``run_one`` an agent run: the agent run of the main domain, with
    the whole transcript."""
    from ..pipeline import by_domain

    runs = []

    def one(crop: Micrograph, p: Progress) -> PipelineResult:
        runs.append(run_one(crop, p))
        return runs[-1].result

    main = by_domain(agent.result, one, say, progress)
    chosen = next(run for run in runs if run.result is main)
    chosen.transcript = agent.transcript
    return chosen


def _llm_then_rules(agent: AgentResult, config: PipelineConfig, say, actor: list, client, settings,
                    progress: Progress) -> dict:
    """The LLM loop, its stages checked by the gates, and the rules planner from the first that fails.
    Sets ``agent.planner``, ``agent.note`` and ``agent.summary``; returns the provenance fields."""
    from .llm import LLMRun, LLMSettings, LLMStopped, drive
    from .planner import needed, plan, verified
    from .text import redacted, shown

    settings = settings or LLMSettings.from_env()
    agent.secrets = (settings.api_key,)
    result, run = agent.result, LLMRun(settings)
    base_warnings, stopped = list(result.warnings), None
    actor[0] = "llm"
    try:
        agent.summary = drive(result, say, run, client, sub_progress(progress, 0.02, 0.9, "agent: "))
    except LLMStopped as exc:
        stopped = str(exc)
    except Cancelled:
        raise
    except Exception as exc:  # whatever breaks in the LLM's part, the rules planner finishes
        stopped = f"{type(exc).__name__} in the LLM loop: {shown(str(exc), 200)}"
    actor[0] = "rules"
    kept, problem = verified(result, run.ran, config)
    by_llm = [s for s in STAGES if s in kept and s in run.ran]
    _gate_verdicts(result, kept, say)
    provenance = {"model": settings.model, "endpoint_host": settings.endpoint_host}
    if stopped is None and problem is None:
        agent.planner, agent.note = "llm", f"the LLM ran {', '.join(by_llm)}; the gates passed"
        say("planner", agent.note)
        return provenance
    reason = redacted(f"LLM stopped: {stopped}" if stopped else f"gate: {problem}", agent.secrets)
    redone = [s for s in STAGES if s not in kept and needed(result, s, config)]
    agent.planner = "llm" if not redone else "llm+rules" if by_llm else "rules"
    agent.note = _note(reason, redone, by_llm)
    say("planner", agent.note)
    _forget(result, kept, base_warnings)
    result.config = config
    plan(result, say, sub_progress(progress, 0.9, 1.0), done=kept)
    return dict(provenance, fallback={"reason": reason, "kept": by_llm, "redone": redone})


def _note(reason: str, redone: list[str], by_llm: list[str]) -> str:
    """The line on why the LLM stopped and what the rules planner did after it."""
    if not redone:
        return f"{reason}; its stages passed the gates, nothing was redone"
    kept = f" (kept the LLM's {', '.join(by_llm)})" if by_llm else " (the whole chain)"
    return f"{reason}; the rules planner finished {', '.join(redone)}{kept}"


def _gate_verdicts(result: PipelineResult, kept: frozenset, say) -> None:
    """The rules' verdicts on the stages kept from the LLM: doubt about the candidates, lattice drift."""
    from .planner import flag_drift, say_doubt

    if "retrieve" in kept and result.hits:
        say_doubt(result, say)
    if "energy" in kept:
        flag_drift(result, say)


def _forget(result: PipelineResult, kept: frozenset, base_warnings: list[str]) -> None:
    """Drop what the LLM's stages that are redone produced (their warnings too, when detection is)."""
    if "lattice" not in kept:
        result.warnings = list(base_warnings)
    if "retrieve" not in kept:
        result.hits = []
    if "reconstruct" not in kept:
        result.reconstruction = None
    if "energy" not in kept:
        result.energy = result.properties = None  # the properties are those of the relaxed structure


def _check_summary(agent: AgentResult, say) -> None:
    """Warn when the model's summary names a compound other than the structure found."""
    from .text import contradicted_formulas

    rec = agent.result.reconstruction
    if not agent.summary or rec is None:
        return
    formula = rec.structure.composition.reduced_formula
    named = contradicted_formulas(agent.summary, formula)
    if named:
        agent.result.warn(f"the LLM's summary names {', '.join(named)}, but the structure found is {formula}: "
                          "its words are not the result")
        say("planner", agent.result.warnings[-1])


def agent_line(agent: AgentResult) -> str:
    """One line on which planner produced the result, and what happened to the LLM."""
    info = agent.result.agent or {}
    where = f" ({info.get('model')} at {info.get('endpoint_host')})" if info.get("model") else ""
    return f"planner: {agent.planner}{where}" + (f" — {agent.note}" if agent.note else "")


def model_words(agent: AgentResult, limit: int = 400) -> Optional[str]:
    """The model's final words, escaped and bounded, labelled as its words (None: none)."""
    from .text import shown

    return f"the model's words (not the result): «{shown(agent.summary, limit)}»" if agent.summary else None


__all__ = ["AgentResult", "TRANSCRIPT_FILE", "agent_line", "model_words", "run_agent", "wants_llm"]
