"""The Region choice of the agent and detect widgets: a rectangle or a polygon of a Shapes layer
(drawn in world Å, converted to the image's pixels) restricts the analysis, and the region used is
drawn as a Shapes layer and saved in result.json.

Set ``AUTOMAT_SCREENSHOT_DIR=docs/images`` to save the screenshot used by docs/user-guide.md.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import points_in_poly

from napari_automat._napari.sample_data import srtio3_sample
from napari_automat._napari.session import SESSION_KEY
from napari_automat._napari.widgets._region import SHAPES
from napari_automat._napari.widgets.agent import AgentWidget
from napari_automat._napari.widgets.detect import DetectWidget
from napari_automat._napari.writer import write_columns
from napari_automat.io.write import read_columns_csv

pytestmark = pytest.mark.gui

PIXEL_A = 0.15  # the sample's pixel size
RECT_A = [[4.5, 6.0], [4.5, 30.0], [27.0, 30.0], [27.0, 6.0]]  # (y, x) Å, as drawn in the viewer
UNITS = ("angstrom", "angstrom")
POLY_A = [[3.0, 20.0], [36.0, 5.0], [34.0, 36.0]]


@pytest.fixture
def viewer(make_napari_viewer, sync_workers):
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"  # no toasts over the screenshot
    v = make_napari_viewer(show=bool(os.environ.get("AUTOMAT_SCREENSHOT_DIR")))
    data, kwargs, _ = srtio3_sample()[0]
    v.add_image(data, **kwargs)
    v.add_shapes([np.array(RECT_A)], shape_type="rectangle", name="rectangle", edge_color="cyan",
                 face_color="transparent", edge_width=0.3, units=UNITS)
    v.add_shapes([np.array(POLY_A)], shape_type="polygon", name="polygon", edge_color="magenta",
                 face_color="transparent", edge_width=0.3, units=UNITS)
    return v


def columns_px(layer) -> np.ndarray:
    """A columns layer's points in the image's pixels (through its translate)."""
    return (layer.data * layer.scale + layer.translate) / PIXEL_A


def run_agent_on(viewer, shapes: str):
    widget = AgentWidget(viewer)
    widget.image.set_layer(viewer.layers[0])
    widget.region.mode.setCurrentText(SHAPES)
    widget.region.shapes.set_layer(viewer.layers[shapes])
    widget.elements.setText("Sr Ti O")
    widget.energy_model.setCurrentText("none")
    widget.planner.setCurrentText("rules")
    widget.show_3d.setChecked(False)
    n_before = len(viewer.layers)
    widget.run_button.click()
    assert "finished" in widget.status.text(), widget.status.text()
    added = list(viewer.layers)[n_before:]
    columns = next(layer for layer in added if "columns (agent)" in layer.name)
    region = next(layer for layer in added if "region used" in layer.name)
    return widget, columns, region, columns.metadata[SESSION_KEY].to_dict()


def test_agent_in_a_rectangle_and_a_polygon(viewer, tmp_path):
    _, columns, region, result = run_agent_on(viewer, "rectangle")
    box = np.array(RECT_A) / PIXEL_A
    px = columns_px(columns)
    assert len(px) > 40 and np.all((px >= box.min(axis=0) - 0.5) & (px <= box.max(axis=0) + 0.5))
    assert result["input"]["roi"] == [30, 181, 40, 201] and "roi_polygon" not in result["input"]
    assert result["structure"]["reduced_formula"] == "SrTiO3"
    np.testing.assert_allclose(region.data[0] * region.scale + region.translate,
                               (np.array([[30, 40], [30, 201], [181, 201], [181, 40]]) - 0.5) * PIXEL_A)

    widget, columns, region, result = run_agent_on(viewer, "polygon")
    polygon = np.array(POLY_A) / PIXEL_A
    px = columns_px(columns)
    assert len(px) > 40 and points_in_poly(np.rint(px), polygon).all()
    np.testing.assert_allclose(result["input"]["roi_polygon"], polygon)
    saved = json.loads(columns.metadata[SESSION_KEY].save(tmp_path / "out")["result"].read_text())["input"]
    assert (saved["roi"], saved["roi_polygon"]) == (result["input"]["roi"], result["input"]["roi_polygon"])
    np.testing.assert_allclose(region.data[0] * region.scale + region.translate, POLY_A)
    assert widget.region.shapes.layer() is viewer.layers["polygon"]  # the region used is not the next choice
    saved = write_columns(str(tmp_path / "columns.csv"), *columns.as_layer_data_tuple()[:2])
    np.testing.assert_allclose(read_columns_csv(saved[0]).positions_px, px, atol=1e-3)  # the full image's frame
    screenshot(viewer, widget, keep=(viewer.layers[0], region, columns))


def screenshot(viewer, widget, keep) -> None:
    """The polygon run: the image, the region used (the polygon drawn) and the agent's columns and lattice."""
    shot_dir = os.environ.get("AUTOMAT_SCREENSHOT_DIR")
    if not shot_dir:
        return
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    for layer in viewer.layers:
        layer.visible = layer in keep or ("lattice (agent)" in layer.name and layer.name.endswith("[2]"))
    viewer.window.add_dock_widget(widget, name="Agent (region: a Shapes layer)")
    viewer.window._qt_window.resize(1500, 950)
    viewer.layers.selection.active = keep[1]
    viewer.reset_view()
    QApplication.processEvents()
    path = Path(shot_dir) / "11_region_shapes.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)


def test_detect_in_a_polygon(viewer):
    widget = DetectWidget(viewer)
    widget.image.set_layer(viewer.layers[0])
    widget.region.mode.setCurrentText(SHAPES)
    widget.region.shapes.set_layer(viewer.layers["polygon"])
    widget.run_button.click()
    columns = viewer.layers[f"{viewer.layers[0].name} columns"]
    assert len(columns.data) > 40 and points_in_poly(np.rint(columns_px(columns)), np.array(POLY_A) / PIXEL_A).all()
    assert any(layer.name.endswith("region used") for layer in viewer.layers)


def test_detect_on_a_placed_crop(viewer):
    """On an image layer that is a crop placed over the image (the agent's denoised one), the region
    applies to the crop and the columns stay in the image's frame."""
    from napari_automat._napari.layers import MICROGRAPH_KEY, micrograph_layer_data, placed

    crop = viewer.layers[0].metadata[MICROGRAPH_KEY].crop((30, 181, 40, 201), roi_source="crystal")
    data, kwargs, _ = placed(micrograph_layer_data(crop, name="crop"), (30, 40))
    viewer.add_image(data, **kwargs)
    widget = DetectWidget(viewer)
    widget.image.set_layer(viewer.layers["crop"])
    widget.region.mode.setCurrentText(SHAPES)
    widget.region.shapes.set_layer(viewer.layers["polygon"])
    widget.run_button.click()
    px = columns_px(viewer.layers["crop columns"])
    assert len(px) > 20 and points_in_poly(np.rint(px), np.array(POLY_A) / PIXEL_A).all()
    assert np.all((px >= (29.5, 39.5)) & (px <= (180.5, 200.5)))


def test_a_line_is_not_a_region(viewer):
    viewer.add_shapes([np.array([[1.0, 1.0], [20.0, 20.0]])], shape_type="line", name="line", units=UNITS)
    widget = DetectWidget(viewer)
    widget.region.mode.setCurrentText(SHAPES)
    widget.region.shapes.set_layer(viewer.layers["line"])
    widget.run_button.click()
    assert "a line is not a region" in widget.status.text()
