"""The stage widgets in a real viewer (under Xvfb), synchronous workers.

Set ``AUTOMAT_SCREENSHOT_DIR=docs/images`` to save the screenshots used by docs/user-guide.md.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Points

from napari_automat._napari.layers import (COLUMNS_KEY, HITS_KEY, LATTICE_KEY, MICROGRAPH_KEY, STRUCTURE_KEY,
                                           columns_from_points_layer)
from napari_automat._napari.widgets.retrieve import HEADERS

pytestmark = pytest.mark.gui

SHOT_DIR = os.environ.get("AUTOMAT_SCREENSHOT_DIR")
PLUGIN = "napari-automat"


def screenshot(viewer, name: str) -> None:
    if SHOT_DIR:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        from PIL import Image

        QApplication.processEvents()
        path = Path(SHOT_DIR) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)  # small files


def dock(viewer, name: str, width: int = 470):
    """Show one AutoMat widget (alone and wide, so screenshots stay readable) and return it."""
    from qtpy.QtCore import Qt

    viewer.window.remove_dock_widget("all")
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    viewer.window._qt_window.resizeDocks([dock_widget], [width], Qt.Horizontal)
    return widget


@pytest.fixture
def viewer(make_napari_viewer, sync_workers):
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"  # no toasts over screenshots
    v = make_napari_viewer(show=True)
    v.window._qt_window.resize(1600, 1000)
    return v


def lattice_image(n_cells=10, a_A=3.905, pixel_A=0.2, noise=0.02, seed=0):
    """SrTiO3 [001]-like HAADF image: bright Sr columns on the corners, dimmer Ti-O in the centres."""
    size = int(n_cells * a_A / pixel_A)
    yy, xx = np.mgrid[0:size, 0:size] * pixel_A
    img = np.zeros((size, size))
    for (fy, fx), amp in (((0.0, 0.0), 1.0), ((0.5, 0.5), 0.55)):
        for i in range(-1, n_cells + 2):
            for j in range(-1, n_cells + 2):
                y, x = (i + fy) * a_A, (j + fx) * a_A
                img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 0.45 ** 2))
    return img + np.random.default_rng(seed).normal(0, noise, img.shape)


def test_calibration_widget_sets_pixel_size(viewer):
    w = dock(viewer, "1 Read and calibrate")
    layer = viewer.add_image(lattice_image(n_cells=4), name="uncalibrated")
    assert w.image.layer() is layer
    assert "no: set the pixel size" in w.info.text()
    w.pixel_size.setValue(0.2)
    w.run_button.click()
    np.testing.assert_allclose(layer.scale, [0.2, 0.2])
    mg = layer.metadata[MICROGRAPH_KEY]
    assert mg.calibrated and mg.pixel_size_A == (0.2, 0.2)
    assert "yes" in w.info.text()


def test_detect_threaded_run_does_not_block(viewer, qtbot, monkeypatch):
    from napari_automat._napari import worker

    monkeypatch.setattr(worker, "SYNCHRONOUS", False)
    viewer.add_image(lattice_image(), name="sto", scale=(0.2, 0.2))
    w = dock(viewer, "3 Detect atom columns")
    w.run_button.click()
    assert w.busy and not w.run_button.isEnabled()  # returned at once, work goes on in a thread
    qtbot.waitUntil(lambda: not w.busy, timeout=30000)
    layer = viewer.layers["sto columns"]
    # 10 x 10 cells with both sublattices; border columns may be dropped
    assert 150 <= len(layer.data) <= 242
    cols = columns_from_points_layer(layer)
    assert set(np.unique(cols.sublattice)) >= {0, 1}
    bright = cols.intensity[cols.sublattice == 0].mean()
    dim = cols.intensity[cols.sublattice == 1].mean()
    assert bright > 1.3 * dim  # sublattice 0 is the brighter (Sr) one


def test_stack_frame_is_analysed(viewer):
    frames = np.stack([lattice_image(n_cells=6, seed=s) for s in range(2)])
    viewer.add_image(frames, name="stack", scale=(1, 0.2, 0.2))
    w = dock(viewer, "3 Detect atom columns")
    viewer.dims.set_current_step(0, 1)
    w.run_button.click()
    layer = viewer.layers["stack columns"]
    assert layer.ndim == 2 and len(layer.data) > 40
    assert layer.metadata[MICROGRAPH_KEY].metadata.get("frame") == 1


@pytest.mark.slow
def test_full_workflow_on_real_image_with_edits(viewer, real_file):
    path = real_file("real/atomap_test_ADF_cropped.hdf5")

    # 1 read
    w = dock(viewer, "1 Read and calibrate")
    (image,) = w.open_path(str(path))
    np.testing.assert_allclose(image.scale, [0.0933, 0.0933], rtol=0.01)
    assert "yes" in w.info.text()
    screenshot(viewer, "01_read")

    # 2 denoise -> a new image layer with the same calibration
    w = dock(viewer, "2 Denoise")
    w.run_button.click()
    denoised = viewer.layers[f"{image.name} denoised"]
    assert denoised.data.shape == image.data.shape
    np.testing.assert_allclose(denoised.scale, image.scale)
    screenshot(viewer, "02_denoise")

    # 3 detect on the denoised image -> a NEW points layer, sublattices labelled
    w = dock(viewer, "3 Detect atom columns")
    assert w.image.layer() is denoised
    w.run_button.click()
    points = viewer.layers[f"{denoised.name} columns"]
    n = len(points.data)
    assert n > 150, w.status.text()
    assert f"{n} columns" in w.status.text()
    np.testing.assert_allclose(points.scale, image.scale)
    screenshot(viewer, "03_detect")

    # edit: delete 3 columns, add one back by hand with chosen defaults, refine it
    middle = int(np.argmin(np.linalg.norm(points.data - points.data.mean(axis=0), axis=1)))
    gone = np.argsort(np.linalg.norm(points.data - points.data[middle], axis=1))[:3]  # it and 2 neighbours
    removed = points.data[gone].copy()
    points.selected_data = set(gone.tolist())
    points.remove_selected()
    w.new_sublattice.setValue(0)
    w.new_species.setText("Sr")
    w.apply_defaults()
    points.add(removed[0] + [0.6, -0.5])  # a click near the deleted column
    edited = columns_from_points_layer(points)
    assert edited.count == n - 2
    assert edited.provenance[-1] == "added" and edited.species[-1] == "Sr" and edited.sublattice[-1] == 0
    points.selected_data = {n - 3}
    w.refine_button.click()
    refined = columns_from_points_layer(points)
    assert np.linalg.norm(refined.positions_px[-1] - removed[0]) < 0.5  # snapped onto the column
    assert np.isfinite(refined.intensity[-1]) and refined.provenance[-1] == "added"
    viewer.camera.center = tuple(refined.positions_A[-1])  # close-up of the edit
    viewer.camera.zoom *= 2.5
    screenshot(viewer, "04_edit")
    viewer.reset_view()

    # re-detection never overwrites the edited layer
    w.run_button.click()
    assert len(points.data) == n - 2
    viewer.layers[f"{denoised.name} columns [2]"].visible = False

    # 4 lattice of the EDITED layer
    w = dock(viewer, "4 2D lattice")
    w.points.set_layer(points)
    w.run_button.click()
    vectors = viewer.layers[f"{points.name} lattice"]
    used = vectors.metadata[COLUMNS_KEY]
    assert used.count == n - 2 and used.provenance.count("added") == 1
    lattice = vectors.metadata[LATTICE_KEY]
    # SrTiO3 seen along [110]: 3.905/sqrt(2) and 3.905 Å, 90°
    assert lattice.a_A == pytest.approx(3.905 / np.sqrt(2), rel=0.03), (w.status.text(), w.result.text())
    assert lattice.b_A == pytest.approx(3.905, rel=0.03), (w.status.text(), w.result.text())
    assert lattice.gamma_deg == pytest.approx(90, abs=2)
    screenshot(viewer, "05_lattice")

    # 5 retrieve -> sortable table of candidates
    w = dock(viewer, "5 Retrieve templates")
    w.points.set_layer(points)
    w.elements.setText("Sr, Ti, O")
    w.run_button.click()
    hits = points.metadata[HITS_KEY]
    assert w.table.rowCount() == len(hits) > 0, w.status.text()
    assert all({el.symbol for el in h.structure.composition} <= {"Sr", "Ti", "O"} for h in hits)
    w.table.sortItems(HEADERS.index("score"))  # ascending: the best row goes last
    assert w.table.item(w.table.rowCount() - 1, 0).text() == "1"
    w.table.sortItems(0)
    w.select_hit(0)
    screenshot(viewer, "06_retrieve")

    # 6 reconstruct from the edited layer -> 3D layers
    w = dock(viewer, "6 Reconstruct 3D structure")
    w.points.set_layer(points)
    w.run_button.click()
    (structure_layer,) = [layer for layer in viewer.layers
                          if STRUCTURE_KEY in layer.metadata and isinstance(layer, Points)]
    assert structure_layer.metadata[COLUMNS_KEY].count == n - 2
    assert "added" in structure_layer.metadata[COLUMNS_KEY].provenance
    structure = structure_layer.metadata[STRUCTURE_KEY]
    assert structure.composition.reduced_formula == "SrTiO3"
    # perovskite volume per formula unit: 3.905^3 Å^3 (whatever cell setting the template has)
    n_formula = structure.composition.get_reduced_composition_and_factor()[1]
    assert structure.volume / n_formula == pytest.approx(3.905 ** 3, rel=0.06), structure
    assert viewer.dims.ndisplay == 3
    assert f"{structure_layer.name} cell" in viewer.layers
    screenshot(viewer, "07_reconstruct")

    # 7 energy (CHGNet, no relaxation: fast)
    w = dock(viewer, "7 Energy")
    assert w.structure.layer() is structure_layer
    w.model.setCurrentText("chgnet")
    w.relax.setChecked(False)
    w.run_button.click()
    report = structure_layer.metadata["automat_energy"]
    assert report.model == "chgnet" and not report.relaxed
    assert -10 < report.energy_per_atom_eV < -5  # SrTiO3 ~ -8 eV/atom in MP-compatible units
    assert "eV/atom" in w.result.text()
    screenshot(viewer, "08_energy")


def test_flagged_column_review_and_shortcuts(viewer):
    from napari.utils.key_bindings import coerce_keybinding

    from napari_automat._napari.widgets.detect import SHORTCUTS

    img = lattice_image(n_cells=12, noise=0.01)
    pixel, a = 0.2, 3.905
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]] * pixel
    heavy = np.array([6 * a, 5 * a])  # one Sr column made 80% brighter: a heavier substitution
    img += 0.8 * np.exp(-((yy - heavy[0]) ** 2 + (xx - heavy[1]) ** 2) / (2 * 0.45 ** 2))
    image = viewer.add_image(img, name="substituted", scale=(pixel, pixel))
    w = dock(viewer, "3 Detect atom columns")
    w.image.set_layer(image)
    w.run_button.click()
    points = viewer.layers["substituted columns"]
    assert "1 flagged" in w.status.text() and "0 dim, 1 bright" in w.flags.text()
    for key in SHORTCUTS:  # the shortcuts are bound on the chosen columns layer
        assert coerce_keybinding(key) in points.keymap, key

    points.keymap[coerce_keybinding("n")](points)  # press N
    (index,) = points.selected_data
    assert np.linalg.norm(points.data[index] * pixel - heavy) < 0.2
    assert np.allclose(viewer.camera.center[-2:], points.data[index] * pixel)
    w.new_sublattice.setValue(2)
    w.new_species.setText("Ba")
    points.keymap[coerce_keybinding("l")](points)  # press L: relabel the selected column
    edited = columns_from_points_layer(points)
    assert edited.species[index] == "Ba" and edited.sublattice[index] == 2
    assert edited.species.count("Ba") == 1
    viewer.camera.zoom *= 3
    screenshot(viewer, "04b_flagged")
    other = viewer.add_points(np.zeros((0, 2)), name="other")
    w.points.set_layer(other)  # keys follow the chosen layer
    assert coerce_keybinding("n") not in points.keymap and coerce_keybinding("n") in other.keymap


def test_accept_edits_fits_hand_placed_points_into_a_new_layer(viewer):
    from napari.utils.key_bindings import coerce_keybinding

    from napari_automat._napari.widgets.detect import ACCEPTED_KEY

    pixel = 0.2
    image = viewer.add_image(lattice_image(n_cells=10, noise=0.01), name="lattice", scale=(pixel, pixel))
    w = dock(viewer, "3 Detect atom columns")
    w.image.set_layer(image)
    w.run_button.click()
    points = viewer.layers["lattice columns"]
    n = len(points.data)
    detected = columns_from_points_layer(points)
    # delete a bright (sublattice 0) column in the middle and click roughly where it was
    centre = np.argmin(np.linalg.norm(points.data - points.data.mean(0), axis=1) + 1e3 * (detected.sublattice != 0))
    true_position = points.data[centre].copy()
    points.selected_data = {int(centre)}
    points.remove_selected()
    w.apply_defaults()  # new points: sublattice unknown, no species (the widget's defaults)
    points.add(true_position + [0.7, -0.6])
    edited = columns_from_points_layer(points)
    assert edited.provenance[-1] == "added" and edited.sublattice[-1] == -1 and np.isnan(edited.intensity[-1])

    points.keymap[coerce_keybinding("Enter")](points)  # press Enter: accept
    accepted_layer = viewer.layers["lattice columns accepted"]
    accepted = columns_from_points_layer(accepted_layer)
    summary = accepted_layer.metadata[ACCEPTED_KEY]
    assert summary["columns"] == n and summary["n_added"] == 1 and summary["refined"] == 1
    assert np.linalg.norm(accepted.positions_px[-1] - true_position) < 0.3  # snapped onto the column [px]
    assert accepted.sublattice[-1] == 0 and np.isfinite(accepted.intensity[-1])  # relabelled by the lattice fit
    assert accepted.provenance[-1] == "added"
    assert summary["lattice"]["a_A"] == pytest.approx(3.905, rel=0.01)
    assert f"accepted {n} columns (1 added; 1 fitted)" in w.status.text()
    # the edited layer is kept as it was
    still = columns_from_points_layer(points)
    assert np.isnan(still.intensity[-1]) and still.sublattice[-1] == -1
    assert w.points.layer() is accepted_layer  # the next edits and stages follow the accepted layer
    points.visible = False
    accepted_layer.selected_data = {len(accepted_layer.data) - 1}  # highlight the accepted point
    viewer.camera.center = tuple(accepted_layer.data_to_world(accepted.positions_px[-1]))[-2:]
    viewer.camera.zoom *= 3
    screenshot(viewer, "04c_accepted")


def test_choosing_a_candidate_draws_its_projection(viewer):
    from scipy.spatial import cKDTree

    from napari_automat._napari.layers import OVERLAY_KEY, add_layer, micrograph_layer_data
    from napari_automat.model import Micrograph

    calibrated = Micrograph(lattice_image(n_cells=10), (0.2, 0.2), True, None, {"signal": "HAADF"})
    image = add_layer(viewer, micrograph_layer_data(calibrated, name="sto"))
    w = dock(viewer, "3 Detect atom columns")
    w.image.set_layer(image)
    w.run_button.click()
    points = viewer.layers["sto columns"]
    w = dock(viewer, "5 Retrieve templates")
    w.points.set_layer(points)
    w.elements.setText("Sr, Ti, O")
    w.run_button.click()
    overlays = [layer for layer in viewer.layers if OVERLAY_KEY in layer.metadata]
    assert len(overlays) == 1 and "candidate 1: SrTiO3" in overlays[0].name  # the best row is chosen and drawn
    d, _ = cKDTree(overlays[0].data).query(points.data)
    assert np.median(d) * 0.2 < 0.15  # the template's columns sit on the detected ones
    assert "Sr" in set(overlays[0].features["column"])
    screenshot(viewer, "06b_candidate_overlay")
    w.select_hit(1)
    overlays = [layer for layer in viewer.layers if OVERLAY_KEY in layer.metadata]
    assert len(overlays) == 1 and "candidate 2" in overlays[0].name  # redrawn, not added
    assert overlays[0] not in [w.points.layer(), None] and w.points.layer() is points

    from napari_automat._napari.widgets.retrieve import CANDIDATE_CELL_KEY

    w.select_hit(0)
    w.cell_button.click()  # the chosen candidate's 3D cell
    cells = [layer for layer in viewer.layers if CANDIDATE_CELL_KEY in layer.metadata]
    atoms = [layer for layer in cells if isinstance(layer, Points)]
    hit = points.metadata[HITS_KEY][0]
    assert len(atoms) == 1 and atoms[0].name.startswith("candidate 1: SrTiO3") and viewer.dims.ndisplay == 3
    assert atoms[0].metadata[STRUCTURE_KEY].composition.reduced_formula == "SrTiO3"
    assert len(atoms[0].data) >= len(hit.structure)  # (atoms on cell faces are drawn on both)
    screenshot(viewer, "06c_candidate_cell")
    w.select_hit(1)
    w.cell_button.click()
    cells = [layer for layer in viewer.layers if CANDIDATE_CELL_KEY in layer.metadata]
    assert len([layer for layer in cells if isinstance(layer, Points)]) == 1 and "candidate 2" in cells[0].name


@pytest.mark.slow
def test_agent_widget_runs_full_chain(viewer, real_file, tmp_path):
    path = real_file("real/atomap_test_ADF_cropped.hdf5")
    viewer.open(str(path), plugin=PLUGIN)
    w = dock(viewer, "Agent (full chain)")
    assert w.points.layer() is None  # detect automatically
    w.elements.setText("Sr Ti O")
    w.energy_model.setCurrentText("none")
    w.run_button.click()
    text = w.transcript.toPlainText()
    assert len(text.splitlines()) >= 3, w.status.text()
    structures = [layer for layer in viewer.layers if STRUCTURE_KEY in layer.metadata]
    assert structures, text
    assert viewer.dims.ndisplay == 3
    assert structures[0].metadata[STRUCTURE_KEY].composition.reduced_formula == "SrTiO3"
    screenshot(viewer, "09_agent")

    # back to the image: 2D view, structures hidden, the agent's columns carry its candidates
    w = dock(viewer, "6 Reconstruct 3D structure")
    w.back_button.click()
    assert viewer.dims.ndisplay == 2
    assert not structures[0].visible and viewer.layers[0].visible
    agent_columns = viewer.layers[f"{viewer.layers[0].name} columns (agent)"]
    assert agent_columns.metadata[HITS_KEY] and w.points.layer() is agent_columns
    assert w.hit.count() == len(agent_columns.metadata[HITS_KEY])

    import napari

    out = tmp_path / "structure.cif"
    assert napari.save_layers(str(out), [structures[0]], plugin=PLUGIN) == [str(out)]
    assert "_symmetry_space_group_name_H-M" in out.read_text() or "_space_group" in out.read_text()


def test_hand_made_points_layer_gets_column_features(viewer):
    viewer.add_image(lattice_image(n_cells=4), name="img", scale=(0.2, 0.2))
    layer = viewer.add_points(np.array([[10.0, 10.0], [30.0, 30.0]]), name="mine", scale=(0.2, 0.2))
    w = dock(viewer, "3 Detect atom columns")
    assert w.points.layer() is layer
    w.new_sublattice.setValue(1)
    w.new_species.setText("Ti+O")
    w.apply_defaults()
    layer.add([20.0, 20.0])
    cols = columns_from_points_layer(layer)
    assert cols.provenance == ["added"] * 3
    assert cols.sublattice.tolist() == [-1, -1, 1] and cols.species[-1] == "Ti+O"
    np.testing.assert_allclose(cols.positions_A[-1], [4.0, 4.0])


def test_retrieval_on_uncalibrated_image_explains_instead_of_failing(viewer):
    viewer.add_image(lattice_image(n_cells=6), name="plain")  # no scale: uncalibrated
    dock(viewer, "3 Detect atom columns").run_button.click()
    points = viewer.layers["plain columns"]
    assert len(points.data) > 40
    w = dock(viewer, "5 Retrieve templates")
    w.run_button.click()
    assert "no spatial calibration" in w.status.text()
    assert w.table.rowCount() == 0 and w.run_button.isEnabled()


def test_read_widget_fills_in_the_pixel_size_the_structure_implies(viewer):
    """An SrTiO3 [001] image whose pixel size is recorded 5% too large: after retrieval, the read
    widget offers the pixel size at which SrTiO3 fits, and applies it on request."""
    viewer.add_image(lattice_image(n_cells=8, a_A=3.905), name="sto")  # truly 0.2 Å/px
    read = dock(viewer, "1 Read and calibrate")
    read.pixel_size.setValue(0.21)
    read.run_button.click()
    dock(viewer, "3 Detect atom columns").run_button.click()
    w = dock(viewer, "5 Retrieve templates")
    w.elements.setText("Sr, Ti, O")
    w.run_button.click()
    assert viewer.layers["sto columns"].metadata[HITS_KEY][0].formula == "SrTiO3", w.status.text()
    read = dock(viewer, "1 Read and calibrate")
    read.image.set_layer(viewer.layers["sto"])
    read.from_structure.click()
    assert read.pixel_size.value() == pytest.approx(0.2, rel=0.015), read.status.text()
    assert "SrTiO3" in read.status.text()
    read.run_button.click()
    assert viewer.layers["sto"].scale[-1] == pytest.approx(0.2, rel=0.015)


def test_read_widget_derives_the_pixel_size_of_an_uncalibrated_image_from_the_compound(viewer):
    """Issue 13: no pixel size and no retrieval possible; the compound typed in gives the pixel size at
    which SrTiO3 [001] fits the detected columns."""
    viewer.add_image(lattice_image(n_cells=8, a_A=3.905), name="plain")  # truly 0.2 Å/px, no scale
    dock(viewer, "3 Detect atom columns").run_button.click()
    read = dock(viewer, "1 Read and calibrate")
    read.image.set_layer(viewer.layers["plain"])
    read.from_structure.click()
    assert "name the compound" in read.status.text()
    read.compound.setText("Sr, Ti, O")
    read.from_structure.click()
    assert read.pixel_size.value() == pytest.approx(0.2, rel=0.02), read.status.text()
    assert "SrTiO3 Pm-3m [001]" in read.status.text() and "not measured" in read.status.text()
    read.run_button.click()
    assert viewer.layers["plain"].scale[-1] == pytest.approx(0.2, rel=0.02)
