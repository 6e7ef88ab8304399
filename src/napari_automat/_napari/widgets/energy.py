"""Energy: energy per atom and formation energy of a reconstructed structure (MatterSim/CHGNet),
and optionally the properties of the relaxed structure (``energy.properties``) with their plots."""

from __future__ import annotations

from napari.layers import Points
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QLineEdit, QSpinBox

from ..layers import STRUCTURE_KEY, structure_layer_data
from ._common import LayerCombo, StageWidget, double_spin, fmt, remember, stored_settings
from ._plots import PropertiesPlot

ENERGY_KEY = "automat_energy"
PROPERTIES_KEY = "automat_properties"
MODELS = ("auto", "mattersim", "chgnet")
PROPERTY_LEVELS = ("none", "fast", "all")


def energy_and_properties(structure, level: str = "none", model: str = "auto", relax: bool = True,
                          fmax_eV_A: float = 0.05, max_steps: int = 200, checkpoint=None, progress=None):
    """``compute_energy`` then, unless ``level`` is ``none``, ``compute_properties`` of the relaxed
    structure with the same model and force limit → ``(EnergyReport, properties block or None)``."""
    from ...energy import compute_energy
    from ...energy.properties import compute_properties
    from ...model import no_progress
    from ...pipeline import sub_progress

    progress = progress or no_progress
    share = 1.0 if level == "none" else 0.25
    report = compute_energy(structure, model=model, relax=relax, fmax_eV_A=fmax_eV_A, max_steps=max_steps,
                            checkpoint=checkpoint, progress=sub_progress(progress, 0.0, share, "energy: "))
    if level == "none":
        return report, None
    relaxed = report.relaxed_structure if report.relaxed_structure is not None else structure
    properties = compute_properties(relaxed, level, model=report.model, energy_per_atom_eV=report.energy_per_atom_eV,
                                    fmax_eV_A=fmax_eV_A, checkpoint=checkpoint,
                                    progress=sub_progress(progress, share, 1.0, "properties: "))
    return report, properties


def properties_summary_html(properties: dict) -> str:
    """The properties block as a few lines (what the plots do not show in numbers)."""
    lines = []
    if properties.get("e_above_hull_meV") is not None:
        lines.append(f"E above hull: <b>{fmt(properties['e_above_hull_meV'], '.0f', 'meV/atom')}</b> → "
                     + ", ".join(f"{name} {x:.2f}" for name, x in (properties.get("decomposition") or {}).items()))
    if properties.get("bulk_modulus_GPa") is not None:
        lines.append(f"bulk modulus: <b>{fmt(properties['bulk_modulus_GPa'], '.0f', 'GPa')}</b> "
                     f"(EOS residual {fmt(properties.get('eos_residual'), '.2f', 'meV/atom')})")
    phonon, elastic = properties.get("phonon"), properties.get("elastic")
    if phonon:
        lines.append(f"phonons: lowest {fmt(phonon['min_frequency_THz'], '.2f', 'THz')}"
                     + ("; <b>imaginary modes</b>" if phonon["imaginary"] else "; no imaginary mode"))
    if elastic:
        lines.append(f"elastic: K_VRH {fmt(elastic['bulk_modulus_vrh_GPa'], '.0f', 'GPa')}, "
                     f"G_VRH {fmt(elastic['shear_modulus_vrh_GPa'], '.0f', 'GPa')}"
                     + ("" if elastic["mechanically_stable"] else "; <b>mechanically unstable</b>"))
    timings = properties.get("timings_s") or {}
    if timings:
        lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    lines += [f"⚠ {w}" for w in properties.get("warnings") or []]
    return "<br>".join(lines)


def energy_summary_html(report) -> str:
    text = (f"<b>{report.model}</b>{' (relaxed)' if report.relaxed else ''}<br>"
            f"energy: {fmt(report.energy_per_atom_eV, '.4f', 'eV/atom')}<br>"
            f"formation energy: <b>{fmt(report.formation_energy_per_atom_eV, '.4f', 'eV/atom')}</b><br>"
            f"max force: {fmt(report.max_force_eV_A, '.3f', 'eV/Å')}")
    if report.relaxed:
        text += f"; {report.steps} steps; lattice change {report.lattice_change_pct:+.2f}%"
    if report.warnings:
        text += "<br>⚠ " + "<br>⚠ ".join(report.warnings)
    return text


