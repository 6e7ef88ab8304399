"""An LLM drives the same tools through the openai SDK's tool calling.

Configured by environment: ``OPENAI_API_KEY`` (or ``OPENAI_BASE_URL`` for a local server) and
``AUTOMAT_LLM_MODEL`` (default ``gpt-4o-mini``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from ..model import Progress, no_progress
from ..pipeline import PipelineResult
from .tools import TOOLS, call_tool, summarise

DEFAULT_MODEL = "gpt-4o-mini"
MAX_TURNS = 20

SYSTEM_PROMPT = """You are AutoMat, an expert electron microscopist. You turn an atomic-resolution STEM
image into a crystal structure by calling tools in order: denoise, detect_columns, fit_lattice,
retrieve_templates, reconstruct, compute_energy. Check each result: if few columns are found, denoise
more strongly or lower the threshold and retry; if retrieval scores are weak, consider the next
candidate; if relaxation changes the lattice a lot, say the structure is doubtful. Lengths are in Å.
When done, answer with a short summary of the structure, its energy and any doubts."""


def llm_configured() -> bool:
    """True when an OpenAI-compatible endpoint is configured in the environment."""
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))


def make_client():
    """An ``openai.OpenAI`` client from the environment."""
    from openai import OpenAI

    return OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                  base_url=os.environ.get("OPENAI_BASE_URL") or None)


def drive(result: PipelineResult, say: Callable[[str, str, Any], None], client=None, model: str | None = None,
          progress: Progress = no_progress, max_turns: int = MAX_TURNS) -> str:
    """Let the LLM call tools on ``result`` until it answers; returns its final message."""
    client = client or make_client()
    model = model or os.environ.get("AUTOMAT_LLM_MODEL", DEFAULT_MODEL)
    hint = f" Element hint: {', '.join(result.config.elements)}." if result.config.elements else ""
    messages: list[dict] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Analyse this image. Current state: " + json.dumps(summarise(result)) + hint},
    ]
    schemas = [t.schema for t in TOOLS.values()]
    for turn in range(max_turns):
        progress(turn / max_turns, f"LLM turn {turn + 1}")
        reply = client.chat.completions.create(model=model, messages=messages, tools=schemas).choices[0].message
        calls = list(reply.tool_calls or [])
        messages.append({"role": "assistant", "content": reply.content or "",
                         **({"tool_calls": [_call_dict(c) for c in calls]} if calls else {})})
        if reply.content:
            say("assistant", reply.content, None)
        if not calls:
            return reply.content or ""
        for call in calls:
            try:
                args = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError as exc:
                out = {"error": f"arguments are not JSON: {exc}"}
            else:
                say("tool_call", f"{call.function.name}({call.function.arguments})",
                    {"tool": call.function.name, "arguments": args})
                out = call_tool(result, call.function.name, args)
            say("tool_result", json.dumps(out)[:500], out)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(out)})
    return "stopped: turn limit reached"


def _call_dict(call) -> dict:
    return {"id": call.id, "type": "function",
            "function": {"name": call.function.name, "arguments": call.function.arguments}}
