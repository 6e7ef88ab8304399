"""The agent: runs the whole chain with quality gates, by a deterministic planner or an LLM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..config import PipelineConfig
from ..model import Columns, Micrograph, Progress, no_progress
from ..pipeline import PipelineResult, start, sub_progress


@dataclass
class AgentResult:
    """The filled pipeline result and the transcript (``{role, content, data}`` entries)."""

    result: PipelineResult
    transcript: list[dict] = field(default_factory=list)
    planner: str = "rules"


def run_agent(source: Union[str, Path, Micrograph], config: Optional[PipelineConfig] = None,
              columns: Optional[Columns] = None, progress: Progress = no_progress,
              on_message: Callable[[dict], None] = lambda entry: None, planner: str = "auto",
              client: Any = None) -> AgentResult:
    """Run the full chain on one image.

    ``planner``: ``rules`` (deterministic), ``llm`` (openai tool calling; ``client`` may be any object
    with the openai ``chat.completions.create`` interface) or ``auto`` (llm when configured).
    Stages the LLM leaves undone are finished by the rules planner, and the transcript says so.
    """
    from ..pipeline import calibrated_from_structure, recalibrated
    from .llm import drive, llm_configured
    from .planner import plan

    config = config or PipelineConfig()
    use_llm = planner == "llm" or (planner == "auto" and (client is not None or llm_configured()))
    agent = AgentResult(start(source, config, sub_progress(progress, 0, 0.02, "read: "), columns),
                        planner="llm" if use_llm else "rules")

    def say(role: str, content: str, data: Any = None) -> None:
        entry = {"role": role, "content": content, "data": data}
        agent.transcript.append(entry)
        on_message(entry)

    result = agent.result
    if not result.micrograph.calibrated:
        agent.result = result = calibrated_from_structure(result, say, sub_progress(progress, 0.0, 0.02))
    say("planner", f"image {result.micrograph.shape}, pixel {result.micrograph.mean_pixel_size_A:.4g} Å"
                   f"{'' if result.micrograph.calibrated else ' (uncalibrated)'}; planner: {agent.planner}")
    if use_llm:
        drive(result, say, client=client, progress=sub_progress(progress, 0.02, 0.9, "agent: "))
        if result.reconstruction is None:
            say("planner", "the LLM stopped before reconstruction; finishing with the rules planner")
            result.columns = columns
            plan(result, say, sub_progress(progress, 0.9, 1.0))
    else:
        plan(result, say, sub_progress(progress, 0.02, 1.0))
    agent.result = result = recalibrated(result, say, progress)
    fallback = use_llm and any(e["role"] == "planner" and "finishing with the rules planner" in e["content"]
                               for e in agent.transcript)
    result.agent = {"planner": agent.planner, "model": None, "endpoint_host": None,
                    "steps": sum(e["role"] == "tool_call" for e in agent.transcript), "fallback": fallback,
                    "transcript_file": None}
    for text in result.warnings:
        say("warning", text)
    return agent


__all__ = ["AgentResult", "run_agent"]
