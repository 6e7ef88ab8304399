"""The agent widget chooses its planner explicitly and says which one produced the result."""

import socket

import pytest

from napari_automat._napari.layers import micrograph_layer_data
from napari_automat._napari.widgets.agent import AgentWidget
from napari_automat.config import PipelineConfig


@pytest.fixture
def image():
    from pymatgen.core import Lattice, Structure

    from napari_automat.simulate import incoherent_image

    sto = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    return incoherent_image(sto, (0, 0, 1), pixel_size_A=0.15, field_of_view_A=40, dose=5e4, seed=1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_api_key_alone_does_not_choose_the_llm(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stale")
    monkeypatch.delenv("AUTOMAT_PLANNER", raising=False)
    widget = AgentWidget(make_napari_viewer(show=False))
    assert widget.planner.currentText() == "rules" and not widget.check_button.isEnabled()
    monkeypatch.setenv("AUTOMAT_PLANNER", "llm")
    assert AgentWidget(make_napari_viewer(show=False)).planner.currentText() == "llm"


def test_an_unreachable_llm_is_finished_by_the_rules(make_napari_viewer, sync_workers, monkeypatch, image):
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    monkeypatch.setenv("AUTOMAT_LLM_TIMEOUT", "2")
    viewer = make_napari_viewer(show=False)
    widget = AgentWidget(viewer)
    data, kwargs, _ = micrograph_layer_data(image, name="sto")
    viewer.add_image(data, **kwargs)
    widget.image.setCurrentIndex(widget.image.findText("sto"))
    widget.elements.setText("Sr Ti O")
    widget.energy_model.setCurrentText("none")
    widget.show_3d.setChecked(False)
    widget.planner.setCurrentText("llm")
    widget.run_button.click()
    status = widget.status.text()
    assert "planner: rules" in status and "LLM stopped: cannot reach 127.0.0.1" in status, status
    assert any("SrTiO3 structure (agent)" in layer.name for layer in viewer.layers)


def test_corrections_after_the_chain_are_the_users_choice(make_napari_viewer):
    widget = AgentWidget(make_napari_viewer(show=False))
    config = widget.config()
    assert not config.correct_scan and not config.recalibrate
    widget.correct_scan.setChecked(True)
    widget.recalibrate.setChecked(True)
    config = widget.config()
    assert config.correct_scan and config.recalibrate


def test_the_agent_asks_when_the_image_does_not_decide(make_napari_viewer, sync_workers, image):
    # A flat posterior (β = 0.5) makes the sample's answer uncertain: the widget offers the distinct
    # answers, and building the second one reconstructs it and states the verdict on it.
    from napari_automat.agent import run_agent

    viewer = make_napari_viewer(show=False)
    widget = AgentWidget(viewer)
    agent = run_agent(image, PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none",
                                            posterior={"temperature_hint": 0.5}), planner="rules")
    assert agent.result.decision.status != "confident"
    widget.show_result(agent, "sto", image_layer=viewer.add_image(image.data))
    assert not widget.question.isHidden() and widget.question.options.count() >= 2
    second = widget.question.options.itemData(1)
    before = len(viewer.layers)
    widget.question.options.setCurrentIndex(1)
    widget.question.build.click()
    assert agent.result.chosen_index == second
    assert agent.result.decision.formula == agent.result.hits[second].formula
    assert len(viewer.layers) > before and "structure (agent)" in viewer.layers[-1].name
    # a confident run asks nothing
    sure = run_agent(image, PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none"), planner="rules")
    widget.show_result(sure, "sto2")
    assert sure.result.decision.status == "confident" and widget.question.isHidden()
