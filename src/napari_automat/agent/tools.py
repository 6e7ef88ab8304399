"""The agent's tools: each wraps one pipeline stage, takes JSON arguments, returns a JSON summary.

The same registry serves the deterministic planner and the LLM. Each tool's arguments are a typed
model (pydantic, strict: no strings for numbers, floats for integers or strings for booleans); the
JSON schema sent to the model is generated from it, and :func:`call_tool` validates every call
against it before any stage runs. The config changes only when the arguments validated and the
stage succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from ..config import DENOISE_METHODS
from ..model import AutomatError, Progress, no_progress
from ..pipeline import PipelineResult, run_stage


class Args(BaseModel):
    """Arguments of a tool: unknown keys, coerced types and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DenoiseArgs(Args):
    method: Literal["auto", "fourier", "nlm", "gaussian", "moe", "none"] = Field(
        description="auto (chosen from the spectrum), fourier (Bragg filter), nlm (non-local means), gaussian, "
                    "moe (learned mixture-of-experts denoiser, keeps defects), none")
    strength: Optional[float] = Field(None, ge=0.1, le=10, description="multiplies the filtering")


class DetectArgs(Args):
    min_separation_A: Optional[float] = Field(None, ge=0.5, le=10, description="minimum column distance in Å")
    threshold_scale: Optional[float] = Field(None, ge=0.1, le=5, description="below 1 finds weaker columns")


class NoArgs(Args):
    pass


class RetrieveArgs(Args):
    elements: Optional[list[str]] = Field(None, min_length=1, max_length=8,
                                          description='element hint, e.g. ["Sr", "Ti", "O"]')
    top_k: Optional[int] = Field(None, ge=1, le=50)

    @field_validator("elements")
    @classmethod
    def _known(cls, value):
        from pymatgen.core import Element

        unknown = [e for e in value or () if not Element.is_valid_symbol(e)]
        if unknown:
            raise ValueError(f"not element symbols: {', '.join(map(repr, unknown))}")
        return value


class StabilityArgs(Args):
    max_candidates: Optional[int] = Field(None, ge=2, le=6)
    model: Optional[Literal["auto", "mattersim", "chgnet"]] = None


class ReconstructArgs(Args):
    candidate_index: int = Field(ge=0, le=49, description="index into the retrieved candidates, 0 = best")


class EnergyArgs(Args):
    model: Optional[Literal["auto", "mattersim", "chgnet"]] = None
    relax: Optional[StrictBool] = None


class PropertiesArgs(Args):
    level: Literal["fast", "all"] = Field("fast", description="fast: energy above the convex hull and bulk "
                                          "modulus; all: also phonons and the elastic tensor")


@dataclass
class Tool:
    name: str
    description: str
    args: type[Args]
    func: Callable[[PipelineResult, Args, Progress], dict]
    #: The pipeline stage the tool runs (None: it only reads the state).
    stage: Optional[str] = None

    @property
    def schema(self) -> dict:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": _plain(self.args.model_json_schema())}}


