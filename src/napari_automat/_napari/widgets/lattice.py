"""2D lattice: fit the basis of the chosen (possibly edited) columns → a Vectors layer."""

from __future__ import annotations

import numpy as np
from napari.layers import Points
from qtpy.QtWidgets import QLabel

from ..layers import COLUMNS_KEY, LATTICE_KEY, lattice_layer_data
from ..session import layer_session, show_session_columns
from ._common import LayerCombo, StageWidget, fmt
from .detect import is_columns_layer


def lattice_summary(lattice) -> str:
    """a, b, γ and the quality numbers of a Lattice2D, as HTML."""
    sites = ", ".join(f"({m.frac[0]:.2f}, {m.frac[1]:.2f})" for m in lattice.motif) or "—"
    return (f"<b>a</b> = {fmt(lattice.a_A)} Å, <b>b</b> = {fmt(lattice.b_A)} Å, "
            f"<b>γ</b> = {fmt(lattice.gamma_deg, '.1f')}°<br>"
            f"uncertainty {fmt(lattice.uncertainty_A, '.3f', 'Å')}, "
            f"FFT mismatch {fmt(100 * lattice.fft_mismatch, '.1f', '%')}<br>motif sites: {sites}")


def lattice_stage(session, progress):
    """The pipeline's lattice stage on a layer's session; returns the session."""
    from ...pipeline import run_stage

    return run_stage(session, "lattice", progress=progress)


class LatticeWidget(StageWidget):
    """The pipeline's lattice stage on the CURRENT points of the chosen layer (user edits included).

    Writes a Vectors layer (a red, b blue) and the sublattice labels into the points' features.
    """

    run_text = "Fit lattice"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.points = LayerCombo(napari_viewer, Points, accept=is_columns_layer)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.form.addRow("columns", self.points)
        self.body.addWidget(self.result)

    def run(self) -> None:
        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        session = layer_session(layer)
        n = len(layer.data)

        def done(out):
            lattice, labelled = out.lattice, out.columns
            self.add_layer(lattice_layer_data(lattice, labelled.pixel_size_A, name=f"{layer.name} lattice",
                                              near_px=labelled.positions_px.mean(axis=0), **{COLUMNS_KEY: labelled}),
                           like=layer)
            if len(layer.data) == n:
                show_session_columns(layer, out)
            layer.metadata[LATTICE_KEY] = lattice
            self.result.setText(lattice_summary(lattice))
            self.set_status(f"lattice of {labelled.count} columns "
                            f"({int(np.sum(labelled.sublattice >= 0))} on motif sites)")

        self.start(lattice_stage, session, label="fit lattice", on_done=done)
