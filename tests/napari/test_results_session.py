"""Results in and out of napari (issue 15): 'Save results…' writes the CLI's bundle with the points as
edited; a session file brings the image, the edited columns and the result back in a new viewer (also
through File ▸ Open); edited columns are autosaved; widget settings persist between runs.

Set ``AUTOMAT_SCREENSHOT_DIR=docs/images`` to save the screenshot used by docs/user-guide.md.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_automat._napari import autosave
from napari_automat._napari.layers import MICROGRAPH_KEY, STRUCTURE_KEY, columns_from_points_layer
from napari_automat._napari.session import SESSION_KEY
from napari_automat._napari.widgets.agent import AgentWidget
from napari_automat.io.datasets import sample_path
from napari_automat.io.write import read_columns_csv

pytestmark = pytest.mark.gui

SHOT_DIR = os.environ.get("AUTOMAT_SCREENSHOT_DIR")


@pytest.fixture
def image_file(tmp_path):
    """The bundled SrTiO3 sample copied into a folder of its own (autosaves may go beside it)."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "sto.tif"
    shutil.copy(sample_path("srtio3"), path)
    return path


@pytest.fixture
def viewer(make_napari_viewer, sync_workers):
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"
    return make_napari_viewer(show=bool(SHOT_DIR))


def screenshot(viewer, name: str) -> None:
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    path = Path(SHOT_DIR) / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)  # small files


def agent_run(viewer, image_file):
    """The agent's rules planner on the sample (no energy) → (widget, columns layer)."""
    (image,) = viewer.open(str(image_file), plugin="napari-automat")
    _, widget = viewer.window.add_plugin_dock_widget("napari-automat", "Agent (full chain)")  # as Plugins ▸ AutoMat
    widget.image.set_layer(image)
    widget.elements.setText("Sr, Ti, O")
    widget.energy_model.setCurrentText("none")
    widget.planner.setCurrentText("rules")
    widget.show_3d.setChecked(False)
    assert not widget.actions.save_results_button.isEnabled()  # nothing to save yet
    assert widget.actions.save_results(Path("never")) is None and "nothing to save" in widget.status.text()
    widget.run_button.click()
    layer = viewer.layers["sto columns (agent)"]
    assert widget.actions.save_results_button.isEnabled() and widget.actions.save_session_button.isEnabled()
    return widget, layer


def edit(layer):
    """What a user does: move point 0, add a point, delete the last detected one."""
    data = np.array(layer.data)
    data[0] += (0.8, -0.6)
    layer.data = data
    layer.add(np.array([[5.0, 5.0]]))
    layer.selected_data = {len(layer.data) - 2}
    layer.remove_selected()
    return np.array(layer.data), list(layer.features["provenance"])


def test_save_results_writes_the_bundle_and_the_edited_points(viewer, image_file, tmp_path):
    from pymatgen.core import Structure

    widget, layer = agent_run(viewer, image_file)
    paths = widget.actions.save_results(tmp_path / "out")
    assert {"cif", "columns", "overview", "result"} <= set(paths)
    s = Structure.from_file(paths["cif"])
    assert s.composition.reduced_formula == "SrTiO3" and abs(s.lattice.a - 3.9) < 0.1
    result = json.loads(paths["result"].read_text())
    assert result["structure"]["formula"] and result["input"]["path"] == str(image_file)
    assert read_columns_csv(paths["columns"]).count == len(layer.data)

    points, provenance = edit(layer)
    paths = widget.actions.save_results(tmp_path / "edited")
    saved = read_columns_csv(paths["columns"])
    origin = np.asarray(layer.translate) / np.asarray(layer.scale)
    np.testing.assert_allclose(saved.positions_px, points + origin)
    assert list(saved.provenance) == provenance and {"moved", "added"} <= set(provenance)
    assert "cif" not in paths  # a structure from the old points does not go beside the edited ones
    assert "edited after the structure was made" in widget.status.text()
    assert json.loads(paths["result"].read_text())["columns"]["source"] == "user"
    assert layer.metadata[SESSION_KEY].reconstruction is not None  # the layer's own session is untouched

    # a file where the folder should be: one line, nothing written
    (tmp_path / "a_file").write_text("x")
    assert widget.actions.save_results(tmp_path / "a_file") is None
    assert "is a file, not a folder" in widget.status.text()


