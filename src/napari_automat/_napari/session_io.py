"""Results and sessions in and out of napari: the layer glue over ``PipelineResult.save`` and
``io.session_file`` (no Qt here; the buttons are in ``widgets/_results.py``).

- :func:`session_for_saving`: a columns layer's session with the points as they are now, so what is
  saved is what the user sees (edited points included).
- :func:`save_session` / :func:`session_layers`: a ``<name>.automat.json`` from a columns layer and
  back as layers (image, region used, columns with their session, the structure); also napari's
  File ▸ Open through :func:`get_session_reader`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..model import AutomatError, Micrograph
from .layers import (MICROGRAPH_KEY, STRUCTURE_KEY, analysed_region, columns_from_points_layer, columns_layer_data,
                     micrograph_layer_data, placed, region_layer_data, structure_layer_data)
from .session import SESSION_KEY, same_points

#: Layer metadata key: the session file a layer was restored from or saved to.
SESSION_FILE_KEY = "automat_session_file"
#: Metadata key of a restored structure layer: the ``result.json`` document it comes from.
RESULT_DOC_KEY = "automat_result_document"


def layer_origin_px(layer) -> np.ndarray:
    """``(y, x)`` [px] of a 2D layer's data frame in the full image (its translate over its scale)."""
    return np.asarray(layer.translate[-2:], float) / np.asarray(layer.scale[-2:], float)


def session_for_saving(layer, session) -> tuple[Any, bool]:
    """``(session, edited)``: ``session`` (a ``PipelineResult``) with the layer's current points.
    When the user changed the points after the session's columns were made, a copy with the edited
    points as the user's columns and without what was derived from the old ones (lattice, structure,
    energy, properties: a CIF in the bundle must come from the columns beside it); the candidates
    stay. The layer's own session is not changed."""
    from .session import new_session, layer_micrograph_of

    columns = columns_from_points_layer(layer)
    if session is None:
        session = new_session(layer_micrograph_of(layer, columns))
        session.columns, session.columns_source = columns, (
            "detected" if all(p == "detected" for p in columns.provenance) else "user")
        return session, False
    if same_points(session.columns, columns):
        if session.columns is not None and session.columns.count == columns.count:  # labels edited since
            session = copy.copy(session)
            session.columns = columns
        return session, False
    edited = copy.copy(session)
    edited.columns, edited.columns_source = columns, "user"
    edited.lattice = edited.first_pass = edited.reconstruction = edited.energy = edited.properties = None
    edited.readings = {}
    edited.warnings = list(session.warnings) + [
        "the columns were edited by hand after the structure was made: saved without a structure (run "
        "'Reconstruct' on them to make one)"] if session.reconstruction is not None else list(session.warnings)
    return edited, True


def save_results(layer, session, outdir) -> tuple[dict, bool]:
    """Write the CLI's bundle (``structure.cif``, ``result.json``, ``columns.csv``, ``overview.png``)
    of a columns layer's session, with its current points, into ``outdir``. Returns ``(paths, edited)``."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise AutomatError(f"{outdir} is a file, not a folder: choose a folder for the results")
    chosen, edited = session_for_saving(layer, session)
    try:
        return chosen.save(outdir), edited
    except OSError as exc:
        raise AutomatError(f"cannot write the results into {outdir}: {exc.strerror or exc}") from None


def image_of(layer, session) -> Optional[Micrograph]:
    """The full image behind a columns layer's session (no crop), or None without one."""
    mg = session.micrograph if session is not None else layer.metadata.get(MICROGRAPH_KEY)
    if not isinstance(mg, Micrograph):
        return None
    return mg


