"""Retrieve: match the lattice of the chosen columns against the template library → a sortable
table of candidates. The hits and the chosen row are kept in the columns layer's metadata, where
the reconstruct widget finds them; the chosen row's projected columns are drawn as rings over the
image (one overlay layer per columns layer, redrawn when another row is chosen), and its 3D
template cell is shown on request."""

from __future__ import annotations

from napari.layers import Points
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QAbstractItemView, QCheckBox, QHeaderView, QLineEdit, QPushButton, QSpinBox,
                            QTableWidget, QTableWidgetItem)

from ...config import PipelineConfig
from ..layers import (HITS_KEY, LATTICE_KEY, MICROGRAPH_KEY, OVERLAY_KEY, SELECTED_HIT_KEY, structure_layer_data,
                      template_overlay_layer_data)
from ..session import SESSION_KEY, layer_session, show_session_columns
from ._common import LayerCombo, StageWidget, remember, stored_settings
from .detect import is_columns_layer

#: Metadata key of the layers showing a candidate's 3D template cell.
CANDIDATE_CELL_KEY = "automat_candidate_cell"
HEADERS = ("rank", "formula", "zone axis", "p", "score", "residual", "Δ lattice %", "space group")
#: Colours of the verdict in the status line.
VERDICT_COLOURS = {"confident": "#69f0ae", "uncertain": "#ffd740", "no answer": "#ff8a80"}
#: Warnings shown under the verdict (all of them are in result.json and the agent's transcript).
MAX_WARNINGS_SHOWN = 3


def retrieve_stages(session, progress):
    """The pipeline's lattice (when not yet fitted on these points), retrieve and stability stages on a
    layer's session; returns the session."""
    from ...pipeline import run_stage

    if session.lattice is None:
        run_stage(session, "lattice", progress=lambda f, m="": progress(0.2 * f, m))
    run_stage(session, "retrieve", progress=lambda f, m="": progress(0.2 + 0.5 * f, m))
    run_stage(session, "stability", progress=lambda f, m="": progress(0.7 + 0.3 * f, m))
    return session


def verdict_html(session) -> str:
    """The decision's one line, coloured by how sure it is."""
    import html

    decision = session.decision
    if decision is None:
        return ""
    colour = VERDICT_COLOURS.get(decision.status, "")
    notes = "".join(f"<br>⚠ {html.escape(text)}" for text in session.warnings[:MAX_WARNINGS_SHOWN])
    return f'<span style="color: {colour};">{html.escape(decision.line())}</span>{notes}'



class _Item(QTableWidgetItem):
    """A table cell that sorts by its value (numbers as numbers)."""

    def __init__(self, value, text=None):
        super().__init__(str(value) if text is None else text)
        self.value = value
        self.setFlags(self.flags() & ~Qt.ItemIsEditable)

    def __lt__(self, other):
        try:
            return self.value < other.value
        except TypeError:
            return str(self.value) < str(other.value)


def lattice_mismatch_pct(hit) -> float:
    """The relative lattice mismatch of a hit in %, from its details (NaN when not given)."""
    for key in ("lattice_mismatch", "mismatch", "lattice_error"):
        value = hit.details.get(key)
        if isinstance(value, (int, float)):
            return 100.0 * float(value)
    return float("nan")