def test_reconstruct_widget_saves_what_it_reconstructed_from_edited_points(viewer, image_file, tmp_path):
    from pymatgen.core import Structure

    from napari_automat._napari.layers import HITS_KEY
    from napari_automat._napari.widgets.reconstruct import ReconstructWidget

    _, layer = agent_run(viewer, image_file)
    points, _ = edit(layer)
    widget = ReconstructWidget(viewer)
    widget.show_3d.setChecked(False)
    widget.points.set_layer(layer)
    assert layer.metadata.get(HITS_KEY)
    widget.run_button.click()
    assert "reconstructed from" in widget.status.text(), widget.status.text()
    paths = widget.actions.save_results(tmp_path / "out")
    assert Structure.from_file(paths["cif"]).composition.reduced_formula == "SrTiO3"
    assert read_columns_csv(paths["columns"]).count == len(points)
    assert "structure.cif" in widget.status.text()


def test_session_survives_closing_the_viewer(make_napari_viewer, sync_workers, image_file, tmp_path):
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"
    viewer = make_napari_viewer(show=bool(SHOT_DIR))
    widget, layer = agent_run(viewer, image_file)
    points, provenance = edit(layer)
    features = layer.features.copy()
    formula = layer.metadata[SESSION_KEY].reconstruction.structure.composition.reduced_formula
    if SHOT_DIR:
        from qtpy.QtCore import Qt

        viewer.window.add_dock_widget(widget, area="right", name="Agent (full chain)")
        viewer.window._qt_window.resize(1600, 1000)
        viewer.window._qt_window.resizeDocks([viewer.window._dock_widgets["Agent (full chain)"]], [470], Qt.Horizontal)
    path = widget.actions.save_session(tmp_path / "sessions" / "sto")
    assert path.name == "sto.automat.json" and "session saved" in widget.status.text()
    if SHOT_DIR:
        for other in viewer.layers:
            other.visible = STRUCTURE_KEY not in other.metadata
        viewer.layers.selection.active = layer
        viewer.reset_view()
        screenshot(viewer, "12_save_session")
    viewer.close()

    # a new viewer, through File ▸ Open
    again = make_napari_viewer(show=False)
    opened = again.open(str(path), plugin=None)  # as File ▸ Open: the reader is chosen by pattern
    names = [lay.name for lay in opened]
    stale = f"{formula} structure (before the edits)"  # the structure saved was made from the points before the edits
    assert names[0] == "sto" and "sto columns (agent)" in names and stale in names
    restored = again.layers["sto columns (agent)"]
    np.testing.assert_allclose(restored.data, points)
    np.testing.assert_allclose(restored.translate, layer.translate)
    assert list(restored.features["provenance"]) == provenance
    np.testing.assert_allclose(restored.features["intensity"].to_numpy(float), features["intensity"].to_numpy(float),
                               equal_nan=True)
    assert isinstance(restored.metadata[MICROGRAPH_KEY].data, np.ndarray) and restored.metadata[MICROGRAPH_KEY].data.size
    session = restored.metadata[SESSION_KEY]
    assert session.columns_source == "user" and session.hits and session.reconstruction is None
    assert STRUCTURE_KEY in again.layers[stale].metadata and not again.layers[stale].visible
    # a point moved on the layer File ▸ Open made is marked 'moved' (and autosaved)
    autosave.install(again)
    data = np.array(restored.data)
    data[5] += 0.5
    restored.data = data
    assert restored.features["provenance"][5] == "moved" and autosave.pending(restored)

    # and through the widget's 'Open session…': saving goes on from the restored layers
    third = make_napari_viewer(show=False)
    w = AgentWidget(third)
    layers = w.actions.open_session(path)
    assert layers and w.actions.save_results_button.isEnabled(), w.status.text()
    assert "edited after the structure was made" in w.status.text()
    out = w.actions.save_results(tmp_path / "from-session")
    np.testing.assert_allclose(read_columns_csv(out["columns"]).positions_px,
                               points + np.asarray(layer.translate) / np.asarray(layer.scale))
    # edits of the restored layer are autosaved; reopening the session then points at the later edits
    restored3 = third.layers["sto columns (agent)"]
    later = autosave.save_now(restored3)
    assert later.parent == Path(os.environ["AUTOMAT_AUTOSAVE_DIR"]) and later.name == "sto-columns-agent.autosave.columns.csv"
    os.utime(later, (path.stat().st_mtime + 5, path.stat().st_mtime + 5))
    w.actions.open_session(path)
    assert "edited after this session was saved" in w.status.text() and str(later) in w.status.text()


