"""The agent: the rules planner's gates and the LLM loop over the same tools (scripted client)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from napari_automat.agent import run_agent
from napari_automat.agent.tools import TOOLS, call_tool
from napari_automat.config import PipelineConfig
from napari_automat.model import AutomatError, Micrograph
from napari_automat.pipeline import start

CONFIG = PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none")


class ScriptedClient:
    """Stands in for ``openai.OpenAI``: replies with a fixed list of tool calls, records the messages."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, model, messages, tools, **options):
        self.requests.append({"model": model, "messages": [dict(m) for m in messages], "tools": tools})
        calls = self.script.pop(0) if self.script else []
        if isinstance(calls, str):
            message = SimpleNamespace(content=calls, tool_calls=None)
        else:
            message = SimpleNamespace(content=None, tool_calls=[
                SimpleNamespace(id=f"call{len(self.requests)}_{i}",
                                function=SimpleNamespace(name=name, arguments=json.dumps(args)))
                for i, (name, args) in enumerate(calls)])
        return SimpleNamespace(choices=[SimpleNamespace(message=message)])


def test_rules_planner_runs_the_chain(srtio3_image):
    agent = run_agent(srtio3_image, CONFIG, planner="rules")
    result = agent.result
    assert agent.planner == "rules"
    assert result.reconstruction is not None
    assert result.reconstruction.to_dict()["reduced_formula"] == "SrTiO3"
    tools_called = [e["data"]["tool"] for e in agent.transcript if e["role"] == "tool_call"]
    assert tools_called[:5] == ["denoise", "detect_columns", "fit_lattice", "retrieve_templates", "reconstruct"]


def test_rules_planner_retries_when_too_few_columns():
    flat = np.random.default_rng(0).normal(100, 1, (128, 128))
    micrograph = Micrograph(flat, (0.1, 0.1), calibrated=True)
    messages = []
    with pytest.raises(AutomatError, match="no lattice"):
        run_agent(micrograph, CONFIG, planner="rules", on_message=messages.append)
    retries = [m for m in messages if m["role"] == "planner" and m["content"].startswith("retry")]
    assert len(retries) == 2


@pytest.mark.parametrize("retry_agrees", [True, False])
def test_rules_planner_retries_when_the_lattice_disagrees_with_the_fft(srtio3_image, monkeypatch, retry_agrees):
    """A lattice 50% off the Fourier transform is detected again with stronger settings; the retry's
    lattice is used when it agrees, else the first one is kept."""
    from napari_automat import pipeline

    stage, weight = pipeline.STAGES["lattice"]
    lattices = []

    def lattice_stage(result, config, progress):
        stage(result, config, progress)
        agrees = retry_agrees and lattices
        result.lattice.fft_mismatch = 0.01 if agrees else 0.5
        lattices.append(result.lattice)

    monkeypatch.setitem(pipeline.STAGES, "lattice", (lattice_stage, weight))
    messages = []
    result = run_agent(srtio3_image, CONFIG, planner="rules", on_message=messages.append).result
    retries = [m for m in messages if m["role"] == "planner" and m["content"].startswith("retry")]
    assert len(retries) == (1 if retry_agrees else 2)
    assert result.lattice is (lattices[1] if retry_agrees else lattices[0])
    assert result.reconstruction.to_dict()["reduced_formula"] == "SrTiO3"


def test_llm_drives_the_tools(srtio3_image):
    client = ScriptedClient([
        [("denoise", {"method": "auto"})],
        [("detect_columns", {})],
        [("fit_lattice", {}), ("retrieve_templates", {"elements": ["Sr", "Ti", "O"]})],
        [("reconstruct", {"candidate_index": 0})],
        "SrTiO3, cubic perovskite.",
    ])
    agent = run_agent(srtio3_image, CONFIG, planner="llm", client=client)
    assert agent.planner == "llm"
    assert agent.result.reconstruction.to_dict()["reduced_formula"] == "SrTiO3"
    # Every tool result went back to the model with the id of its call.
    last = client.requests[-1]["messages"]
    tool_messages = [m for m in last if m["role"] == "tool"]
    assert len(tool_messages) == 5
    assert all(m["tool_call_id"].startswith("call") for m in tool_messages)
    lattice = json.loads(tool_messages[2]["content"])
    assert lattice["a_A"] == pytest.approx(3.905, rel=0.03)
    assert {t["function"]["name"] for t in client.requests[0]["tools"]} == set(TOOLS)
    assert agent.transcript[-1]["content"] == "SrTiO3, cubic perovskite." or any(
        e["role"] == "assistant" for e in agent.transcript)


def test_llm_that_stops_early_is_completed_by_the_rules(srtio3_image):
    client = ScriptedClient([[("denoise", {"method": "auto"})], "I am done."])
    agent = run_agent(srtio3_image, CONFIG, planner="llm", client=client)
    assert agent.result.reconstruction is not None
    assert agent.planner == "llm+rules"
    assert agent.result.agent["fallback"] == {"reason": "gate: detect was not run", "kept": ["denoise"],
                                              "redone": ["detect", "lattice", "retrieve", "reconstruct"]}
    assert "the rules planner finished detect" in agent.note