class EnergyWidget(StageWidget):
    """``energy.compute_energy`` on the structure of a chosen structure layer."""

    run_text = "Compute energy"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.structure = LayerCombo(napari_viewer, Points, accept=lambda layer: STRUCTURE_KEY in layer.metadata)
        self.model = QComboBox()
        self.model.addItems(MODELS)
        self.model.setToolTip("auto: MatterSim when its checkpoint is available, else CHGNet")
        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("MatterSim's default")
        self.checkpoint.setToolTip("a MatterSim checkpoint file (.pth); empty: MatterSim's own")
        stored = stored_settings()
        if stored.energy_model in MODELS:
            self.model.setCurrentText(stored.energy_model)
        self.checkpoint.setText(stored.mattersim_checkpoint)
        self.model.currentTextChanged.connect(lambda text: remember(energy_model=text))
        self.checkpoint.editingFinished.connect(
            lambda: remember(mattersim_checkpoint=self.checkpoint.text().strip()))
        self.relax = QCheckBox("relax positions and cell (space group kept)")
        self.relax.setChecked(True)
        self.fmax = double_spin(0.05, 0.001, 1.0, 0.01, 3, " eV/Å")
        self.max_steps = QSpinBox()
        self.max_steps.setRange(1, 5000)
        self.max_steps.setValue(200)
        self.properties = QComboBox()
        self.properties.addItems(PROPERTY_LEVELS)
        self.properties.setToolTip("properties of the relaxed structure, from the same model: fast = energy above "
                                   "the hull of its chemical system and bulk modulus (E–V fit); all = also "
                                   "phonons and the elastic tensor. The hull phases are relaxed once per "
                                   "model and chemical system (cached)")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.plots = PropertiesPlot()
        self.form.addRow("structure", self.structure)
        self.form.addRow("model", self.model)
        self.form.addRow("checkpoint", self.checkpoint)
        self.form.addRow(self.relax)
        self.form.addRow("max force", self.fmax)
        self.form.addRow("max steps", self.max_steps)
        self.form.addRow("properties", self.properties)
        self.body.addWidget(self.result)
        self.body.addWidget(self.plots)
        self.relax.toggled.connect(self.fmax.setEnabled)
        self.relax.toggled.connect(self.max_steps.setEnabled)
        self.structure.currentIndexChanged.connect(lambda index: self.show_results(self.structure.layer()))
        self.show_results(self.structure.layer())

    def show_results(self, layer) -> None:
        """The energy and properties a structure layer holds (from this widget), or nothing."""
        metadata = layer.metadata if layer is not None else {}
        report, properties = metadata.get(ENERGY_KEY), metadata.get(PROPERTIES_KEY)
        text = energy_summary_html(report) if report is not None else ""
        self.result.setText(text + ("<br>" + properties_summary_html(properties) if properties else ""))
        self.plots.plot(properties, hull_gate_meV())

    def run(self) -> None:
        layer = self.structure.layer()
        if layer is None:
            self.set_status("⚠ no structure layer: reconstruct a structure first", error=True)
            return
        structure = layer.metadata[STRUCTURE_KEY]
        remember(energy_model=self.model.currentText(), mattersim_checkpoint=self.checkpoint.text().strip())

        level = self.properties.currentText()

        def done(out):
            report, properties = out
            layer.metadata[ENERGY_KEY] = report
            layer.metadata[PROPERTIES_KEY] = properties
            self.set_status(f"energy{' and properties' if properties else ''} of '{layer.name}' computed")
            if report.relaxed_structure is not None:
                atoms, cell = structure_layer_data(report.relaxed_structure, name=f"{layer.name} relaxed",
                                                   **{ENERGY_KEY: report, PROPERTIES_KEY: properties})
                for data in (atoms, cell):
                    data[1]["visible"] = False
                    self.add_layer(data)
            self.show_results(layer)

        self.start(energy_and_properties, structure, level=level, model=self.model.currentText(),
                   relax=self.relax.isChecked(), fmax_eV_A=float(self.fmax.value()),
                   max_steps=int(self.max_steps.value()), checkpoint=self.checkpoint.text().strip() or None,
                   label="energy" if level == "none" else f"energy and properties ({level})", on_done=done)


def hull_gate_meV():
    """The agent's E_hull gate [meV/atom] (``PipelineConfig.max_e_above_hull_meV``), marked on the hull plot."""
    from ...config import PipelineConfig

    return PipelineConfig().max_e_above_hull_meV