def _plain(schema: dict) -> dict:
    """A generated JSON schema without titles, and optional fields as their plain type (omitted = unchanged)."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if options:
            prop.update(options[0])
            prop.pop("default", None)
        properties[name] = prop
    out = {"type": "object", "properties": properties, "additionalProperties": False}
    if schema.get("required"):
        out["required"] = list(schema["required"])
    return out


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
        decision = result.decision
        for row, p in zip(out["candidates"], decision.hit_probability):
            row["probability"] = round(float(p), 3)
        out["decision"] = {"status": decision.status, "line": decision.line()}
    if result.reconstruction is not None:
        s = result.reconstruction.to_dict()
        out["structure"] = {k: s[k] for k in ("reduced_formula", "spacegroup_symbol", "a", "b", "c")}
        out["structure"]["candidate_index"] = result.chosen_index
    if result.energy is not None:
        e = result.energy.to_dict()
        out["energy"] = {k: e[k] for k in ("model", "energy_per_atom_eV", "formation_energy_per_atom_eV",
                                           "max_force_eV_A", "lattice_change_pct", "relaxed", "steps")}
        out["energy"]["converged"] = bool(e["relaxed"] and e["max_force_eV_A"] <= result.config.fmax_eV_A)
    if result.properties is not None:
        p, phonon = result.properties, result.properties.get("phonon") or {}
        out["properties"] = {**{k: p.get(k) for k in ("level", "e_above_hull_meV", "decomposition", "bulk_modulus_GPa")},
                             "phonon": {k: phonon.get(k) for k in ("min_frequency_THz", "imaginary")} if phonon else None}
    if result.warnings:
        out["warnings"] = list(result.warnings)
    return out


def _stage(result: PipelineResult, stage: str, progress: Progress, **changes) -> dict:
    """Run ``stage`` with the config changed by ``changes`` (None: unchanged); the changed config is
    kept only when the stage succeeds. Returns the warnings the stage added, as a tool-result part."""
    config = result.config.replace(**{k: v for k, v in changes.items() if v is not None})
    before = set(result.warnings)
    run_stage(result, stage, config, progress)
    result.config = config
    added = [w for w in result.warnings if w not in before]
    return {"warnings": added} if added else {}


def _denoise(result, a: DenoiseArgs, progress):
    new = _stage(result, "denoise", progress, denoise_method=a.method, denoise_strength=a.strength)
    return dict(summarise(result).get("denoise", {}), **new)


def _detect(result, a: DetectArgs, progress):
    if result.columns_source == "user":
        raise AutomatError("the user gave the columns: they are not detected again")
    new = _stage(result, "detect", progress, min_separation_A=a.min_separation_A, threshold_scale=a.threshold_scale)
    sigma = result.columns.mean_sigma_A
    return dict(count=result.columns.count, mean_sigma_A=round(sigma, 4) if sigma == sigma else None, **new)


def _lattice(result, a: NoArgs, progress):
    new = _stage(result, "lattice", progress)
    return dict(summarise(result)["lattice2d"], columns=result.columns.count, **new)


def _retrieve(result, a: RetrieveArgs, progress):
    new = _stage(result, "retrieve", progress, elements=a.elements, top_k=a.top_k)
    state = summarise(result)
    return dict(candidates=state["candidates"], decision=state["decision"], **new)


def _stability(result, a: StabilityArgs, progress):
    if not result.hits or result.lattice is None:
        raise AutomatError("no candidates to compare: retrieve templates first")
    if result.config.energy_model == "none":
        raise AutomatError("the user turned energies off (energy_model 'none')")
    new = _stage(result, "stability", progress, stability_candidates=a.max_candidates, energy_model=a.model)
    return dict(candidates=summarise(result)["candidates"], **new)


def _reconstruct(result, a: ReconstructArgs, progress):
    if a.candidate_index >= len(result.hits):
        raise AutomatError(f"candidate_index {a.candidate_index} is out of range: there are {len(result.hits)} "
                           "candidates (retrieve templates first)")
    new = _stage(result, "reconstruct", progress, candidate_index=a.candidate_index)
    return dict(summarise(result)["structure"], **new)


def _energy(result, a: EnergyArgs, progress):
    if result.config.energy_model == "none":
        raise AutomatError("the user turned energies off (energy_model 'none')")
    new = _stage(result, "energy", progress, energy_model=a.model, relax=a.relax)
    return dict(summarise(result)["energy"], **new)


def _properties(result, a: PropertiesArgs, progress):
    if result.energy is None:
        raise AutomatError("compute the energy first: the properties are those of the relaxed structure")
    new = _stage(result, "properties", progress, properties=a.level)
    return dict(summarise(result)["properties"], **new)


TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("denoise", "Denoise the image; strength multiplies the filtering.", DenoiseArgs, _denoise, "denoise"),
    Tool("detect_columns", "Find atom columns with sub-pixel positions in the (denoised) image.", DetectArgs,
         _detect, "detect"),
    Tool("fit_lattice", "Fit the 2D lattice (a, b in Å, gamma in degrees) and motif to the columns; "
         "fft_mismatch is its relative disagreement with the Fourier transform.", NoArgs, _lattice, "lattice"),
    Tool("retrieve_templates", "Rank template structures whose zone-axis projection matches the lattice and "
         "motif, with the decision core's probabilities.", RetrieveArgs, _retrieve, "retrieve"),
    Tool("check_stability", "Compare the top distinct candidates with the top one's elements by formation "
         "energy over a volume scan (a projection says nothing along the beam, so structures that "
         "project alike are told apart by stability) and reorder them by image score × stability.",
         StabilityArgs, _stability, "stability"),
    Tool("reconstruct", "Build the symmetrised 3D structure from a retrieved candidate and the measured lattice.",
         ReconstructArgs, _reconstruct, "reconstruct"),
    Tool("compute_energy", "Relax the reconstructed structure and compute energy and formation energy per atom.",
         EnergyArgs, _energy, "energy"),
    Tool("compute_properties", "Properties of the relaxed structure from the same potential: energy above the "
         "convex hull of the library's competing phases and bulk modulus (fast); phonons and the elastic "
         "tensor (all).", PropertiesArgs, _properties, "properties"),
    Tool("get_state", "Summarise what has been computed so far.", NoArgs,
         lambda result, args, progress: summarise(result)),
]}


def call_tool(result: PipelineResult, name: str, args: Any = None, progress: Progress = no_progress) -> dict:
    """Run tool ``name`` on ``result`` with JSON ``args`` (None: no arguments). Unknown tools,
    arguments that do not validate and stage failures come back as ``{"error": ...}``; nothing
    runs and the config is unchanged unless the arguments validated."""
    tool = TOOLS.get(name)
    if tool is None:
        return {"error": f"unknown tool {name!r}; tools are {', '.join(TOOLS)}"}
    if args is not None and not isinstance(args, dict):
        return {"error": f"the arguments of {name} must be a JSON object, not {type(args).__name__}"}
    try:
        parsed = tool.args.model_validate(args or {})
    except ValidationError as exc:
        return {"error": f"invalid arguments for {name}: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())}
    try:
        return tool.func(result, parsed, progress)
    except AutomatError as exc:
        return {"error": str(exc)}
