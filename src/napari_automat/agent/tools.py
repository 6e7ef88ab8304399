"""The agent's tools: each wraps one pipeline stage, takes JSON arguments, returns a JSON summary.

The same registry serves the deterministic planner and the LLM (its ``schema`` entries are
OpenAI-style function definitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..model import Progress, no_progress
from ..pipeline import PipelineResult, run_stage


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict
    func: Callable[[PipelineResult, dict, Progress], dict]

    @property
    def schema(self) -> dict:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def _obj(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "additionalProperties": False}


def summarise(result: PipelineResult) -> dict:
    """A compact JSON view of where the chain stands (what an LLM or a transcript needs)."""
    out: dict[str, Any] = {"image": {"shape": list(result.micrograph.shape),
                                     "pixel_size_A": round(result.micrograph.mean_pixel_size_A, 5),
                                     "calibrated": result.micrograph.calibrated}}
    if result.denoise_info:
        out["denoise"] = {k: v for k, v in result.denoise_info.items() if isinstance(v, (str, int, float))}
    if result.columns is not None:
        out["columns"] = {"count": result.columns.count, "source": result.columns_source}
    if result.lattice is not None:
        lat = result.lattice
        out["lattice2d"] = {"a_A": round(lat.a_A, 4), "b_A": round(lat.b_A, 4), "gamma_deg": round(lat.gamma_deg, 2),
                            "motif_sites": len(lat.motif),
                            "fft_mismatch": None if lat.fft_mismatch != lat.fft_mismatch else round(lat.fft_mismatch, 4)}
    if result.hits:
        out["candidates"] = [{"index": i, "formula": h.formula, "zone_axis": list(h.zone_axis),
                              "score": round(h.score, 3), "template_id": h.template_id,
                              **{k: h.details[k] for k in ("spacegroup", "image_residual", "formation_energy_eV",
                                                           "stability_weight") if h.details.get(k) is not None}}
                             for i, h in enumerate(result.hits[:5])]
    if result.reconstruction is not None:
        s = result.reconstruction.to_dict()
        out["structure"] = {k: s[k] for k in ("reduced_formula", "spacegroup_symbol", "a", "b", "c")}
    if result.energy is not None:
        e = result.energy.to_dict()
        out["energy"] = {k: e[k] for k in ("model", "energy_per_atom_eV", "formation_energy_per_atom_eV",
                                           "max_force_eV_A", "lattice_change_pct")}
    if result.warnings:
        out["warnings"] = list(result.warnings)
    return out


def _configured(result: PipelineResult, args: dict, keys: dict[str, str]):
    """The result's config with the tool arguments (named per ``keys``: arg → config field) applied."""
    changes = {field: args[arg] for arg, field in keys.items() if args.get(arg) is not None}
    result.config = result.config.replace(**changes)
    return result.config


def _denoise(result, args, progress):
    config = _configured(result, args, {"method": "denoise_method", "strength": "denoise_strength"})
    run_stage(result, "denoise", config, progress)
    return summarise(result).get("denoise", {})


def _detect(result, args, progress):
    config = _configured(result, args, {"min_separation_A": "min_separation_A", "threshold_scale": "threshold_scale"})
    run_stage(result, "detect", config, progress)
    return {"count": result.columns.count}


def _lattice(result, args, progress):
    run_stage(result, "lattice", result.config, progress)
    return summarise(result)["lattice2d"]


def _retrieve(result, args, progress):
    config = _configured(result, args, {"elements": "elements", "top_k": "top_k"})
    run_stage(result, "retrieve", config, progress)
    return {"candidates": summarise(result)["candidates"]}


def _stability(result, args, progress):
    from ..model import AutomatError

    if not result.hits or result.lattice is None:
        raise AutomatError("no candidates to compare: retrieve templates first")
    config = _configured(result, args, {"max_candidates": "stability_candidates", "model": "energy_model"})
    if config.energy_model == "none":
        raise AutomatError("no energy model (energy_model is 'none')")
    run_stage(result, "stability", config, progress)
    return {"candidates": summarise(result)["candidates"]}


def _reconstruct(result, args, progress):
    config = _configured(result, args, {"candidate_index": "candidate_index"})
    run_stage(result, "reconstruct", config, progress)
    return dict(summarise(result)["structure"], warnings=result.reconstruction.warnings)


def _energy(result, args, progress):
    config = _configured(result, args, {"model": "energy_model", "relax": "relax"})
    run_stage(result, "energy", config, progress)
    return summarise(result).get("energy") or {"model": "none"}


TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("denoise", "Denoise the image. method: auto (chosen from the spectrum), fourier (Bragg filter for "
         "lattice images), nlm (non-local means), gaussian or none; strength multiplies the filtering.",
         _obj({"method": {"type": "string", "enum": ["auto", "fourier", "nlm", "gaussian", "none"]},
               "strength": {"type": "number", "minimum": 0.1, "maximum": 10}}), _denoise),
    Tool("detect_columns", "Find atom columns with sub-pixel positions in the (denoised) image.",
         _obj({"min_separation_A": {"type": "number", "description": "minimum column distance in Å"},
               "threshold_scale": {"type": "number", "description": "below 1 finds weaker columns"}}), _detect),
    Tool("fit_lattice", "Fit the 2D lattice (a, b in Å, gamma in degrees) and motif to the columns.",
         _obj({}), _lattice),
    Tool("retrieve_templates", "Rank template structures whose zone-axis projection matches the lattice and motif.",
         _obj({"elements": {"type": "array", "items": {"type": "string"},
                            "description": "element hint, e.g. [\"Sr\", \"Ti\", \"O\"]"},
               "top_k": {"type": "integer", "minimum": 1, "maximum": 50}}), _retrieve),
    Tool("check_stability", "Compare the top distinct candidates with the top one's elements by formation "
         "energy over a volume scan (a projection says nothing along the beam, so structures that "
         "project alike are told apart by stability) and reorder them by image score × stability.",
         _obj({"max_candidates": {"type": "integer", "minimum": 2, "maximum": 6},
               "model": {"type": "string", "enum": ["auto", "mattersim", "chgnet"]}}), _stability),
    Tool("reconstruct", "Build the symmetrised 3D structure from a retrieved candidate and the measured lattice.",
         _obj({"candidate_index": {"type": "integer", "minimum": 0}}), _reconstruct),
    Tool("compute_energy", "Relax the reconstructed structure and compute energy and formation energy per atom.",
         _obj({"model": {"type": "string", "enum": ["auto", "mattersim", "chgnet", "none"]},
               "relax": {"type": "boolean"}}), _energy),
    Tool("get_state", "Summarise what has been computed so far.", _obj({}),
         lambda result, args, progress: summarise(result)),
]}


def call_tool(result: PipelineResult, name: str, args: dict | None = None, progress: Progress = no_progress) -> dict:
    """Run tool ``name`` on ``result``; unknown tools and bad input come back as ``{"error": ...}``."""
    from ..model import AutomatError

    tool = TOOLS.get(name)
    if tool is None:
        return {"error": f"unknown tool {name!r}; tools are {', '.join(TOOLS)}"}
    try:
        return tool.func(result, dict(args or {}), progress)
    except AutomatError as exc:
        return {"error": str(exc)}
