"""Pieces shared by the stage widgets: a layer chooser fed by viewer events and a widget base
that runs one core call at a time through :mod:`..worker`."""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import numpy as np

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...model import AutomatError, Cancelled
from .. import worker
from ..layers import add_layer, unique_name


class LayerCombo(QComboBox):
    """Chooser of the viewer's layers of one kind, re-derived from viewer events.

    ``kind`` is a napari layer class; ``accept(layer)`` filters further. A newly added matching
    layer becomes the choice unless ``follow_new`` is False. ``none_text`` adds a first entry
    meaning "no layer".
    """

    def __init__(self, viewer, kind: type, accept: Optional[Callable[[Any], bool]] = None,
                 none_text: Optional[str] = None, follow_new: bool = True, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._follow_new = follow_new
        self._viewer = viewer
        self._kind = kind
        self._accept = accept or (lambda layer: True)
        self._none_text = none_text
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.moved.connect(self.refresh)
        self.refresh()

    def matches(self, layer) -> bool:
        return isinstance(layer, self._kind) and self._accept(layer)

    def refresh(self, event=None) -> None:
        """Rebuild the list from the viewer, keeping the current choice when it still exists."""
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        if self._none_text is not None:
            self.addItem(self._none_text, None)
        for layer in reversed(list(self._viewer.layers)):  # top layer first, as in the layer list
            if self.matches(layer):
                self.addItem(layer.name, weakref.ref(layer))
        self.blockSignals(False)
        self._select(current)

    def _on_inserted(self, event) -> None:
        self.refresh()
        if self._follow_new and self.matches(event.value):
            self._select(event.value)

    def _select(self, layer) -> None:
        for i in range(self.count()):
            ref = self.itemData(i)
            if (ref() if ref is not None else None) is layer and layer is not None:
                if i != self.currentIndex():
                    self.setCurrentIndex(i)
                return
        if layer is not None and self.count():
            self.setCurrentIndex(0)
        self.currentIndexChanged.emit(self.currentIndex())

    def set_layer(self, layer) -> None:
        """Choose ``layer`` (it must be in the viewer and match)."""
        self.refresh()
        self._select(layer)

    def layer(self):
        """The chosen layer, or None (also when it has left the viewer)."""
        ref = self.currentData()
        layer = ref() if ref is not None else None
        return layer if layer is not None and layer in self._viewer.layers else None

    def showPopup(self) -> None:  # names may have changed since the last event
        self.refresh()
        super().showPopup()


class StageWidget(QWidget):
    """A form, a run/cancel button pair and a status line; runs one core call at a time."""

    run_text = "Run"

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Optional[worker.Job] = None
        self.form = QFormLayout()
        self.run_button = QPushButton(self.run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        outer = QVBoxLayout(self)
        outer.addLayout(self.form)
        outer.addLayout(buttons)
        outer.addWidget(self.status)
        #: where subclasses put results below the status line
        self.body = QVBoxLayout()
        outer.addLayout(self.body)
        outer.addStretch(1)
        self.setMinimumWidth(360)
        from .. import autosave

        autosave.install(napari_viewer)  # hand edits of columns layers are never lost

    # --- to override ---
    def run(self) -> None:
        """Start the stage (connected to the run button)."""
        raise NotImplementedError

    # --- helpers ---
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def start(self, func: Callable, *args, label: str, on_done: Callable[[Any], None], **kwargs) -> None:
        """Run ``func(*args, progress=…, **kwargs)`` off the GUI thread; ``on_done(result)`` after."""
        if self.busy:
            return
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.set_status(f"{label}…")
        self.job = worker.start(func, *args, label=label, on_done=on_done, on_error=self.failed,
                                on_finish=self._finished, **kwargs)

    def cancel(self) -> None:
        if self.busy:
            self.job.cancel()
            self.set_status("cancelling…")

    def _finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def failed(self, exc: BaseException) -> None:
        """Show an error in the status line; unexpected ones also go to napari's notifications
        with their traceback (and are re-raised when synchronous, so tests see them)."""
        if isinstance(exc, Cancelled):
            self.set_status("cancelled")
        elif isinstance(exc, AutomatError):
            self.set_status(f"⚠ {exc}", error=True)
        else:
            self.set_status(f"⚠ failed: {type(exc).__name__}: {exc}", error=True)
            if worker.SYNCHRONOUS:
                raise exc
            from napari.utils.notifications import notification_manager

            notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def chosen(self, combo: LayerCombo, what: str):
        """The layer chosen in ``combo``, or ``None`` after saying that a ``what`` layer is needed."""
        layer = combo.layer()
        if layer is None:
            self.set_status(f"⚠ no {what} layer", error=True)
        return layer

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #ff8a80;" if error else "")

    def add_layer(self, layer_data: tuple, like=None):
        """Add a LayerDataTuple; its name gets a `` [n]`` suffix when taken (nothing is replaced).

        ``like``: the layer it derives from, whose spatial units it takes (so units stay consistent
        when the user's image has none) and whose translate it adds to a 2D layer's (so a crop's
        layers stay over it).
        """
        data, kwargs, kind = layer_data
        kwargs = dict(kwargs, name=unique_name(kwargs.get("name", kind), [layer.name for layer in self.viewer.layers]))
        if like is not None and "units" in kwargs:
            n, source = len(kwargs["units"]), tuple(like.units)
            kwargs["units"] = source[-n:] if len(source) >= n else (source[-1],) * (n - len(source)) + source
        if like is not None and len(kwargs.get("scale", ())) == 2 and any(like.translate[-2:]):
            kwargs["translate"] = tuple(float(v) for v in np.add(kwargs.get("translate", (0, 0)), like.translate[-2:]))
        return add_layer(self.viewer, (data, kwargs, kind))


def unproxied(obj):
    """The object behind napari's ``PublicOnlyProxy`` (what a plugin widget's viewer returns: a new
    proxy per call, so a weak reference to it dies at once), else ``obj``."""
    return getattr(obj, "__wrapped__", obj)


def stored_settings():
    """The plugin settings (``napari_automat.settings``); a damaged file gives the defaults and a
    napari warning, never an exception."""
    import warnings

    from ...settings import load_settings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings()
    for w in caught:
        from napari.utils.notifications import show_warning

        show_warning(str(w.message))
    return settings


def remember(**values) -> list[str]:
    """Store settings that persist between runs (each valid one; never a secret). Returns what was
    not stored and why (also as a napari warning)."""
    import warnings

    from ...settings import load_settings, save_settings, settings_path

    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings()
        new = settings
        for key, value in values.items():
            try:
                new = new.changed(**{key: value})
            except AutomatError as exc:
                problems.append(f"not remembered: {exc}")
        if new != settings:
            try:
                save_settings(new)
            except OSError as exc:
                problems.append(f"cannot save the settings to {settings_path()}: {exc.strerror or exc}")
    problems += [str(w.message) for w in caught]
    if problems:
        from napari.utils.notifications import show_warning

        show_warning("; ".join(problems))
    return problems


def current_frame(viewer, layer) -> Optional[int]:
    """The frame of a stack layer the viewer shows now (None for a 2D layer)."""
    if layer.data.ndim < 3 or getattr(layer, "rgb", False):
        return None
    return int(viewer.dims.current_step[viewer.dims.ndim - layer.ndim])


def fmt(value: Optional[float], spec: str = ".3f", unit: str = "") -> str:
    """A number for a label, or an em dash for missing/NaN."""
    if value is None or value != value:
        return "—"
    return f"{value:{spec}}{(' ' + unit) if unit else ''}"


def layer_micrograph(viewer, layer):
    """The micrograph of an image layer; for a stack, the frame the viewer shows."""
    from ..layers import micrograph_from_layer

    return micrograph_from_layer(layer, current_frame(viewer, layer))


def double_spin(value: float, low: float, high: float, step: float, decimals: int = 2, suffix: str = "",
                special: str = ""):
    """A QDoubleSpinBox; ``special`` is shown instead of the minimum value (e.g. 'auto')."""
    from qtpy.QtWidgets import QDoubleSpinBox

    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    if special:
        box.setSpecialValueText(special)
    return box
