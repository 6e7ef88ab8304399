"""Agent: run the full chain on the chosen image with quality gates, by the rules planner or an LLM
(chosen here, never just because an API key is set); the transcript is shown live and the results
come back as new layers."""

from __future__ import annotations

import html
import weakref
from dataclasses import replace
from typing import Optional

from napari.layers import Image, Points
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ...agent import wants_llm
from ...config import PipelineConfig
from ...model import AutomatError
from ..layers import (COLUMNS_KEY, HITS_KEY, LATTICE_KEY, MICROGRAPH_KEY, SELECTED_HIT_KEY, columns_from_points_layer,
                      columns_layer_data, domains_layer_data, lattice_layer_data, micrograph_layer_data, placed,
                      structure_layer_data, to_image_px)
from ..session import SESSION_KEY
from ._common import LayerCombo, StageWidget, layer_micrograph, remember, stored_settings, unproxied
from ._region import RegionChooser, in_layer_frame, show_region
from ._results import ResultActions
from .detect import is_columns_layer
from .energy import ENERGY_KEY
from .reconstruct import RECONSTRUCTION_KEY, show_structure_3d

AGENT_KEY = "automat_agent"


class AgentWidget(StageWidget):
    """``agent.run_agent`` on the chosen image (and, optionally, columns edited by hand)."""

    run_text = "Run full chain"
    message = Signal(object)  # transcript entries, delivered on the GUI thread

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.image = LayerCombo(napari_viewer, Image, follow_new=False)  # its own outputs must not become inputs
        self.points = LayerCombo(napari_viewer, Points, accept=is_columns_layer, none_text="(detect automatically)",
                                 follow_new=False)
        self.points.setCurrentIndex(0)
        self.region = RegionChooser(napari_viewer)
        self.region.setToolTip("where to analyse (not with columns chosen below: those are used as they are)")
        self.elements = QLineEdit()
        self.elements.setPlaceholderText("optional, e.g. Sr, Ti, O")
        self.energy_model = QComboBox()
        self.energy_model.addItems(("auto", "mattersim", "chgnet", "none"))
        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("MatterSim's default")
        self.checkpoint.setToolTip("a MatterSim checkpoint file (.pth); empty: MatterSim's own (downloaded on first "
                                   "use when online)")
        self.relax = QCheckBox("relax before the energy")
        self.relax.setChecked(True)
        self.planner = QComboBox()
        self.planner.addItems(("rules", "llm"))
        self.planner.setCurrentText("llm" if wants_llm("auto") else "rules")
        self.planner.setToolTip("llm: tool calling on the OpenAI-compatible endpoint of OPENAI_BASE_URL "
                                "(OPENAI_API_KEY, AUTOMAT_LLM_MODEL, AUTOMAT_LLM_TIMEOUT); the rules planner "
                                "finishes whatever it leaves undone or gets wrong")
        self.llm_url = QLineEdit()
        self.llm_url.setPlaceholderText("$OPENAI_BASE_URL or OpenAI")
        self.llm_url.setToolTip("OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (remembered); the API key "
                                "stays in OPENAI_API_KEY and is never stored")
        self.llm_model = QLineEdit()
        self.llm_model.setPlaceholderText("$AUTOMAT_LLM_MODEL or the default")
        self.check_button = QPushButton("test connection")
        self.check_button.clicked.connect(self.check_connection)
        self.planner.currentTextChanged.connect(lambda text: self.check_button.setEnabled(text == "llm"))
        self.check_button.setEnabled(self.planner.currentText() == "llm")
        self.show_3d = QCheckBox("show the structure in 3D")
        self.show_3d.setChecked(True)
        self.domains = QCheckBox("one chain per domain")
        self.domains.setToolTip("segment the field into domains by local lattice (layers, grains, the two sides "
                                "of a defect) and run the chain on each")
        self.correct_scan = QCheckBox("undo a scan distortion, run again")
        self.correct_scan.setToolTip("when the structure found says the raster is sheared or stretched (beyond 2σ "
                                     "and 1%: result.json calibration.scan_distortion), undo it on the image "
                                     "and run the chain again")
        self.recalibrate = QCheckBox("recalibrate from the structure, run again")
        self.recalibrate.setToolTip("when the structure found says the file's pixel size is off, run again with "
                                    "the pixel size it implies")
        self.transcript = QPlainTextEdit()
        self.transcript.setReadOnly(True)
        self.transcript.setMinimumHeight(320)
        self.transcript.setPlaceholderText("the agent's reasoning and tool calls appear here")
        self.form.addRow("image", self.image)
        self.form.addRow("region", self.region)
        self.form.addRow("columns", self.points)
        self.form.addRow("elements", self.elements)
        self.form.addRow("energy model", self.energy_model)
        self.form.addRow("checkpoint", self.checkpoint)
        self.form.addRow(self.relax)
        self.form.addRow("planner", self.planner)
        self.form.addRow("LLM endpoint", self.llm_url)
        self.form.addRow("LLM model", self.llm_model)
        self.form.addRow(self.check_button)
        self.form.addRow(self.show_3d)
        self.form.addRow(self.domains)
        self.form.addRow(self.correct_scan)
        self.form.addRow(self.recalibrate)
        self._result = None
        self._result_layer = self._image_layer = lambda: None
        self._layer_session = True
        self.actions = ResultActions(napari_viewer, self.current_result, lambda text, error: self.set_status(text, error),
                                     opened=self.session_opened)
        self.body.addWidget(self.actions)
        self.question = _Question(self.build_choice)
        self.body.addWidget(self.question)
        self.body.addWidget(self.transcript)
        self.message.connect(self.append_message)
        self.energy_model.currentTextChanged.connect(lambda text: self.relax.setEnabled(text != "none"))
        self.prefill()
        self.energy_model.currentTextChanged.connect(lambda text: self.remember())
        for edit in (self.elements, self.checkpoint, self.llm_url, self.llm_model):
            edit.editingFinished.connect(self.remember)

    # --- settings that persist between runs ---
    def prefill(self) -> None:
        """Fill the fields from the stored settings (``napari_automat.settings``)."""
        s = stored_settings()
        self.elements.setText(s.elements)
        self.energy_model.setCurrentText(s.energy_model)
        self.checkpoint.setText(s.mattersim_checkpoint)
        self.llm_url.setText(s.llm_base_url)
        self.llm_model.setText(s.llm_model)

    def remember(self) -> list:
        """Store the fields as settings (the API key never: it is no field)."""
        return remember(elements=self.elements.text().strip(), energy_model=self.energy_model.currentText(),
                        mattersim_checkpoint=self.checkpoint.text().strip(), llm_base_url=self.llm_url.text().strip(),
                        llm_model=self.llm_model.text().strip())

    def llm_settings(self):
        """The LLM settings of the environment with the endpoint and model of the fields when given."""
        from ...agent.llm import LLMSettings

        return LLMSettings.from_env(model=self.llm_model.text().strip() or None,
                                    base_url=self.llm_url.text().strip() or None)

    # --- results in and out ---
    def current_result(self):
        """``(columns layer, session, image layer)`` of the last run or opened session, or None."""
        layer = self._result_layer()
        if layer is None or layer not in self.viewer.layers or self._result is None:
            return None
        own = layer.metadata.get(SESSION_KEY) if self._layer_session else None  # stages may have gone on since
        return layer, own if own is not None else self._result, self._image_layer()

    def session_opened(self, layers, info) -> None:
        """Saving goes on from an opened session: its columns layer and image."""
        columns = [layer for layer in layers if is_columns_layer(layer)]
        images = [layer for layer in layers if isinstance(layer, Image)]
        if columns and info.get("session") is not None:
            self._result = info["session"]
            self._result_layer, self._layer_session = weakref.ref(unproxied(columns[-1])), True
            self._image_layer = weakref.ref(unproxied(images[0])) if images else (lambda: None)
        if images:
            self.image.set_layer(images[0])

    def append_message(self, entry: dict) -> None:
        role = str(entry.get("role", ""))
        content = html.escape(str(entry.get("content", "")))
        if role == "assistant":  # the model's words, not the result
            self.transcript.appendHtml(f"<b>model's words (unchecked)</b>: <i>{content}</i>")
        else:
            self.transcript.appendHtml(f"<b>{html.escape(role)}</b>: {content}")

    def check_connection(self) -> None:
        """Ask the configured endpoint for a one-token reply; the status says whether it answered."""
        from ...agent.llm import check_connection

        self.remember()
        try:
            settings = self.llm_settings()
        except AutomatError as exc:
            self.set_status(f"⚠ {exc}", error=True)
            return
        self.start(check_connection, settings, label="test connection",
                   on_done=lambda line: self.set_status(html.escape(line), error=not line.startswith("reached")))

    def config(self, region: Optional[dict] = None) -> PipelineConfig:
        """The chain's settings; ``region``: the ``PipelineConfig`` region fields (:class:`RegionChooser`)."""
        return PipelineConfig(elements=self.elements.text(), energy_model=self.energy_model.currentText(),
                              relax=self.relax.isChecked(), domains=self.domains.isChecked(),
                              correct_scan=self.correct_scan.isChecked(), recalibrate=self.recalibrate.isChecked(),
                              mattersim_checkpoint=self.checkpoint.text().strip() or None, **(region or {}))

    def run(self) -> None:
        from ...agent import agent_line, run_agent

        image_layer = self.chosen(self.image, "image")
        if image_layer is None:
            return
        mg = in_layer_frame(layer_micrograph(self.viewer, image_layer))
        points_layer = self.points.layer()
        columns, region = None, None
        if points_layer is not None:  # in the image's pixels, wherever the layer is placed
            columns = columns_from_points_layer(points_layer)
            columns = replace(columns, positions_px=to_image_px(points_layer.data, points_layer, image_layer))
        else:
            try:
                region = self.region.config_changes(image_layer, mg.shape[-2:])
            except AutomatError as exc:
                self.set_status(f"⚠ {exc}", error=True)
                return
        self.remember()
        try:
            llm = self.llm_settings() if self.planner.currentText() == "llm" else None
        except AutomatError as exc:
            self.set_status(f"⚠ {exc}", error=True)
            return
        self.transcript.clear()
        source = f"{image_layer.name}" + (f" + '{points_layer.name}'" if points_layer is not None else "")

        def done(agent):
            from .retrieve import verdict_html

            self.show_result(agent, image_layer.name, points_layer, image_layer)
            self.set_status(f"finished on {source}: {html.escape(agent_line(agent))}<br>{verdict_html(agent.result)}",
                            error=agent.result.agent.get("fallback") is not None)

        self.start(run_agent, mg, self.config(region), columns=columns, on_message=self.message.emit,
                   planner=self.planner.currentText(), llm=llm, label="agent", on_done=done)

    # --- the question the agent asks when the image does not decide ---
    def ask(self, result) -> None:
        """Offer the distinct answers of a run that is not confident (``decision.choices``), else hide."""
        from ...decision import choices

        options = choices(result.hits, result.decision)
        self.question.offer(options, result.decision.line() if options else "")
        self._asked = result

    def build_choice(self, index: int) -> None:
        """Reconstruct (and relax, with an energy model) the candidate the user chose, on the run's session."""
        result = getattr(self, "_asked", None)
        if result is None:
            return

        def done(out):
            self.show_structure(out, f"{out.hits[index].formula} {out.hits[index].details.get('spacegroup') or ''}")
            self.set_status(f"built the chosen candidate: {html.escape(out.decision.line())}")
            self.actions.update_enabled()

        self.start(build_candidate, result, index, label="build the chosen structure", on_done=done)

    def show_structure(self, result, name: str, agent=None) -> list:
        """The 3D structure layers of ``result``'s reconstruction (with its energy when computed)."""
        rec = result.reconstruction
        extra = {RECONSTRUCTION_KEY: rec, LATTICE_KEY: result.lattice, COLUMNS_KEY: result.columns}
        if agent is not None:
            extra[AGENT_KEY] = agent
        if result.energy is not None:
            extra[ENERGY_KEY] = result.energy
        added = [self.add_layer(d) for d in structure_layer_data(rec.structure, name=f"{name.strip()} structure (agent)",
                                                                 **extra)]
        if self.show_3d.isChecked():
            show_structure_3d(self.viewer, added)
        return added

    def show_result(self, agent, name: str, points_layer=None, image_layer=None) -> None:
        """Add the result of an agent run as layers (nothing existing is replaced); with ``image_layer``,
        the region used is drawn and the 2D layers are placed over it."""
        result = agent.result
        analysed, origin = result.analysed, result.origin_px
        if image_layer is not None:
            show_region(self, result, image_layer)
        if result.domain_labels is not None:
            self.add_layer(domains_layer_data(result.domain_labels, result.micrograph.pixel_size_A, result.domains,
                                              name=f"{name} domains (agent)"), like=image_layer)
        if result.denoised is not None:
            self.add_layer(placed(micrograph_layer_data(result.denoised, name=f"{name} denoised (agent)",
                                                        automat_denoise_info=result.denoise_info), origin),
                           like=image_layer)
        columns_layer = points_layer
        if result.columns is not None and (points_layer is None or result.columns_source != "user"):
            columns_layer = self.add_layer(placed(columns_layer_data(result.columns, name=f"{name} columns (agent)",
                                                                     **{MICROGRAPH_KEY: analysed}), origin),
                                           like=image_layer)
        if columns_layer is not None and result.hits:
            columns_layer.metadata.update({HITS_KEY: result.hits, SELECTED_HIT_KEY: result.chosen_index})
        if columns_layer is not None and columns_layer is not points_layer:
            columns_layer.metadata[SESSION_KEY] = result  # the step widgets go on from the agent's session
        if columns_layer is not None:  # what 'Save results…' and 'Save session…' save
            self._result, self._result_layer = result, weakref.ref(unproxied(columns_layer))
            self._layer_session = columns_layer is not points_layer
            self._image_layer = weakref.ref(unproxied(image_layer)) if image_layer is not None else (lambda: None)
            self.actions.update_enabled()
        if result.lattice is not None:
            self.add_layer(placed(lattice_layer_data(result.lattice, result.columns.pixel_size_A,
                                                     name=f"{name} lattice (agent)",
                                                     near_px=result.columns.positions_px.mean(axis=0),
                                                     **{COLUMNS_KEY: result.columns}), origin), like=image_layer)
            if columns_layer is not None:
                columns_layer.metadata[LATTICE_KEY] = result.lattice
        if result.reconstruction is not None:
            self.show_structure(result, result.reconstruction.structure.composition.reduced_formula, agent)
        self.ask(result)
        lines = []
        if result.reconstruction is not None:
            lines.append(f"structure: {result.reconstruction.structure.composition.reduced_formula}")
        if result.decision is not None:
            lines.append(result.decision.line())
        if result.energy is not None:
            e = result.energy.formation_energy_per_atom_eV
            lines.append(f"formation energy: {e:.4f} eV/atom ({result.energy.model})" if e is not None
                         else f"energy: {result.energy.energy_per_atom_eV:.4f} eV/atom ({result.energy.model})")
        for text in result.warnings:
            lines.append(f"⚠ {text}")
        if lines:
            self.transcript.appendPlainText("\n" + "\n".join(lines))