def save_session(path, layer, session=None, image_layer=None) -> Path:
    """Write ``<name>.automat.json`` for a columns layer (its points, features, provenance and
    placement), its session's image (file, signal, frame, pixel size, region) and result. An image
    without a file is written beside it (``<name>.image.tif``, the image layer's pixels)."""
    from ..io.session_file import SessionColumns, SessionDocument, SessionImage, write_session

    session = session if session is not None else layer.metadata.get(SESSION_KEY)
    saved, edited = session_for_saving(layer, session) if session is not None else (None, False)
    mg = image_of(layer, session)
    image, pixels = None, None
    if mg is not None and (mg.path or np.asarray(mg.data).size):
        image = SessionImage.of(mg, image_layer.name if image_layer is not None else None)
        if not mg.path:
            pixels = _full_pixels(mg, image_layer)
    elif image_layer is not None:
        from .layers import micrograph_from_layer

        full = micrograph_from_layer(image_layer)
        image, pixels = SessionImage.of(full, image_layer.name), full
    columns = SessionColumns(layer.name, columns_from_points_layer(layer), tuple(layer_origin_px(layer)), edited)
    result = session.to_dict() if session is not None else None
    if saved is not None and result is not None and edited:
        result["warnings"] = list(saved.warnings)
    try:
        return write_session(path, SessionDocument(image, columns, result), image=pixels)
    except OSError as exc:
        raise AutomatError(f"cannot write the session {path}: {exc.strerror or exc}") from None


def _full_pixels(mg: Micrograph, image_layer) -> Optional[Micrograph]:
    """The whole image of a session whose image has no file: the image layer's, else the micrograph
    itself unless it is a crop (then None: the session is saved without its image)."""
    if image_layer is not None and np.asarray(image_layer.data).ndim >= 2:
        from .layers import micrograph_from_layer

        full = micrograph_from_layer(image_layer)
        if "roi" not in mg.metadata or list(full.shape[-2:]) == list(mg.metadata.get("full_shape", [])[-2:]):
            return full
    return None if "roi" in mg.metadata else mg


def image_layer_of(viewer, layer, session=None):
    """The image layer a columns layer was measured on: the one it names (``automat_source_layer``),
    else one showing the same file, else one of the same shape as the session's (uncropped) image."""
    from napari.layers import Image

    images = [lay for lay in viewer.layers if isinstance(lay, Image)]
    named = layer.metadata.get("automat_source_layer")
    for lay in images:
        if lay.name == named:
            return lay
    mg = image_of(layer, session)
    if mg is None:
        return None
    for lay in images:
        stored = lay.metadata.get(MICROGRAPH_KEY)
        if mg.path and getattr(stored, "path", None) == mg.path:
            return lay
    shape = list(mg.metadata.get("full_shape", mg.shape))[-2:]
    return next((lay for lay in images if list(np.shape(lay.data))[-2:] == shape), None)


# --- back as layers -------------------------------------------------------------------------------