def test_tool_errors_come_back_as_data(srtio3_image):
    result = start(srtio3_image, CONFIG)
    assert "error" in call_tool(result, "no_such_tool")
    assert "error" in call_tool(result, "fit_lattice")  # no columns yet


def test_cancelling_during_the_llm_loop_is_not_a_fallback(srtio3_image):
    from napari_automat.model import Cancelled

    def progress(fraction, message=""):
        if "LLM turn 2" in message:
            raise Cancelled("agent: cancelled")

    client = ScriptedClient([[("denoise", {"method": "auto"})], [("detect_columns", {})]])
    with pytest.raises(Cancelled):
        run_agent(srtio3_image, CONFIG, planner="llm", client=client, progress=progress)


def test_a_broken_client_is_finished_by_the_rules(srtio3_image):
    class Message:
        tool_calls = None

        @property
        def content(self):
            raise ValueError("broken message")

    class Broken(ScriptedClient):
        def _create(self, **request):
            return SimpleNamespace(choices=[SimpleNamespace(message=Message())])

    agent = run_agent(srtio3_image, CONFIG, planner="llm", client=Broken([]))
    assert agent.result.reconstruction is not None and agent.planner == "rules"
    assert agent.result.agent["fallback"]["reason"] == "LLM stopped: ValueError in the LLM loop: broken message"


def _stub(**config):
    """A result with the LLM's stages done (SimpleNamespace in place of the pipeline objects)."""
    from napari_automat.detect.params import DEFAULT_DETECT

    return SimpleNamespace(columns_source="detected", columns=SimpleNamespace(count=100),
                           lattice=SimpleNamespace(fft_mismatch=0.01), detect_params=DEFAULT_DETECT,
                           hits=[SimpleNamespace(formula="SrTiO3"), SimpleNamespace(formula="TiO2")],
                           chosen_index=0, config=PipelineConfig(elements=("Sr", "Ti", "O"), **config))


@pytest.mark.parametrize("llm_config, kept, problem", [
    ({}, {"denoise", "detect", "lattice", "retrieve", "stability", "reconstruct", "energy"}, None),
    ({"relax": False}, {"denoise", "detect", "lattice", "retrieve", "stability", "reconstruct"}, "relax=False"),
    ({"energy_model": "mattersim"}, {"denoise", "detect", "lattice", "retrieve"}, "the mattersim model"),
])
def test_gates_on_the_llms_stages(llm_config, kept, problem):
    from napari_automat.agent.planner import verified

    user = PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="chgnet")
    ran = ["denoise", "detect", "lattice", "retrieve", "stability", "reconstruct", "energy"]
    got, why = verified(_stub(**{"energy_model": "chgnet", **llm_config}), ran, user)
    assert got == kept and (why is None if problem is None else problem in why)


def test_gates_skip_stability_left_out_and_stop_at_a_drifting_lattice():
    from napari_automat.agent.planner import verified

    user = PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="chgnet")
    got, why = verified(_stub(energy_model="chgnet"), ["denoise", "detect", "lattice", "retrieve", "reconstruct"], user)
    assert got == {"denoise", "detect", "lattice", "retrieve"} and why == "stability was not run"
    drifting = _stub(energy_model="chgnet")
    drifting.lattice.fft_mismatch = 0.5
    got, why = verified(drifting, ["denoise", "detect", "lattice"], user)
    assert got == {"denoise", "detect"} and "differs from the Fourier transform by 50%" in why


def test_compute_properties_tool_needs_the_energy_and_keeps_the_level(srtio3_image, monkeypatch):
    from pymatgen.core import Lattice, Structure

    import napari_automat.energy.properties as props
    from napari_automat.agent.planner import _has_properties
    from napari_automat.model import EnergyReport

    seen = {}

    def fake(structure, level, model, **kwargs):  # the physics is tested in tests/energy/test_properties.py
        seen.update(level=level, model=model, formula=structure.composition.reduced_formula)
        return {"level": level, "model": model, "e_above_hull_meV": 0.0, "decomposition": {"SrTiO3": 1.0},
                "bulk_modulus_GPa": 170.0, "phonon": None, "warnings": []}

    monkeypatch.setattr(props, "compute_properties", fake)
    result = start(srtio3_image, CONFIG.replace(energy_model="chgnet"))
    assert "energy first" in call_tool(result, "compute_properties", {"level": "fast"})["error"]
    assert "invalid arguments" in call_tool(result, "compute_properties", {"level": "slow"})["error"]
    sto = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    result.energy = EnergyReport("chgnet", -7.0, -3.6, True, 0.01, relaxed_structure=sto)
    out = call_tool(result, "compute_properties", {"level": "all"})
    assert seen == {"level": "all", "model": "chgnet", "formula": "SrTiO3"}
    assert out["bulk_modulus_GPa"] == 170.0 and result.config.properties == "all"
    # the rules planner, finishing after the LLM, keeps properties computed at the user's level only
    assert _has_properties(result, result.config) and not _has_properties(result, CONFIG.replace(properties="fast"))
