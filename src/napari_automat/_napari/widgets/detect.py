"""Detect atom columns into a NEW Points layer; inspect and edit columns (defaults for added
points, refinement of selected points, intensity histogram by sublattice, review of flagged
columns, keyboard shortcuts on the chosen columns layer) and accept the edits into a new layer."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Points
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                            QSpinBox, QWidget)

from ...model import AutomatError
from ..layers import (ADDED_DEFAULTS, ADDED_LABELS_KEY, MICROGRAPH_KEY, OVERLAY_KEY, STRUCTURE_KEY,
                      columns_from_points_layer, columns_layer_data, ensure_column_features, placed,
                      set_column_features, untracked)
from ..session import SESSION_KEY, new_session
from ._common import LayerCombo, StageWidget, double_spin, layer_micrograph
from ._region import RegionChooser, in_layer_frame, show_region

SIGNALS = ("auto", "HAADF", "ADF", "iDPC", "ABF", "BF")
#: Keys bound on the chosen columns layer: key → (widget method, what it does).
SHORTCUTS = {
    "r": ("refine_selected", "refine the selected points (all when none is)"),
    "l": ("label_selected", "give the selected points the sublattice and species below"),
    "n": ("next_flagged", "select and centre the next flagged column (dim or bright)"),
    "Shift-N": ("previous_flagged", "… the previous one"),
    "Enter": ("accept_edits", "accept: fit the hand-edited points, relabel sublattices, write a new layer"),
}
#: Metadata key of a layer written by "Accept edits" (its summary).
ACCEPTED_KEY = "automat_accepted"


def is_columns_layer(layer) -> bool:
    """A 2D Points layer that is not a 3D structure nor a candidate's projection overlay."""
    return (isinstance(layer, Points) and layer.ndim == 2 and STRUCTURE_KEY not in layer.metadata
            and OVERLAY_KEY not in layer.metadata)


def detect_and_classify(micrograph, min_separation_A=None, threshold_scale=1.0, signal="auto",
                        sublattices=True, region=None, progress=None):
    """The pipeline's detect stage on a new session (``pipeline.start``: cropped to ``region``, the
    ``PipelineConfig`` region fields; the whole image without), then (optionally) its lattice stage,
    which labels sublattices, drops tail artefacts and adds motif sites the detection merged into
    brighter neighbours (kept at retrieval only when a template explains them, as in ``pipeline.run``).

    Returns ``(session, note)``; ``note`` says why sublattices stayed unknown, or what was added.
    """
    from ...config import PipelineConfig
    from ...pipeline import run_stage, start

    config = PipelineConfig(min_separation_A=min_separation_A, threshold_scale=threshold_scale, signal=signal,
                            crystal_region=False).replace(**(region or {}))
    session = start(micrograph, config)
    run_stage(session, "detect", progress=lambda f, m="": progress(0.8 * f, m))
    if not sublattices:
        return session, ""
    try:
        run_stage(session, "lattice", progress=lambda f, m="": progress(0.8 + 0.2 * f, m))
    except AutomatError as exc:
        return session, f"sublattices unknown: {exc}"
    return session, "; ".join(session.warnings)