def session_layers(path) -> tuple[list[tuple], dict]:
    """The layers of a session file, bottom first: the image (when its file is there), the region
    used, the columns (with the rebuilt session: stages and 'Save results…' go on from it), the
    structure (hidden). Returns ``(layer data tuples, info)``; ``info`` has ``frame``, ``warnings``
    and the restored ``session``."""
    from ..io.session_file import analysed_micrograph, load_image, read_session, restore_result

    path = Path(path)
    doc = read_session(path)
    warnings, layers, full = [], [], None
    if doc.image is not None:
        try:
            full = load_image(doc.image)
        except AutomatError as exc:
            warnings.append(f"{exc}: the columns and the result are restored without it")
        if full is not None:
            data, kwargs, kind = micrograph_layer_data(full, name=doc.image.layer_name or None)
            layers.append((data, dict(kwargs, metadata={**kwargs["metadata"], SESSION_FILE_KEY: str(path)}), kind))
    session = None
    if doc.columns is not None or doc.result is not None:
        image = doc.image or _image_of_columns(doc)
        session = restore_result(doc, analysed_micrograph(image, full) if image is not None else
                                 Micrograph(np.zeros((0, 0), np.float32)))
        outline = analysed_region(session) if image is not None else None
        if outline is not None:
            layers.append(region_layer_data(outline, session.micrograph.pixel_size_A, name="region used"))
    if doc.columns is not None:
        columns = doc.columns.columns
        extra = {SESSION_KEY: session, SESSION_FILE_KEY: str(path)}
        if session is not None and session.image is not None:
            extra[MICROGRAPH_KEY] = session.analysed
        layers.append(placed(columns_layer_data(columns, name=doc.columns.name, **extra), doc.columns.origin_px))
    structure = (doc.result or {}).get("structure")
    if structure:
        from ..model import Reconstruction

        rec = Reconstruction.from_dict(structure)
        stale = doc.columns is not None and doc.columns.edited_after_result
        name = f"{rec.structure.composition.reduced_formula} structure" + (" (before the edits)" if stale else "")
        for data, kwargs, kind in structure_layer_data(rec.structure, name=name, **{
                RESULT_DOC_KEY: doc.result, SESSION_FILE_KEY: str(path),
                **({} if stale or session is None else {SESSION_KEY: session})}):
            layers.append((data, dict(kwargs, visible=False), kind))
    if doc.columns is not None:
        from .autosave import newer_autosave

        later = newer_autosave(path, doc.columns.name)
        if later is not None:
            warnings.append(f"'{doc.columns.name}' was edited after this session was saved: its autosave {later} "
                            "holds the later edits (open it with File ▸ Open)")
    if doc.columns is not None and doc.columns.edited_after_result and structure:
        warnings.append("the columns were edited after the structure was made: press 'Reconstruct' for a structure "
                        "from them")
    return layers, {"frame": doc.image.frame if doc.image is not None else None, "warnings": warnings,
                    "session": session, "document": doc}


def _image_of_columns(doc):
    """A stand-in image record for a session saved without an image (columns drawn by hand)."""
    from ..io.session_file import SessionImage

    c = doc.columns.columns
    return SessionImage(None, tuple(c.pixel_size_A), True)


def get_session_reader(path: Any) -> Optional[Callable[[Any], list]]:
    """:func:`read_session_file` for ``*.automat.json`` files, else None (never raises)."""
    try:
        from ..io.session_file import is_session_path

        paths = path if isinstance(path, (list, tuple)) else [path]
        return read_session_file if paths and all(is_session_path(p) for p in paths) else None
    except Exception:  # noqa: BLE001 - a plugin must not break opening other files
        return None


def read_session_file(path: Any) -> list[tuple]:
    """napari reader: the layers of each session file (File ▸ Open); autosave watches the columns."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    layers = []
    for p in paths:
        found, info = session_layers(p)
        layers += found
        for text in info["warnings"]:
            from napari.utils.notifications import show_warning

            show_warning(f"{Path(p).name}: {text}")
    from .autosave import install_on_current_viewer

    install_on_current_viewer()
    return layers


def open_session(viewer, path) -> tuple[list, dict]:
    """Add a session's layers to ``viewer`` (names made unique; provenance tracked; autosave on);
    the stack frame the session used is shown. Returns ``(layers, info)``."""
    from . import autosave
    from .layers import add_layer, unique_name

    found, info = session_layers(path)
    added = []
    for data, kwargs, kind in found:
        kwargs = dict(kwargs, name=unique_name(kwargs.get("name", kind), [layer.name for layer in viewer.layers]))
        added.append(add_layer(viewer, (data, kwargs, kind)))
    image = next((layer for layer in added if MICROGRAPH_KEY in layer.metadata and layer.data.ndim == 3
                  and STRUCTURE_KEY not in layer.metadata and getattr(layer, "rgb", False) is False), None)
    if image is not None and info["frame"] is not None:
        viewer.dims.set_current_step(viewer.dims.ndim - image.ndim, info["frame"])
    autosave.install(viewer)
    return added, info