class RetrieveWidget(StageWidget):
    """``templates.retrieve`` on the lattice of the chosen columns, best first."""

    run_text = "Retrieve templates"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.points = LayerCombo(napari_viewer, Points, accept=is_columns_layer)
        self.elements = QLineEdit()
        self.elements.setPlaceholderText("optional, e.g. Sr, Ti, O")
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 100)
        self.top_k.setValue(10)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(300)
        self.stability = QCheckBox("compare alike candidates by stability")
        self.stability.setToolTip("a projection says nothing along the beam: reorder the top distinct candidates by "
                                  "their formation energy (CHGNet or MatterSim; a few seconds), as the agent does")
        self.form.addRow("columns", self.points)
        self.form.addRow("elements", self.elements)
        self.elements.setText(stored_settings().elements)
        self.elements.editingFinished.connect(lambda: remember(elements=self.elements.text().strip()))
        self.form.addRow("candidates", self.top_k)
        self.form.addRow(self.stability)
        self.body.addWidget(self.table)
        self.cell_button = QPushButton("Show 3D cell of the chosen candidate")
        self.cell_button.setToolTip("the template structure (decorated and scaled as retrieved) in 3D; "
                                    "switch back with the 2D/3D button")
        self.body.addWidget(self.cell_button)
        self.cell_button.clicked.connect(self.show_cell)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.points.currentIndexChanged.connect(self.show_hits)

    def elements_list(self) -> tuple[str, ...]:
        return PipelineConfig(elements=self.elements.text()).elements

    def run(self) -> None:
        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        remember(elements=self.elements.text().strip())
        session = layer_session(layer, elements=self.elements_list(), top_k=int(self.top_k.value()),
                                energy_model="auto" if self.stability.isChecked() else "none")
        n = len(layer.data)

        def done(out):
            lattice = out.lattice
            layer.metadata.update({HITS_KEY: out.hits, LATTICE_KEY: lattice, SELECTED_HIT_KEY: 0, SESSION_KEY: out})
            if len(layer.data) == n:
                show_session_columns(layer, out)
            self.show_hits()
            self.set_status(f"{len(out.hits)} candidates for a = {lattice.a_A:.3f} Å, b = {lattice.b_A:.3f} Å, "
                            f"γ = {lattice.gamma_deg:.1f}°<br>{verdict_html(out)}")

        self.start(retrieve_stages, session, label="retrieve templates", on_done=done)

    def show_hits(self, *_) -> None:
        """Fill the table from the hits stored on the chosen columns layer."""
        layer = self.points.layer()
        hits = layer.metadata.get(HITS_KEY, []) if layer is not None else []
        session = layer.metadata.get(SESSION_KEY) if layer is not None else None
        decision = session.decision if session is not None and session.hits is hits else None
        probability = decision.hit_probability if decision is not None else [float("nan")] * len(hits)
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(hits))
        for row, hit in enumerate(hits):
            zone = "[" + " ".join(str(int(v)) for v in hit.zone_axis) + "]"
            mismatch = lattice_mismatch_pct(hit)
            group = str(hit.details.get("spacegroup") or "—")
            residual = hit.details.get("image_residual")
            residual = float("nan") if residual is None else float(residual)
            p = float(probability[row])
            cells = (_Item(row + 1), _Item(hit.formula), _Item(tuple(hit.zone_axis), zone),
                     _Item(p, "—" if p != p else f"{p:.2f}"), _Item(float(hit.score), f"{hit.score:.3f}"),
                     _Item(residual, "—" if residual != residual else f"{residual:.2f}"),
                     _Item(mismatch, "—" if mismatch != mismatch else f"{mismatch:.1f}"), _Item(group))
            tip = f"{hit.template_id}\n{hit.source}" if hit.source else hit.template_id
            for col, item in enumerate(cells):
                item.setData(Qt.UserRole, row)
                item.setToolTip(tip)
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.table.sortItems(0, Qt.AscendingOrder)  # new candidates: best first
        self.table.blockSignals(False)
        if hits:
            self.select_hit(layer.metadata.get(SELECTED_HIT_KEY, 0))

    def select_hit(self, index: int) -> None:
        """Select the row of hit ``index`` (whatever the sort order)."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) == index:
                self.table.selectRow(row)
                return

    def selected_hit_index(self):
        rows = self.table.selectionModel().selectedRows()
        return None if not rows else self.table.item(rows[0].row(), 0).data(Qt.UserRole)

    def _on_row_selected(self) -> None:
        layer, index = self.points.layer(), self.selected_hit_index()
        if layer is not None and index is not None:
            layer.metadata[SELECTED_HIT_KEY] = int(index)
            self.show_overlay(layer, int(index))

    def show_overlay(self, layer, index: int) -> None:
        """Draw candidate ``index`` of ``layer``'s hits as rings over its image (replacing the last one)."""
        from ...model import AutomatError
        from ...templates.overlay import template_columns_px

        hits, lattice, image = (layer.metadata.get(HITS_KEY, []), layer.metadata.get(LATTICE_KEY),
                                layer.metadata.get(MICROGRAPH_KEY))
        if not hits or lattice is None or image is None:
            return
        hit = hits[index]
        try:
            pos, comps = template_columns_px(hit, hit.lattice or lattice, image.data.shape[-2:], image.pixel_size_A)
        except AutomatError as exc:
            self.set_status(f"⚠ {exc}", error=True)
            return
        zone = " ".join(str(int(v)) for v in hit.zone_axis)
        name = f"{layer.name} candidate {index + 1}: {hit.formula} [{zone}]"
        data, kwargs, _ = template_overlay_layer_data(pos, comps, layer.scale[-2:], name=name,
                                                      automat_source_layer=layer.name)
        old = next((lay for lay in self.viewer.layers if lay.metadata.get(OVERLAY_KEY)
                    and lay.metadata.get("automat_source_layer") == layer.name), None)
        if old is not None:
            self.viewer.layers.remove(old)
        self.add_layer((data, kwargs, "points"), like=layer)
        self.viewer.layers.selection.active = layer  # keep editing the columns, not the overlay

    def show_cell(self) -> None:
        """The chosen candidate's 3D template cell (replacing the last one shown), in a 3D view."""
        from .reconstruct import show_structure_3d

        layer, index = self.points.layer(), self.selected_hit_index()
        hits = layer.metadata.get(HITS_KEY, []) if layer is not None else []
        if index is None or not hits or hits[index].structure is None:
            self.set_status("⚠ retrieve and choose a candidate first", error=True)
            return
        hit = hits[index]
        for old in [lay for lay in self.viewer.layers if CANDIDATE_CELL_KEY in lay.metadata]:
            self.viewer.layers.remove(old)
        zone = " ".join(str(int(v)) for v in hit.zone_axis)
        added = [self.add_layer(d) for d in structure_layer_data(
            hit.structure, name=f"candidate {index + 1}: {hit.formula} [{zone}] template",
            **{CANDIDATE_CELL_KEY: hit.template_id, "automat_source_layer": layer.name})]
        show_structure_3d(self.viewer, added)
        self.set_status(f"candidate {index + 1}: {hit.formula}, {hit.details.get('spacegroup', '')}, "
                        f"{len(hit.structure)} atoms in the template cell")
