"""Reconstruct: template hit + lattice of the CURRENT columns → 3D structure layers (atoms and cell)."""

from __future__ import annotations

from napari.layers import Points
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QPushButton

from ..layers import COLUMNS_KEY, HITS_KEY, LATTICE_KEY, SELECTED_HIT_KEY, STRUCTURE_KEY, structure_layer_data
from ..session import SESSION_KEY, layer_session, show_session_columns
from ._common import LayerCombo, StageWidget, fmt
from ._results import ResultActions
from .detect import is_columns_layer

RECONSTRUCTION_KEY = "automat_reconstruction"


class _HitCombo(QComboBox):
    """Candidates stored on a columns layer; re-read whenever the list opens."""

    def __init__(self, points: LayerCombo):
        super().__init__()
        self._points = points

    def refresh(self, *_) -> None:
        layer = self._points.layer()
        hits = layer.metadata.get(HITS_KEY, []) if layer is not None else []
        keep = self.currentIndex() if self.count() == len(hits) else None
        self.blockSignals(True)
        self.clear()
        for i, hit in enumerate(hits):
            zone = " ".join(str(int(v)) for v in hit.zone_axis)
            self.addItem(f"{i + 1}. {hit.formula} [{zone}]  score {hit.score:.3f}", i)
        self.blockSignals(False)
        if hits:
            chosen = layer.metadata.get(SELECTED_HIT_KEY, 0) if keep is None or keep < 0 else keep
            self.setCurrentIndex(min(max(int(chosen), 0), len(hits) - 1))

    def showPopup(self) -> None:
        self.refresh()
        super().showPopup()


def structure_summary_html(rec) -> str:
    s = rec.structure
    lat = s.lattice
    try:
        sg = s.get_space_group_info(symprec=rec.symprec_A)
        sg_text = f"{sg[0]} ({sg[1]})"
    except Exception:  # noqa: BLE001 - symmetry analysis is informative only
        sg_text = "—"
    text = (f"<b>{s.composition.reduced_formula}</b>, space group {sg_text}, {len(s)} atoms/cell<br>"
            f"a, b, c = {fmt(lat.a)}, {fmt(lat.b)}, {fmt(lat.c)} Å; "
            f"α, β, γ = {fmt(lat.alpha, '.1f')}, {fmt(lat.beta, '.1f')}, {fmt(lat.gamma, '.1f')}°")
    if rec.z_contrast:
        z = rec.z_contrast
        text += (f"<br>Z-contrast: intensity ∝ Z<sup>{z['exponent']:.2f}</sup> from {z['n_sites']} column types"
                 + (" (exact with two)" if z["n_sites"] == 2 else f", rms {z['rms_log']:.3f} in ln I"))
    if rec.warnings:
        text += "<br>⚠ " + "<br>⚠ ".join(rec.warnings)
    return text


def reconstruct_stages(session, progress):
    """The pipeline's lattice stage (when the points changed since retrieval) and reconstruct stage on a
    layer's session; returns the session."""
    from ...pipeline import run_stage

    if session.lattice is None:
        run_stage(session, "lattice", progress=lambda f, m="": progress(0.3 * f, m))
    return run_stage(session, "reconstruct", progress=lambda f, m="": progress(0.3 + 0.7 * f, m))


class ReconstructWidget(StageWidget):
    """The pipeline's reconstruct stage on the chosen candidate, with the lattice of the chosen
    columns as they are now (refitted when they were edited since retrieval)."""

    run_text = "Reconstruct"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.points = LayerCombo(napari_viewer, Points, accept=is_columns_layer)
        self.hit = _HitCombo(self.points)
        self.show_3d = QCheckBox("show in 3D (hides the 2D layers)")
        self.show_3d.setChecked(True)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.back_button = QPushButton("Back to 2D")
        self.back_button.clicked.connect(self.back_to_2d)
        self.form.addRow("columns", self.points)
        self.form.addRow("candidate", self.hit)
        self.form.addRow(self.show_3d)
        self.body.addWidget(self.result)
        self.body.addWidget(self.back_button)
        self.actions = ResultActions(napari_viewer, self.current_result, lambda text, error: self.set_status(text, error))
        self.body.addWidget(self.actions)
        self.points.currentIndexChanged.connect(self.hit.refresh)
        self.points.currentIndexChanged.connect(self.actions.update_enabled)
        self.hit.refresh()

    def showEvent(self, event) -> None:
        self.hit.refresh()
        super().showEvent(event)

    def current_result(self):
        """``(columns layer, its session, its image layer)`` for the chosen columns, or None."""
        from ..session_io import image_layer_of

        layer = self.points.layer()
        if layer is None or not len(layer.data):
            return None
        session = layer.metadata.get(SESSION_KEY)
        return layer, session, image_layer_of(self.viewer, layer, session)

    def run(self) -> None:
        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        self.hit.refresh()
        hits = layer.metadata.get(HITS_KEY, [])
        if not hits:
            self.set_status("⚠ no candidates on this layer: run 'Retrieve templates' first", error=True)
            return
        index = max(self.hit.currentIndex(), 0)
        layer.metadata[SELECTED_HIT_KEY] = index
        session = layer_session(layer, candidate_index=index)
        session.hits = hits  # the candidates in the table (kept when the points were edited since)
        n = len(layer.data)

        def done(out):
            rec, lattice, used = out.reconstruction, out.lattice, out.columns
            if len(layer.data) == n:  # labels go back only onto the points they were made for
                show_session_columns(layer, out)
            name = f"{rec.structure.composition.reduced_formula} structure"
            added = [self.add_layer(d) for d in structure_layer_data(
                rec.structure, name=name, **{RECONSTRUCTION_KEY: rec, LATTICE_KEY: lattice, COLUMNS_KEY: used,
                                             SESSION_KEY: out, "automat_hit": hits[index],
                                             "automat_source_layer": layer.name})]
            decision = out.decision
            self.result.setText(structure_summary_html(rec) + (f"<br>{decision.line()}" if decision else ""))
            self.set_status(f"reconstructed from {used.count} columns of '{layer.name}' and candidate {index + 1}")
            if self.show_3d.isChecked():
                show_structure_3d(self.viewer, added)
            self.actions.update_enabled()

        self.start(reconstruct_stages, session, label="reconstruct", on_done=done)

    def back_to_2d(self) -> None:
        """2D view with the image layers visible again and the structures hidden."""
        for layer in self.viewer.layers:
            layer.visible = STRUCTURE_KEY not in layer.metadata
        self.viewer.dims.ndisplay = 2
        self.viewer.reset_view()


def show_structure_3d(viewer, layers) -> None:
    """3D view of the given structure layers: others hidden, camera fitted to the cell and tilted."""
    for layer in viewer.layers:
        layer.visible = layer in layers
    viewer.dims.ndisplay = 3
    viewer.reset_view(layers=list(layers), margin=0.05)  # (also resets the angles)
    viewer.camera.angles = (-20.0, 30.0, 145.0)
    viewer.camera.zoom *= 0.6  # the tilted cell looks bigger than its face-on extent
    viewer.layers.selection.active = layers[0]
