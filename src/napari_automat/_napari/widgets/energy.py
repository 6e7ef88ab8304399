"""Energy: energy per atom and formation energy of a reconstructed structure (MatterSim/CHGNet)."""

from __future__ import annotations

from napari.layers import Points
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QLineEdit, QSpinBox

from ..layers import STRUCTURE_KEY, structure_layer_data
from ._common import LayerCombo, StageWidget, double_spin, fmt, remember, stored_settings

ENERGY_KEY = "automat_energy"
MODELS = ("auto", "mattersim", "chgnet")


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
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.form.addRow("structure", self.structure)
        self.form.addRow("model", self.model)
        self.form.addRow("checkpoint", self.checkpoint)
        self.form.addRow(self.relax)
        self.form.addRow("max force", self.fmax)
        self.form.addRow("max steps", self.max_steps)
        self.body.addWidget(self.result)
        self.relax.toggled.connect(self.fmax.setEnabled)
        self.relax.toggled.connect(self.max_steps.setEnabled)

    def run(self) -> None:
        from ...energy import compute_energy

        layer = self.structure.layer()
        if layer is None:
            self.set_status("⚠ no structure layer: reconstruct a structure first", error=True)
            return
        structure = layer.metadata[STRUCTURE_KEY]
        remember(energy_model=self.model.currentText(), mattersim_checkpoint=self.checkpoint.text().strip())

        def done(report):
            layer.metadata[ENERGY_KEY] = report
            self.result.setText(energy_summary_html(report))
            self.set_status(f"energy of '{layer.name}' computed")
            if report.relaxed_structure is not None:
                atoms, cell = structure_layer_data(report.relaxed_structure, name=f"{layer.name} relaxed",
                                                   **{ENERGY_KEY: report})
                for data in (atoms, cell):
                    data[1]["visible"] = False
                    self.add_layer(data)

        self.start(compute_energy, structure, model=self.model.currentText(), relax=self.relax.isChecked(),
                   fmax_eV_A=float(self.fmax.value()), max_steps=int(self.max_steps.value()),
                   checkpoint=self.checkpoint.text().strip() or None, label="energy", on_done=done)
