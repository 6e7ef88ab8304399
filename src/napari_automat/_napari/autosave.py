"""Autosave of hand-edited columns: nothing the user edited is lost on a crash.

When the points of a columns layer are added, moved or deleted, the layer is written
:data:`DELAY_MS` after the last edit (a Qt single-shot timer, restarted by each edit) as a columns
table that the columns reader opens (File ▸ Open): ``<stem>.<layer>.autosave.columns.csv`` beside
the session file the layer came from, else beside its image, else (or when that folder is not
writable) in the user cache dir (``$AUTOMAT_CACHE_DIR`` overrides it) under ``autosave/``;
``$AUTOMAT_AUTOSAVE_DIR`` sends every autosave to one folder (tests set it).
Positions are in the full image's pixels, as the columns writer writes them. The path goes into the
layer's metadata (:data:`AUTOSAVE_KEY`) and the viewer's status bar.
"""

from __future__ import annotations

import os
import re
import weakref
from pathlib import Path
from typing import Optional

from .layers import MICROGRAPH_KEY, OVERLAY_KEY, STRUCTURE_KEY

#: Milliseconds after the last edit before the layer is written.
DELAY_MS = 2000
#: Layer metadata key: the path of the last autosave.
AUTOSAVE_KEY = "automat_autosave"
SUFFIX = ".autosave.columns.csv"

_VIEWERS: "weakref.WeakSet" = weakref.WeakSet()
_WATCHED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def is_editable_columns(layer) -> bool:
    """A 2D Points layer of atom columns (provenance tracked), not a structure or an overlay."""
    from napari.layers import Points

    return (isinstance(layer, Points) and layer.ndim == 2 and "provenance" in layer.features
            and STRUCTURE_KEY not in layer.metadata and OVERLAY_KEY not in layer.metadata)


def install(viewer) -> None:
    """Watch every columns layer of ``viewer``, now and when added (idempotent)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # a plugin widget's viewer is a proxy (new per call)
    if viewer in _VIEWERS:
        return
    _VIEWERS.add(viewer)
    for layer in list(viewer.layers):
        watch(layer, viewer)
    viewer.layers.events.inserted.connect(lambda event: watch(event.value, viewer))
    viewer.layers.events.removed.connect(lambda event: _forget(event.value))


def install_on_current_viewer() -> None:
    """:func:`install` on napari's current viewer, when there is one (readers have no viewer)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer, no autosave to set up
        return
    if viewer is not None:
        install(viewer)


def watch(layer, viewer) -> None:
    """Autosave ``layer`` after edits of its points (only columns layers; idempotent). Points moved
    or added are marked so (``layers.track_provenance``) also on layers napari's File ▸ Open added."""
    layer, viewer = getattr(layer, "__wrapped__", layer), getattr(viewer, "__wrapped__", viewer)
    if layer in _WATCHED or not is_editable_columns(layer):
        return
    from .layers import track_provenance

    track_provenance(layer)
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.setSingleShot(True)
    timer.setInterval(DELAY_MS)
    layer_ref, viewer_ref = weakref.ref(layer), weakref.ref(viewer)
    timer.timeout.connect(lambda: _timeout(layer_ref, viewer_ref))

    def on_data(event) -> None:
        if str(getattr(event, "action", "")) in ("added", "removed", "changed"):
            timer.setInterval(DELAY_MS)
            timer.start()

    layer.events.data.connect(on_data)
    _WATCHED[layer] = timer


def edited(layer) -> None:
    """Say that the user changed ``layer`` other than through its points (labels): autosave it after
    the pause, as after a point edit."""
    timer = _WATCHED.get(getattr(layer, "__wrapped__", layer))
    if timer is not None:
        timer.setInterval(DELAY_MS)
        timer.start()


def pending(layer) -> bool:
    """Whether an autosave of ``layer`` is waiting for its timer."""
    timer = _WATCHED.get(layer)
    return timer is not None and timer.isActive()


