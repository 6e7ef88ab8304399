"""Denoise: filter the chosen image (or the frame shown) into a new image layer."""

from __future__ import annotations

from napari.layers import Image
from qtpy.QtWidgets import QComboBox

from ...config import DENOISE_METHODS
from ..layers import micrograph_layer_data
from ._common import LayerCombo, StageWidget, double_spin, layer_micrograph



class DenoiseWidget(StageWidget):
    """``denoise.denoise(micrograph, method, strength)`` → a new image layer ``<name> denoised``."""

    run_text = "Denoise"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.image = LayerCombo(napari_viewer, Image)
        self.method = QComboBox()
        self.method.addItems(DENOISE_METHODS)
        self.method.setToolTip("auto: chosen from the power spectrum; fourier: Bragg filter; "
                               "nlm: non-local means; gaussian: smoothing; moe: the learned mixture-of-experts "
                               "denoiser (needs torch)")
        self.strength = double_spin(1.0, 0.1, 5.0, 0.1)
        self.strength.setToolTip("denoising strength multiplier (1 = default)")
        self.form.addRow("image", self.image)
        self.form.addRow("method", self.method)
        self.form.addRow("strength", self.strength)

    def run(self) -> None:
        from ...denoise import denoise

        layer = self.chosen(self.image, "image")
        if layer is None:
            return
        mg = layer_micrograph(self.viewer, layer)
        name = f"{layer.name} denoised"

        def done(out):
            denoised, info = out
            self.add_layer(micrograph_layer_data(denoised, name=name, automat_denoise_info=info,
                                                 automat_source_layer=layer.name), like=layer)
            summary = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in info.items() if isinstance(v, (str, int, float)))
            self.set_status(f"done: {summary}" if summary else "done")

        self.start(denoise, mg, method=self.method.currentText(), strength=float(self.strength.value()),
                   label="denoise", on_done=done)