def test_unedited_session_restores_the_structure_and_saves_it_again(viewer, image_file, tmp_path, monkeypatch):
    """Through the buttons and their file dialogs (answered here)."""
    from pymatgen.core import Structure
    from qtpy.QtWidgets import QFileDialog

    widget, layer = agent_run(viewer, image_file)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "plain"), ""))
    widget.actions.save_session_button.click()
    path = tmp_path / "plain.automat.json"
    assert path.is_file(), widget.status.text()
    w = AgentWidget(viewer)
    assert not w.actions.save_results_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    w.actions.open_session_button.click()
    restored = viewer.layers["sto columns (agent) [2]"]
    assert restored.metadata[SESSION_KEY].reconstruction is not None and w.actions.save_results_button.isEnabled()
    assert w.image.layer() is viewer.layers["sto [2]"]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "again"))
    w.actions.save_results_button.click()
    assert Structure.from_file(tmp_path / "again" / "structure.cif").composition.reduced_formula == "SrTiO3"
    assert (tmp_path / "again" / "overview.png").is_file()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")  # cancelled: nothing happens
    w.actions.save_results_button.click()


def test_a_bad_session_file_is_one_line(viewer, tmp_path):
    path = tmp_path / "bad.automat.json"
    path.write_text('{"kind": "napari-automat session", "version": 1, "columns": {"name": "x"}}')
    w = AgentWidget(viewer)
    assert w.actions.open_session(path) is None
    assert "damaged session file" in w.status.text() and len(viewer.layers) == 0


def test_edits_are_autosaved_after_a_pause(viewer, image_file, qtbot, monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOMAT_AUTOSAVE_DIR")
    monkeypatch.setattr(autosave, "DELAY_MS", 300)
    _, layer = agent_run(viewer, image_file)
    target = image_file.parent / "sto-columns-agent.autosave.columns.csv"
    assert autosave.autosave_path(layer) == target and not target.exists()  # nothing before an edit
    points, provenance = edit(layer)
    assert autosave.pending(layer) and not target.exists()  # debounced: not at once
    qtbot.waitUntil(target.exists, timeout=5000)
    saved = read_columns_csv(target)
    np.testing.assert_allclose(saved.positions_px, points + np.asarray(layer.translate) / np.asarray(layer.scale))
    assert list(saved.provenance) == provenance
    assert layer.metadata[autosave.AUTOSAVE_KEY] == str(target) and str(target) in viewer.status
    # the columns reader opens it
    (reopened,) = viewer.open(str(target), plugin="napari-automat")
    assert len(reopened.data) == len(points) and list(reopened.features["provenance"]) == provenance

    # labelling points by hand is an edit too
    from napari_automat._napari.widgets.detect import DetectWidget

    detect = DetectWidget(viewer)
    detect.points.set_layer(layer)
    detect.new_species.setText("Sr")
    layer.selected_data = {1, 2}
    target.unlink()
    detect.label_selected()
    assert autosave.pending(layer)
    qtbot.waitUntil(target.exists, timeout=5000)
    assert read_columns_csv(target).species[1:3] == ["Sr", "Sr"]

    # the image's folder is gone (or not writable): the user cache dir
    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(tmp_path / "cache"))
    shutil.rmtree(image_file.parent)
    layer.add(np.array([[9.0, 9.0]]))
    cached = tmp_path / "cache" / "autosave" / target.name
    qtbot.waitUntil(cached.exists, timeout=5000)
    assert read_columns_csv(cached).count == len(points) + 1


