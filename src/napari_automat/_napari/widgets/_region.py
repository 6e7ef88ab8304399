"""The "Region" choice of the widgets that start an analysis: the whole image, the crystalline
region found automatically (``detect.region``), or a shape of a Shapes layer."""

from __future__ import annotations

from napari.layers import Shapes
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QWidget

from ...model import AutomatError, Micrograph
from ..layers import STRUCTURE_KEY, analysed_region, region_layer_data, shape_region
from ._common import LayerCombo

WHOLE, AUTOMATIC, SHAPES = "whole image", "automatic", "Shapes layer"
#: Metadata of a crop that places it in its source image (``Micrograph.crop``, ``pipeline``).
CROP_KEYS = ("roi", "full_shape", "roi_source", "roi_polygon", "crystalline_fraction", "crystal_mask", "domain")


def in_layer_frame(micrograph: Micrograph) -> Micrograph:
    """A layer's micrograph as an image of its own: a crop's record of where it lay in its source
    is dropped (the layer's translate places it), so a region applies to it and results are placed
    over the layer."""
    metadata = {k: v for k, v in micrograph.metadata.items() if k not in CROP_KEYS}
    return Micrograph(micrograph.data, micrograph.pixel_size_A, micrograph.calibrated, micrograph.path, metadata,
                      micrograph.true_columns_px)


class RegionChooser(QWidget):
    """A mode combo and, for ``Shapes layer``, a combo of the viewer's 2D Shapes layers."""

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.mode = QComboBox()
        self.mode.addItems((WHOLE, AUTOMATIC, SHAPES))
        self.mode.setCurrentText(AUTOMATIC)
        self.mode.setToolTip("automatic: the crystalline part when the crystal covers less than 70% of the field; "
                             "Shapes layer: its selected rectangle or polygon (else its last one)")
        # follow_new off: a 'region used' layer added by a run must not become the next region
        self.shapes = LayerCombo(viewer, Shapes, accept=lambda layer: layer.ndim == 2
                                 and STRUCTURE_KEY not in layer.metadata, follow_new=False)
        self.mode.currentTextChanged.connect(lambda text: self.shapes.setEnabled(text == SHAPES))
        self.shapes.setEnabled(False)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.mode)
        row.addWidget(self.shapes, 1)

    def config_changes(self, image_layer, shape) -> dict:
        """``PipelineConfig`` fields for the chosen region over ``image_layer`` of ``shape`` ``(h, w)``."""
        mode = self.mode.currentText()
        if mode != SHAPES:
            return {"crystal_region": mode == AUTOMATIC}
        layer = self.shapes.layer()
        if layer is None:
            raise AutomatError("no Shapes layer: add one and draw a rectangle or a polygon")
        try:
            return {"crystal_region": False, **shape_region(layer, image_layer, shape)}
        except ValueError as exc:
            raise AutomatError(f"region: {exc}") from None


def show_region(widget, result, image_layer):
    """Add the 'region used' Shapes layer of ``result`` over ``image_layer`` (nothing for the whole
    image); returns it or None."""
    outline = analysed_region(result)
    if outline is None:
        return None
    return widget.add_layer(region_layer_data(outline, result.micrograph.pixel_size_A,
                                              name=f"{image_layer.name} region used"), like=image_layer)
