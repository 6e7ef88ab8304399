"""Read and calibrate: open a micrograph, see its calibration, set the pixel size [Å/px]."""

from __future__ import annotations

import html
from pathlib import Path

from napari.layers import Image
from qtpy.QtWidgets import QDoubleSpinBox, QFileDialog, QLabel, QLineEdit, QPushButton

from ...model import AutomatError
from ..layers import MICROGRAPH_KEY, micrograph_from_layer
from ..session import SESSION_KEY
from ._common import LayerCombo, StageWidget, fmt

FILE_FILTER = ("Micrographs (*.dm3 *.dm4 *.emd *.ser *.emi *.mrc *.tif *.tiff *.hspy *.hdf5 *.h5 "
               "*.png *.jpg);;All files (*)")


class ReadWidget(StageWidget):
    """Shows the chosen image's calibration and sets its pixel size (both axes) in Å."""

    run_text = "Set pixel size"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.open_button = QPushButton("Open micrograph…")
        self.open_button.clicked.connect(self._open_dialog)
        self.image = LayerCombo(napari_viewer, Image)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setDecimals(4)
        self.pixel_size.setRange(0.001, 1000.0)
        self.pixel_size.setSingleStep(0.01)
        self.pixel_size.setSuffix(" Å/px")
        self.compound = QLineEdit()
        self.compound.setPlaceholderText("uncalibrated: elements (Pb, Nb, O) or a .cif")
        self.compound.setToolTip("the compound imaged, for an image without calibration: its pixel size is the one at "
                                 "which a projection of the compound fits the detected columns")
        self.from_structure = QPushButton("Pixel size the structure implies")
        self.from_structure.setToolTip("fill in the pixel size at which the structure retrieved for this image fits it "
                                       "(result.json: calibration), or for an uncalibrated image the one at which the "
                                       "compound above fits its detected columns; 'Set pixel size' applies it")
        self.from_structure.clicked.connect(self.fill_from_structure)
        self.form.addRow(self.open_button)
        self.form.addRow("image", self.image)
        self.form.addRow(self.info)
        self.form.addRow("pixel size", self.pixel_size)
        self.form.addRow("compound", self.compound)
        self.form.addRow(self.from_structure)
        self.cancel_button.hide()
        self.image.currentIndexChanged.connect(self.update_info)
        self.update_info()

    def open_path(self, path: str) -> list:
        """Open a file with the AutoMat reader; returns the new layers."""
        layers = self.viewer.open(path, plugin="napari-automat")
        self.viewer.scale_bar.visible = True
        return layers

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open micrograph", "", FILE_FILTER)
        if path:
            try:
                self.open_path(path)
            except Exception as exc:  # noqa: BLE001 - the reader's one-line reason for the user
                self.set_status(f"⚠ {getattr(exc, '__cause__', None) or exc}", error=True)

    def update_info(self, *_) -> None:
        layer = self.image.layer()
        if layer is None:
            self.info.setText("<i>open a micrograph (File ▸ Open, or the button above)</i>")
            return
        mg = micrograph_from_layer(layer)
        md = mg.metadata
        rows = [("shape", " × ".join(str(s) for s in mg.shape) + (" (frames, y, x)" if mg.is_stack else " (y, x)")),
                ("pixel size y, x", f"{fmt(mg.pixel_size_A[0], '.4f')}, {fmt(mg.pixel_size_A[1], '.4f')} Å"),
                ("calibrated", ("yes" if mg.calibrated else "<b style='color:#ff8a80'>no: set the pixel size</b>")
                 + (f" ({html.escape(str(md['calibration_note']))})" if md.get("calibration_note") else "")),
                ("signal", html.escape(str(md.get("signal") or md.get("detector") or "—"))),
                ("voltage", fmt(md.get("voltage_kV"), ".0f", "kV")),
                ("file", html.escape(Path(mg.path).name if mg.path else "—"))]
        self.info.setText("<table>" + "".join(f"<tr><td>{k}&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
                          + "</table>")
        self.info.setToolTip(str(mg.path or ""))
        self.pixel_size.setValue(mg.mean_pixel_size_A)

    def fill_from_structure(self) -> None:
        """Fill in the pixel size that the latest retrieval on this image implies (the calibration
        factor of its chosen structure), or for an uncalibrated image the one at which the compound
        fits its detected columns (``pipeline.structure_calibration``); nothing changes until 'Set
        pixel size'."""
        layer = self.chosen(self.image, "image")
        if layer is None:
            return
        mg = micrograph_from_layer(layer)
        sessions = [lay.metadata.get(SESSION_KEY) for lay in self.viewer.layers]
        sessions = [s for s in sessions if s is not None and s.micrograph.path == mg.path]
        if not mg.calibrated:
            self._calibrate_from_compound([s for s in sessions if s.columns is not None])
            return
        same = [s for s in sessions if s.hits]
        cal = same[-1].calibration if same else None
        if cal is None:
            self.set_status("⚠ no structure retrieved for this image yet: run '5 Retrieve templates' or the agent",
                            error=True)
            return
        value = same[-1].micrograph.mean_pixel_size_A * cal["scale_factor"]
        self.pixel_size.setValue(value)
        self.set_status(f"{cal['against']} fits this image at {value:.4f} Å/px (× {cal['scale_factor']:.3f} ± "
                        f"{100 * cal['scale_sigma']:.1f}%): press 'Set pixel size' to apply it, then detect again")

    def _calibrate_from_compound(self, sessions: list) -> None:
        """The pixel size at which the compound typed in fits the columns detected on this uncalibrated
        image (the latest detection), computed off the GUI thread."""
        from ...pipeline import structure_calibration

        text = self.compound.text().strip()
        if not sessions or not text:
            self.set_status("⚠ no calibration: detect the columns ('3 Detect atom columns') and name the compound "
                            "(elements or a .cif file) to derive the pixel size from the structure", error=True)
            return
        session = sessions[-1]
        cif = text if text.lower().endswith(".cif") else None
        session.config = session.config.replace(reference_cif=cif, elements=() if cif else text)

        def done(cal) -> None:
            self.pixel_size.setValue(cal.pixel_size_A)
            self.set_status(f"{cal.summary()}: press 'Set pixel size' to apply it (derived from the structure, not "
                            "measured), then detect again")

        self.start(structure_calibration, session, label="pixel size from the structure", on_done=done)

    def run(self) -> None:
        """Set the pixel size of the chosen image (marks it calibrated by the user)."""
        from ...io.read import apply_pixel_size

        layer = self.chosen(self.image, "image")
        if layer is None:
            return
        value = float(self.pixel_size.value())
        try:
            mg = apply_pixel_size(micrograph_from_layer(layer), value)
        except AutomatError as exc:
            self.set_status(f"⚠ {exc}", error=True)
            return
        layer.metadata[MICROGRAPH_KEY] = mg
        layer.metadata.update(pixel_size_A=list(mg.pixel_size_A), calibrated=True)
        layer.scale = (*tuple(layer.scale)[:-2], value, value)
        layer.units = (*tuple(layer.units)[:-2], "angstrom", "angstrom")
        self.viewer.scale_bar.visible = True
        self.viewer.reset_view()
        self.update_info()
        self.set_status(f"pixel size of '{layer.name}' set to {value:.4f} Å/px")