def test_settings_prefill_and_persist(make_napari_viewer, monkeypatch):
    from napari_automat.settings import load_settings, settings_path

    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-stored")
    w = AgentWidget(make_napari_viewer(show=False))
    assert w.elements.text() == "" and w.energy_model.currentText() == "auto"
    w.elements.setText("Pb, Ti, O")
    w.energy_model.setCurrentText("chgnet")
    w.checkpoint.setText("/models/mattersim-v1.0.0-5M.pth")
    w.llm_url.setText("http://127.0.0.1:8000/v1")
    w.llm_model.setText("qwen2.5-7b")
    w.remember()
    assert "sk-never" not in settings_path().read_text()
    s = load_settings()
    assert (s.elements, s.energy_model, s.llm_model) == ("Pb, Ti, O", "chgnet", "qwen2.5-7b")
    again = AgentWidget(make_napari_viewer(show=False))
    assert again.elements.text() == "Pb, Ti, O" and again.energy_model.currentText() == "chgnet"
    assert again.checkpoint.text() == "/models/mattersim-v1.0.0-5M.pth"
    assert again.llm_settings().base_url == "http://127.0.0.1:8000/v1" and again.llm_settings().model == "qwen2.5-7b"
    assert again.config().mattersim_checkpoint == "/models/mattersim-v1.0.0-5M.pth"

    from napari_automat._napari.widgets.energy import EnergyWidget
    from napari_automat._napari.widgets.retrieve import RetrieveWidget

    assert RetrieveWidget(make_napari_viewer(show=False)).elements.text() == "Pb, Ti, O"
    energy = EnergyWidget(make_napari_viewer(show=False))
    assert energy.model.currentText() == "chgnet" and energy.checkpoint.text().endswith("5M.pth")

    # an invalid value is not stored (the others are); a damaged file gives the defaults, no crash
    again.llm_url.setText("not a url")
    assert any("llm_base_url" in p for p in again.remember())
    assert load_settings().llm_base_url == "http://127.0.0.1:8000/v1"
    settings_path().write_text("{damaged")
    fresh = AgentWidget(make_napari_viewer(show=False))
    assert fresh.elements.text() == "" and fresh.energy_model.currentText() == "auto"


def test_session_keeps_the_region_and_the_frame(make_napari_viewer, sync_workers, tmp_path):
    """A rectangle region (columns placed over the crop) and the chosen frame of a stack come back."""
    from napari_automat._napari.widgets._region import SHAPES
    from napari_automat._napari.widgets.detect import DetectWidget
    from napari_automat._napari.widgets.reconstruct import ReconstructWidget
    from napari_automat.io.read import read_micrograph
    from napari_automat.io.write import write_tiff_calibrated

    sample = read_micrograph(sample_path("srtio3"))
    rng = np.random.default_rng(0)
    frames = np.stack([sample.data + rng.normal(0, 2, sample.data.shape) for _ in range(3)])
    stack = write_tiff_calibrated(tmp_path / "stack.tif", frames, sample.pixel_size_A)
    viewer = make_napari_viewer(show=False)
    (image,) = viewer.open(str(stack), plugin="napari-automat")
    assert image.data.shape[0] == 3
    viewer.add_shapes([np.array([[4.5, 6.0], [4.5, 30.0], [27.0, 30.0], [27.0, 6.0]])], shape_type="rectangle",
                      name="rectangle", units=("angstrom", "angstrom"))
    viewer.dims.set_current_step(0, 2)
    detect = DetectWidget(viewer)
    detect.image.set_layer(image)
    detect.region.mode.setCurrentText(SHAPES)
    detect.region.shapes.set_layer(viewer.layers["rectangle"])
    detect.run_button.click()
    layer = viewer.layers["stack columns"]
    assert any(layer.translate) and layer.metadata[MICROGRAPH_KEY].metadata["frame"] == 2
    widget = ReconstructWidget(viewer)
    widget.points.set_layer(layer)
    assert widget.actions.save_session_button.isEnabled()
    path = widget.actions.save_session(tmp_path / "stack")
    assert path is not None, widget.status.text()

    again = make_napari_viewer(show=False)
    layers = AgentWidget(again).actions.open_session(path)
    names = [lay.name for lay in layers]
    assert names == ["stack", "region used", "stack columns"], names
    restored = again.layers["stack columns"]
    np.testing.assert_allclose(restored.data, layer.data)
    np.testing.assert_allclose(restored.translate, layer.translate)
    assert again.dims.current_step[0] == 2  # the frame the columns were measured on is shown
    mg = restored.metadata[SESSION_KEY].micrograph
    assert mg.metadata["frame"] == 2 and mg.metadata["roi"] == layer.metadata[SESSION_KEY].micrograph.metadata["roi"]
    np.testing.assert_allclose(mg.data, layer.metadata[SESSION_KEY].micrograph.data, rtol=1e-6)


def test_session_reader_claims_only_session_files(tmp_path):
    from npe2 import PluginManifest

    import napari_automat
    from napari_automat._napari.session_io import get_session_reader, read_session_file

    manifest = PluginManifest.from_file(Path(napari_automat.__file__).parent / "napari.yaml")
    patterns = {r.command: r.filename_patterns for r in manifest.contributions.readers}
    assert patterns["napari-automat.get_session_reader"] == ["*.automat.json"]
    assert get_session_reader(str(tmp_path / "a.automat.json")) is read_session_file
    for other in ("result.json", "a.json", "columns.csv", None, 3):
        assert get_session_reader(other if not isinstance(other, str) else str(tmp_path / other)) is None