class DetectWidget(StageWidget):
    """``detect.detect_columns`` on the chosen image → a new Points layer (never overwrites one)."""

    run_text = "Detect columns"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.image = LayerCombo(napari_viewer, Image)
        self.min_separation = double_spin(0.0, 0.0, 50.0, 0.1, 2, " Å", special="auto")
        self.min_separation.setToolTip("closest distance between two columns; auto = from the Fourier transform")
        self.threshold = double_spin(1.0, 0.05, 10.0, 0.05)
        self.threshold.setToolTip("multiplies the automatic contrast threshold (lower finds weaker columns)")
        self.signal = QComboBox()
        self.signal.addItems(SIGNALS)
        self.signal.setToolTip("ABF/BF: columns are dark; auto: from the file, else from the contrast")
        self.sublattices = QCheckBox("label sublattices (lattice fit)")
        self.sublattices.setChecked(True)
        self.region = RegionChooser(napari_viewer)
        self.form.addRow("image", self.image)
        self.form.addRow("region", self.region)
        self.form.addRow("min separation", self.min_separation)
        self.form.addRow("threshold ×", self.threshold)
        self.form.addRow("signal", self.signal)
        self.form.addRow(self.sublattices)

        from ._plots import IntensityHistogram

        edit = QGroupBox("Edit columns")
        edit_form = QFormLayout(edit)
        self.points = LayerCombo(napari_viewer, Points, accept=is_columns_layer)
        self.histogram = IntensityHistogram()
        self.new_sublattice = QSpinBox()
        self.new_sublattice.setRange(-1, 9)
        self.new_sublattice.setSpecialValueText("unknown")
        self.new_sublattice.setValue(-1)
        self.new_species = QLineEdit()
        self.new_species.setPlaceholderText("e.g. Sr or Ti+O")
        self.refine_button = QPushButton("Refine selected [R]")
        self.refine_button.setToolTip("fit the selected points (all when none is selected) on the image")
        self.label_button = QPushButton("Label selected [L]")
        self.label_button.setToolTip("give the selected points the sublattice and species set for new points")
        self.next_button = QPushButton("Next flagged [N]")
        self.next_button.setToolTip("dim columns may be vacancies or lighter atoms, bright ones heavier atoms")
        self.accept_button = QPushButton("Accept edits [Enter]")
        self.accept_button.setToolTip("fit the added and moved points on the image, relabel sublattices and flags "
                                      "over the edited set, and write the result as a new layer (this one is kept)")
        buttons = QWidget()
        row = QHBoxLayout(buttons)
        row.setContentsMargins(0, 0, 0, 0)
        for button in (self.refine_button, self.label_button, self.next_button):
            row.addWidget(button)
        self.flags = QLabel("")
        keys = QLabel("<br>".join(f"<b>{k.replace('-', '+').upper()}</b> {text}" for k, (_, text) in SHORTCUTS.items())
                      + "<br><b>2 / 3</b> add / select mode, <b>Delete</b> delete, <b>Ctrl+Z</b> undo (napari)")
        keys.setWordWrap(True)
        edit_form.addRow("columns", self.points)
        edit_form.addRow(self.histogram)
        edit_form.addRow("new points: sublattice", self.new_sublattice)
        edit_form.addRow("new points: species", self.new_species)
        edit_form.addRow(buttons)
        edit_form.addRow(self.accept_button)
        edit_form.addRow(self.flags)
        edit_form.addRow("shortcuts", keys)
        self.body.addWidget(edit)

        self._watched = None
        self.points.currentIndexChanged.connect(self._on_points_changed)
        self.new_sublattice.valueChanged.connect(self.apply_defaults)
        self.new_species.editingFinished.connect(self.apply_defaults)
        self.refine_button.clicked.connect(self.refine_selected)
        self.label_button.clicked.connect(self.label_selected)
        self.next_button.clicked.connect(self.next_flagged)
        self.accept_button.clicked.connect(self.accept_edits)
        self._on_points_changed()

    # --- detection ---
    def run(self) -> None:
        layer = self.chosen(self.image, "image")
        if layer is None:
            return
        mg = in_layer_frame(layer_micrograph(self.viewer, layer))
        try:
            region = self.region.config_changes(layer, mg.shape[-2:])
        except AutomatError as exc:
            self.set_status(f"⚠ {exc}", error=True)
            return
        min_sep = self.min_separation.value() or None
        name = f"{layer.name} columns"

        def done(out):
            session, note = out
            columns = session.columns
            show_region(self, session, layer)
            self.add_layer(placed(columns_layer_data(columns, name=name, **{
                MICROGRAPH_KEY: session.micrograph, SESSION_KEY: session, "automat_source_layer": layer.name}),
                session.origin_px), like=layer)
            counts = np.bincount(columns.sublattice[columns.sublattice >= 0]) if columns.count else []
            per = ", ".join(f"{s}: {n}" for s, n in enumerate(counts) if n)
            n_flagged = sum(bool(f) for f in columns.flag)
            self.set_status(f"{columns.count} columns" + (f" (sublattices {per})" if per else "")
                            + (f", {n_flagged} flagged (N to review)" if n_flagged else "")
                            + (f"; {note}" if note else ""))

        self.start(detect_and_classify, mg, min_separation_A=min_sep, threshold_scale=float(self.threshold.value()),
                   signal=self.signal.currentText(), sublattices=self.sublattices.isChecked(), region=region,
                   label="detect columns", on_done=done)

    # --- editing ---
    def _on_points_changed(self, *_) -> None:
        layer = self.points.layer()
        if self._watched is not None:
            self._watched.events.data.disconnect(self.update_histogram)
            self._watched.events.features.disconnect(self.update_histogram)
            for key in SHORTCUTS:
                self._watched.bind_key(key, None, overwrite=True)
        self._watched = layer
        if layer is not None:
            layer.events.data.connect(self.update_histogram)
            layer.events.features.connect(self.update_histogram)
            for key, (method, _) in SHORTCUTS.items():
                layer.bind_key(key, self._key_action(method), overwrite=True)
        self.update_histogram()

    def _key_action(self, method: str):
        def action(_layer):
            getattr(self, method)()
        return action

    def update_histogram(self, event=None) -> None:
        if event is not None and str(getattr(event, "action", "")) in ("adding", "removing", "changing"):
            return
        layer = self.points.layer()
        if layer is None:
            self.histogram.plot(np.zeros(0), np.zeros(0, int))
            return
        cols = columns_from_points_layer(layer)
        self.histogram.plot(cols.intensity, cols.sublattice)
        dim, bright = cols.flag.count("dim"), cols.flag.count("bright")
        self.flags.setText(f"flagged: {dim} dim, {bright} bright (outliers of their sublattice)"
                           if dim or bright else "no flagged columns")

    def apply_defaults(self, *_) -> None:
        """Sublattice and species that points added by hand will get (provenance 'added')."""
        layer = self.points.layer()
        if layer is None:
            return
        ensure_column_features(layer)
        labels = {"sublattice": int(self.new_sublattice.value()), "species": self.new_species.text().strip()}
        layer.metadata[ADDED_LABELS_KEY] = labels
        layer.feature_defaults = {**layer.feature_defaults.iloc[0].to_dict(), **ADDED_DEFAULTS, **labels}

    def label_selected(self) -> None:
        """Set the sublattice and species of the selected points to the values for new points."""
        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        chosen = sorted(layer.selected_data)
        if not chosen:
            self.set_status("⚠ select points first (S, then click or drag)", error=True)
            return
        ensure_column_features(layer)
        features = layer.features.copy()
        features.loc[chosen, "sublattice"] = int(self.new_sublattice.value())
        features.loc[chosen, "species"] = self.new_species.text().strip()
        layer.features = features
        layer.refresh_colors(update_color_mapping=False)
        from .. import autosave

        autosave.edited(layer)  # labels given by hand are edits too
        self.set_status(f"labelled {len(chosen)} points: sublattice {int(self.new_sublattice.value())}"
                        + (f", species {self.new_species.text().strip()}" if self.new_species.text().strip() else ""))

    def next_flagged(self, step: int = 1) -> None:
        """Select the next (``step`` 1) or previous (-1) flagged column and centre the view on it."""
        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        flagged = [i for i, f in enumerate(columns_from_points_layer(layer).flag) if f]
        if not flagged:
            self.set_status("no flagged columns on this layer")
            return
        current = min(layer.selected_data) if layer.selected_data else (-1 if step > 0 else len(layer.data))
        later = [i for i in flagged if (i - current) * step > 0]
        index = (later[0] if step > 0 else later[-1]) if later else (flagged[0] if step > 0 else flagged[-1])
        layer.selected_data = {index}
        self.viewer.camera.center = tuple(layer.data_to_world(layer.data[index]))[-2:]
        flag = layer.features["flag"].iloc[index]
        self.set_status(f"column {index}: {flag} ({flagged.index(index) + 1} of {len(flagged)} flagged)")

    def previous_flagged(self) -> None:
        self.next_flagged(-1)

    def _layer_image(self, layer):
        """The micrograph a columns layer was detected on, else the chosen image's, else None."""
        image = layer.metadata.get(MICROGRAPH_KEY)
        if image is None and self.image.layer() is not None:
            image = layer_micrograph(self.viewer, self.image.layer())
        return image

    def accept_edits(self) -> None:
        """Fit the hand-edited points, relabel sublattices and flags, and write a new layer."""
        from ...detect import accept_columns

        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        image = self._layer_image(layer)
        columns = columns_from_points_layer(layer)
        n_before = len(layer.data)

        def done(out):
            accepted, summary = out
            if len(layer.data) != n_before:
                self.set_status("⚠ the layer changed while accepting; accept again", error=True)
                return
            metadata = {k: v for k, v in layer.metadata.items() if k not in (ACCEPTED_KEY, SESSION_KEY)}
            old = layer.metadata.get(SESSION_KEY)
            if old is not None:  # the accepted points start a session of their own, with the same settings
                metadata[SESSION_KEY] = new_session(old.micrograph, old.config)
            name = layer.name if layer.name.endswith(" accepted") else f"{layer.name} accepted"
            self.add_layer(columns_layer_data(accepted, name=name,
                                              **{**metadata, ACCEPTED_KEY: summary}), like=layer)
            edits = ", ".join(f"{summary[k]} {k[2:]}" for k in ("n_added", "n_moved") if summary.get(k))
            lat = summary["lattice"]
            self.set_status(f"accepted {summary['columns']} columns" + (f" ({edits}; {summary['refined']} fitted)"
                                                                         if edits else "")
                            + (f"; a = {lat['a_A']:.3f} Å, b = {lat['b_A']:.3f} Å, {lat['sites']} sites" if lat
                               else f"; {summary['note']}")
                            + (f"; {summary['flagged']} flagged" if summary["flagged"] else ""))

        self.start(accept_columns, columns, image=image, label="accept edits", on_done=done)

    def refine_selected(self) -> None:
        """Re-fit the selected points (all if none selected) on the image they were detected on."""
        from ...detect import refine_columns

        layer = self.chosen(self.points, "columns")
        if layer is None:
            return
        image = self._layer_image(layer)
        if image is None:
            self.set_status("⚠ no image to refine on", error=True)
            return
        columns = columns_from_points_layer(layer)
        indices = sorted(layer.selected_data) or None
        n_before = len(layer.data)

        def refine(progress):
            progress(0.0, f"refining {len(indices) if indices else columns.count} columns")
            return refine_columns(image, columns, indices)

        def done(refined):
            if len(layer.data) != n_before:
                self.set_status("⚠ the layer changed while refining; nothing written", error=True)
                return
            with untracked(layer):
                data = np.array(layer.data, float)
                data[:, -2:] = refined.positions_px
                layer.data = data
            set_column_features(layer, refined)
            self.set_status(f"refined {len(indices) if indices else refined.count} columns")

        self.start(refine, label="refine columns", on_done=done)