def _forget(layer) -> None:
    timer = _WATCHED.get(layer)
    if timer is not None and timer.isActive():  # a layer deleted with unsaved edits is still written
        timer.stop()
        save_now(layer)


def _timeout(layer_ref, viewer_ref) -> None:
    layer = layer_ref()
    if layer is not None:
        save_now(layer, viewer_ref())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:60] or "columns"


def _writable(folder: Path) -> bool:
    """A folder one can write in, and not the package's own (the bundled sample lives there)."""
    package = Path(__file__).resolve().parents[1]
    inside = folder.resolve() == package or package in folder.resolve().parents
    return not inside and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def cache_folder() -> Path:
    root = os.environ.get("AUTOMAT_CACHE_DIR")
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("napari-automat")
    return Path(root) / "autosave"


def autosave_name(stem: Optional[str], layer_name: str) -> str:
    """``<stem>.<layer>.autosave.columns.csv``, without the stem when the layer's name starts with it."""
    label = _slug(layer_name)
    if stem and label.startswith(_slug(stem)):  # "sto columns" of sto.tif: not "sto.sto-columns"
        stem = None
    return f"{_slug(stem) + '.' if stem else ''}{label}{SUFFIX}"


def newer_autosave(session_file: Path, layer_name: str) -> Optional[Path]:
    """An autosave of the layer ``layer_name`` of ``session_file`` written after the session (beside
    it, in ``$AUTOMAT_AUTOSAVE_DIR`` or in the cache folder), else None."""
    session_file = Path(session_file)
    name = autosave_name(session_file.name[: -len(".automat.json")], layer_name)
    folders = [session_file.parent, cache_folder()]
    if os.environ.get("AUTOMAT_AUTOSAVE_DIR"):
        folders.insert(0, Path(os.environ["AUTOMAT_AUTOSAVE_DIR"]))
    try:
        saved = session_file.stat().st_mtime
        return next((f / name for f in folders if (f / name).is_file() and (f / name).stat().st_mtime > saved), None)
    except OSError:
        return None


def autosave_path(layer) -> Path:
    """Where ``layer`` is autosaved (see the module docstring)."""
    from .session import SESSION_KEY
    from .session_io import SESSION_FILE_KEY

    stem, folder = None, None
    session_file = layer.metadata.get(SESSION_FILE_KEY)
    if session_file:
        p = Path(session_file)
        stem, folder = p.name[: -len(".automat.json")] if p.name.endswith(".automat.json") else p.stem, p.parent
    else:
        session = layer.metadata.get(SESSION_KEY)
        mg = session.micrograph if session is not None else layer.metadata.get(MICROGRAPH_KEY)
        path = getattr(mg, "path", None)
        if path:
            stem, folder = Path(path).stem, Path(path).parent
    name = autosave_name(stem, layer.name)
    if os.environ.get("AUTOMAT_AUTOSAVE_DIR"):
        return Path(os.environ["AUTOMAT_AUTOSAVE_DIR"]) / name
    if folder is None or not _writable(folder):
        folder = cache_folder()
    return folder / name


def save_now(layer, viewer=None) -> Optional[Path]:
    """Write ``layer`` to its autosave path now; returns it (None, with the reason in the status bar,
    when writing failed: an autosave never raises into the event loop)."""
    from .writer import write_columns

    path = autosave_path(layer)
    meta = {"scale": tuple(layer.scale[-2:]), "translate": tuple(layer.translate[-2:]), "features": layer.features}
    try:
        write_columns(str(path), layer.data, meta)
    except Exception as exc:  # noqa: BLE001 - e.g. the cache folder is not writable either
        fallback = cache_folder() / path.name
        try:
            if fallback == path:
                raise
            write_columns(str(fallback), layer.data, meta)
            path = fallback
        except Exception:  # noqa: BLE001
            if viewer is not None:
                viewer.status = f"⚠ autosave of '{layer.name}' failed: {exc}"
            return None
    layer.metadata[AUTOSAVE_KEY] = str(path)
    if viewer is not None:
        viewer.status = f"'{layer.name}' autosaved to {path}"
    return path
