"""The rules planner's quality gate on the properties: a reconstruction far above the hull or with
imaginary phonon modes away from Γ sends it to the next candidate. No potential runs here: the
energy and the properties are stood in for (their physics is tested in tests/energy/)."""

import pytest

import napari_automat.energy as energy_pkg
import napari_automat.energy.properties as props
from napari_automat.agent import run_agent
from napari_automat.agent.planner import MAX_CANDIDATES, quality_problem
from napari_automat.config import PipelineConfig
from napari_automat.model import EnergyReport

CONFIG = PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="chgnet", properties="fast", stability_candidates=0)


@pytest.fixture
def fake_physics(monkeypatch):
    """Energy: the reconstruction as it is; properties: E_hull values popped in call order."""
    calls = {"energy": [], "properties": [], "e_hull": []}

    def compute_energy(structure, model="auto", relax=True, **kwargs):
        calls["energy"].append(structure.composition.reduced_formula)
        return EnergyReport(model, -7.0, -3.5, relax, 0.01, relaxed_structure=structure)

    def compute_properties(structure, level="fast", model="auto", **kwargs):
        e_hull = calls["e_hull"].pop(0)
        calls["properties"].append((structure.composition.reduced_formula, e_hull))
        return {"level": level, "model": model, "e_above_hull_meV": e_hull, "decomposition": {},
                "hull": None, "bulk_modulus_GPa": 170.0, "eos_residual": 0.1, "eos": None, "phonon": None,
                "elastic": None, "timings_s": {}, "warnings": []}

    monkeypatch.setattr(energy_pkg, "compute_energy", compute_energy)
    monkeypatch.setattr(props, "compute_properties", compute_properties)
    return calls


def _distinct(hits) -> list[int]:
    """The candidates the gate builds in turn: the top ones, each structure (formula, space group) once."""
    seen, out = set(), []
    for i, h in enumerate(hits[:MAX_CANDIDATES]):
        if (h.formula, h.details.get("spacegroup")) not in seen:
            seen.add((h.formula, h.details.get("spacegroup")))
            out.append(i)
    return out


def _run(image, config, calls, e_hulls):
    calls["e_hull"][:] = list(e_hulls)
    messages = []
    agent = run_agent(image, config, planner="rules", on_message=messages.append)
    built = [e["data"]["arguments"]["candidate_index"] for e in agent.transcript
             if e["role"] == "tool_call" and e["data"]["tool"] == "reconstruct"]
    gate = [m["content"] for m in messages if m["role"] == "planner" and m["content"].startswith("quality gate")]
    return agent.result, built, gate


def test_a_candidate_above_the_hull_sends_the_planner_to_the_next(srtio3_image, fake_physics):
    result, built, gate = _run(srtio3_image, CONFIG, fake_physics, [350.0, 20.0])
    # the SrTiO3 image's top hits: Pm-3m twice (two sources), then I4/mcm
    distinct = _distinct(result.hits)
    assert len(distinct) >= 2 and distinct[1] > 1
    nxt = distinct[1]
    assert built == [0, nxt] and result.chosen_index == nxt and result.config.candidate_index == nxt
    assert (result.reconstruction.template_id, result.reconstruction.zone_axis) == (result.hits[nxt].template_id,
                                                                                  result.hits[nxt].zone_axis)
    assert result.properties["e_above_hull_meV"] == 20.0 and not fake_physics["e_hull"]
    assert len(fake_physics["energy"]) == 2
    assert "candidate 0" in gate[0] and "E_hull 350 meV/atom > 200 meV/atom" in gate[0]
    assert gate[1].startswith("quality gate: candidate 1") and gate[1].endswith("is the structure of candidate 0: skipped")
    assert f"candidate {nxt}" in gate[2] and "passes" in gate[2]
    assert any("failed the quality gate (E_hull 350 meV/atom > 200 meV/atom)" in w
               and f"candidate {nxt}" in w and "built instead" in w for w in result.warnings)
    d = result.to_dict()  # the verdict refers to the candidate built
    assert (d["decision"]["formula"], d["decision"]["spacegroup"]) == (result.hits[nxt].formula,
                                                                       result.hits[nxt].details["spacegroup"])
    assert d["properties"]["e_above_hull_meV"] == 20.0


def test_no_candidate_passes_keeps_the_first_and_warns(srtio3_image, fake_physics):
    result, built, gate = _run(srtio3_image, CONFIG, fake_physics, [400.0] * MAX_CANDIDATES)
    n = min(MAX_CANDIDATES, len(result.hits))
    assert built == _distinct(result.hits) and result.chosen_index == 0 and result.config.candidate_index == 0
    assert result.reconstruction.template_id == result.hits[0].template_id
    assert result.properties["e_above_hull_meV"] == 400.0
    assert len(fake_physics["properties"]) == len(built)
    assert gate[-1].startswith(f"quality gate: no candidate of the top {n} passes")
    assert sum("no candidate of the top" in w and "passes the quality gate" in w for w in result.warnings) == 1
    assert not any("built instead" in w for w in result.warnings)
    assert result.to_dict()["decision"]["formula"] == result.hits[0].formula


def test_a_candidate_below_the_threshold_is_kept(srtio3_image, fake_physics):
    result, built, gate = _run(srtio3_image, CONFIG, fake_physics, [150.0])
    assert built == [0] and result.chosen_index == 0 and gate == []
    assert not any("quality gate" in w for w in result.warnings)


def test_the_threshold_is_a_config_field(srtio3_image, fake_physics):
    result, built, gate = _run(srtio3_image, CONFIG.replace(max_e_above_hull_meV=500.0), fake_physics, [350.0])
    assert built == [0] and gate == []
    result, built, gate = _run(srtio3_image, CONFIG.replace(max_e_above_hull_meV=None), fake_physics, [5000.0])
    assert built == [0] and gate == []
    assert PipelineConfig.from_dict(CONFIG.replace(max_e_above_hull_meV=None).to_dict()).max_e_above_hull_meV is None


def test_nothing_changes_when_properties_are_off(srtio3_image, fake_physics):
    result, built, gate = _run(srtio3_image, CONFIG.replace(properties="none"), fake_physics, [])
    assert built == [0] and result.chosen_index == 0 and gate == [] and result.properties is None
    assert fake_physics["properties"] == [] and len(fake_physics["energy"]) == 1
    assert not any("quality gate" in w for w in result.warnings)


def test_quality_problem_reads_phonons_away_from_gamma():
    config = PipelineConfig()
    at_gamma = {"e_above_hull_meV": 10.0, "phonon": {"imaginary": True, "qpoints": [
        {"q": [0.0, 0.0, 0.0], "min_frequency_THz": -3.0}]}}
    assert quality_problem(at_gamma, config) is None  # a soft optical mode at Γ alone is not the gate's
    away = {"e_above_hull_meV": 10.0, "phonon": {"imaginary": True, "qpoints": [
        {"q": [0.0, 0.0, 0.0], "min_frequency_THz": -3.0}, {"q": [0.5, 0.5, 0.0], "min_frequency_THz": -1.2},
        {"q": [0.5, 0.0, 0.0], "min_frequency_THz": -0.4}]}}
    assert quality_problem(away, config) == ("imaginary phonon modes away from Γ at 2 q-points "
                                             "(lowest -1.20 THz at q = (0.5, 0.5, 0))")
    both = dict(away, e_above_hull_meV=250.0)
    assert quality_problem(both, config).startswith("E_hull 250 meV/atom > 200 meV/atom; imaginary")
    assert quality_problem(None, config) is None
    assert quality_problem({"e_above_hull_meV": None, "phonon": None}, config) is None