def build_candidate(result, index: int, progress):
    """The pipeline's reconstruct stage on candidate ``index`` of ``result``, then its energy when the
    run has an energy model; returns ``result`` (its verdict now on that candidate)."""
    from ...pipeline import run_stage

    result.config = result.config.replace(candidate_index=index)
    run_stage(result, "reconstruct", progress=lambda f, m="": progress(0.3 * f, m))
    if result.config.energy_model != "none":
        run_stage(result, "energy", progress=lambda f, m="": progress(0.3 + 0.7 * f, m))
    return result


class _Question(QWidget):
    """The agent's question when the image does not decide: the distinct answers, and a button to
    build the one the user chooses. Hidden otherwise."""

    def __init__(self, on_build, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.options = QComboBox()
        self.build = QPushButton("Build the chosen structure")
        self.build.clicked.connect(lambda: on_build(self.options.currentData()))
        for w in (self.label, self.options, self.build):
            layout.addWidget(w)
        self.hide()

    def offer(self, options: list, verdict: str) -> None:
        self.options.clear()
        for index, text in options:
            self.options.addItem(text, index)
        self.label.setText(f"<b>The image does not decide</b> ({html.escape(verdict)}). Choose the structure to "
                           "build; the verdict then refers to it.")
        self.setVisible(bool(options))
