"""The "Save results…", "Save session…" and "Open session…" buttons of the agent and reconstruct
widgets: file dialogs over ``session_io`` (tests call the ``save_results``/``save_session``/
``open_session`` methods with a path)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Optional

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QWidget

from ...model import AutomatError

SESSION_FILTER = "AutoMat sessions (*.automat.json);;All files (*)"


class ResultActions(QWidget):
    """Three buttons acting on what ``current()`` returns: ``(columns layer, session, image layer)``
    or ``None`` when there is nothing to save; messages go to ``say(text, error)``. ``opened(layers,
    info)`` is called after a session was opened."""

    def __init__(self, viewer, current: Callable[[], Optional[tuple]], say: Callable[[str, bool], None],
                 opened: Callable[[list, dict], None] = lambda layers, info: None, parent=None):
        super().__init__(parent)
        self.viewer, self._current, self._say, self._opened = viewer, current, say, opened
        self.save_results_button = QPushButton("Save results…")
        self.save_results_button.setToolTip("structure.cif, result.json, columns.csv (the points as they are now, "
                                            "edits included) and overview.png into a folder, as 'automat run' writes")
        self.save_session_button = QPushButton("Save session…")
        self.save_session_button.setToolTip("<name>.automat.json: the image, the region, the columns layer with your "
                                            "edits and the result, to reopen later (Open session…, or File ▸ Open)")
        self.open_session_button = QPushButton("Open session…")
        self.open_session_button.setToolTip("reopen a saved .automat.json session as layers")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for button in (self.save_results_button, self.save_session_button, self.open_session_button):
            row.addWidget(button)
        self.save_results_button.clicked.connect(self._save_results_dialog)
        self.save_session_button.clicked.connect(self._save_session_dialog)
        self.open_session_button.clicked.connect(self._open_session_dialog)
        self.update_enabled()

    def update_enabled(self, *_) -> None:
        """Saving is possible only when there is something to save."""
        current = self._current()
        for button in (self.save_results_button, self.save_session_button):
            button.setEnabled(current is not None)
            button.setToolTip(button.toolTip().split("\n")[0] + ("" if current is not None else
                                                                   "\nnothing to save yet: run the chain first"))

    def _default_dir(self) -> str:
        current = self._current()
        session = current[1] if current else None
        path = getattr(getattr(session, "micrograph", None), "path", None)
        return str(Path(path).parent) if path else ""

    # --- dialogs ---
    def _save_results_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save results into folder", self._default_dir())
        if folder:
            self.save_results(folder)

    def _save_session_dialog(self) -> None:
        current = self._current()
        stem = Path(current[1].micrograph.path).stem if current and current[1] is not None and \
            current[1].micrograph.path else "session"
        path, _ = QFileDialog.getSaveFileName(self, "Save session", str(Path(self._default_dir() or ".") /
                                                                      f"{stem}.automat.json"), SESSION_FILTER)
        if path:
            self.save_session(path)

    def _open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", self._default_dir(), SESSION_FILTER)
        if path:
            self.open_session(path)

    # --- actions (what tests call) ---
    def save_results(self, folder) -> Optional[dict]:
        from ..session_io import save_results

        current = self._current()
        if current is None:
            self._say("⚠ nothing to save yet: run the chain first", True)
            return None
        layer, session, _ = current
        try:
            paths, edited = save_results(layer, session, folder)
        except AutomatError as exc:
            self._say(f"⚠ {html.escape(str(exc))}", True)
            return None
        names = ", ".join(p.name for p in paths.values())
        note = ""
        if edited and session is not None and session.reconstruction is not None:
            note = ("<br>⚠ the columns were edited after the structure was made: saved them without a structure; "
                    "press 'Reconstruct' to make one from them")
        elif "cif" not in paths:
            note = ("<br>no structure from these columns yet: run 'Reconstruct' (after 'Retrieve templates' when the "
                    "layer has no candidates) to save a CIF")
        self._say(f"saved {names} of '{html.escape(layer.name)}' in {html.escape(str(folder))}{note}", bool(note))
        return paths

    def save_session(self, path) -> Optional[Path]:
        from ..session_io import SESSION_FILE_KEY, save_session

        current = self._current()
        if current is None:
            self._say("⚠ nothing to save yet: run the chain first", True)
            return None
        layer, session, image_layer = current
        try:
            written = save_session(path, layer, session, image_layer)
        except AutomatError as exc:
            self._say(f"⚠ {html.escape(str(exc))}", True)
            return None
        layer.metadata[SESSION_FILE_KEY] = str(written)  # autosaves go beside it from now on
        self._say(f"session saved to {html.escape(str(written))}", False)
        return written

    def open_session(self, path) -> Optional[list]:
        from ..session_io import open_session

        try:
            layers, info = open_session(self.viewer, path)
        except AutomatError as exc:
            self._say(f"⚠ {html.escape(str(exc))}", True)
            return None
        self._opened(layers, info)
        warn = "".join(f"<br>⚠ {html.escape(t)}" for t in info["warnings"])
        self._say(f"opened {html.escape(Path(path).name)}: {', '.join(html.escape(l.name) for l in layers)}{warn}",
                  bool(warn))
        self.update_enabled()
        return layers

