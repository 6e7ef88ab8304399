"""Session files (``<name>.automat.json``): what a napari session needs to come back after a restart.

A session file holds:

- ``image``: the micrograph's file (absolute and relative to the session file), the signal of a
  multi-signal file, the frame of a stack, its pixel size [Å] and calibration (a pixel size the user
  set is re-applied), and the region analysed (``roi`` / ``roi_polygon``, full-image pixels). An image
  that has no file (made in memory) is written next to the session as a calibrated TIFF.
- ``columns``: the columns layer as it was (possibly edited by hand): positions in the layer's pixel
  frame, where the layer lies over the full image (``origin_px``), every feature with its provenance
  (``detected``, ``moved``, ``added``), and whether the points were edited after the result was made.
- ``result``: the ``result.json`` document of the session (``PipelineResult.to_dict``), or null.

:func:`restore_result` rebuilds a ``PipelineResult`` from it, so the same bundle can be saved again.
No napari here; the layer glue is in ``_napari/session_io.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..model import AutomatError, Columns, Micrograph

SUFFIX = ".automat.json"
KIND = "napari-automat session"
VERSION = 1

PathLike = Union[str, os.PathLike]


@dataclass
class SessionImage:
    """The image of a session (``path`` None: it had no file)."""

    path: Optional[str]
    pixel_size_A: tuple[float, float]
    calibrated: bool
    #: The signal of a multi-signal file (``metadata['title']`` or ``['detector']``), None for one signal.
    signal: Optional[str] = None
    #: The frame of a stack the columns were measured on, None for a 2D image or averaged frames.
    frame: Optional[int] = None
    #: ``(y0, y1, x0, x1)`` [px] of the analysed crop, its polygon, and what chose it (``user``, ``crystal``).
    roi: Optional[list] = None
    roi_polygon: Optional[list] = None
    roi_source: Optional[str] = None
    #: Name of the image layer it was shown as.
    layer_name: Optional[str] = None
    #: The file's pixel size was replaced by the user's (re-applied on restore).
    pixel_size_set_by_user: bool = False

    @classmethod
    def of(cls, micrograph: Micrograph, layer_name: Optional[str] = None) -> "SessionImage":
        md = micrograph.metadata
        frame = md.get("frame")
        return cls(str(Path(micrograph.path).resolve()) if micrograph.path else None,
                   tuple(float(v) for v in micrograph.pixel_size_A), bool(micrograph.calibrated),
                   md.get("title") or md.get("detector"),
                   None if frame is None else int(frame), md.get("roi"), md.get("roi_polygon"), md.get("roi_source"),
                   layer_name, bool(md.get("pixel_size_set_by_user") or md.get("calibration_note") == "set by user"))

    @property
    def origin_px(self) -> np.ndarray:
        return np.zeros(2) if self.roi is None else np.array([self.roi[0], self.roi[2]], float)


@dataclass
class SessionColumns:
    """A columns layer: its points [px, layer frame], features and provenance, and placement."""

    name: str
    columns: Columns
    #: ``(y, x)`` [px] of the layer's frame in the full image (napari ``translate`` / scale).
    origin_px: tuple[float, float] = (0.0, 0.0)
    #: The points were changed by hand after ``result`` was made (its structure is from the old points).
    edited_after_result: bool = False


@dataclass
class SessionDocument:
    image: Optional[SessionImage] = None
    columns: Optional[SessionColumns] = None
    #: The ``result.json`` document, or None before any result.
    result: Optional[dict] = None
    software_version: str = ""
    #: Where the document was read from (not written).
    path: Optional[Path] = field(default=None, compare=False)


def session_path(path: PathLike) -> Path:
    """``path`` with the ``.automat.json`` ending (added when missing)."""
    path = Path(path)
    if path.name.lower().endswith(SUFFIX):
        return path
    if path.suffix.lower() == ".json":
        path = path.with_suffix("")
    return path.with_name(path.name + SUFFIX)


def is_session_path(path: PathLike) -> bool:
    return str(path).lower().endswith(SUFFIX)


def to_dict(doc: SessionDocument, session_file: Optional[Path] = None) -> dict:
    from .. import __version__
    from .write import to_jsonable

    image = None
    if doc.image is not None:
        image = to_jsonable(doc.image.__dict__)
        image["relative_path"] = None
        if doc.image.path and session_file is not None:
            try:
                image["relative_path"] = os.path.relpath(doc.image.path, Path(session_file).resolve().parent)
            except ValueError:  # another drive (Windows)
                pass
    columns = None
    if doc.columns is not None:
        columns = {"name": doc.columns.name, "origin_px": [float(v) for v in doc.columns.origin_px],
                   "edited_after_result": bool(doc.columns.edited_after_result),
                   **doc.columns.columns.to_dict(full=True)}
    return {"kind": KIND, "version": VERSION, "software_version": __version__, "image": image,
            "columns": to_jsonable(columns), "result": to_jsonable(doc.result)}


def write_session(path: PathLike, doc: SessionDocument, image: Optional[Micrograph] = None) -> Path:
    """Write ``doc`` to ``path`` (``.automat.json`` added when missing), atomically. ``image``: the
    micrograph of a session image without a file, written beside it as ``<name>.image.tif``."""
    from .write import write_json, write_tiff_calibrated

    path = session_path(path)
    if doc.image is not None and not doc.image.path and image is not None and np.asarray(image.data).size:
        tif = path.with_name(path.name[:-len(SUFFIX)] + ".image.tif")
        info = {k: v for k, v in image.metadata.items() if k in ("voltage_kV", "signal", "detector")}
        write_tiff_calibrated(tif, image.data, image.pixel_size_A, info)
        doc.image.path = str(tif.resolve())
    write_json(path, to_dict(doc, path))
    return path


def read_session(path: PathLike) -> SessionDocument:
    """The document of a session file; an :class:`AutomatError` saying what is wrong otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AutomatError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise AutomatError(f"{path.name} is not a session file: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise AutomatError(f"{path.name} is not a napari-automat session file")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise AutomatError(f"{path.name} is a session of version {doc.get('version')!r}; this napari-automat "
                           f"reads version {VERSION} and older: update napari-automat")
    try:
        return SessionDocument(_image(doc.get("image"), path), _columns(doc.get("columns")), doc.get("result"),
                               str(doc.get("software_version", "")), path)
    except (KeyError, TypeError, ValueError) as exc:
        raise AutomatError(f"{path.name} is a damaged session file ({type(exc).__name__}: {exc})") from None


def _image(d: Optional[dict], session_file: Path) -> Optional[SessionImage]:
    if d is None:
        return None
    path = d.get("path")
    relative = d.get("relative_path")
    if relative:  # the session and its image moved together
        candidate = (session_file.resolve().parent / relative).resolve()
        if candidate.is_file() or not (path and Path(path).is_file()):
            path = str(candidate) if candidate.is_file() else path
    return SessionImage(path, tuple(float(v) for v in d["pixel_size_A"]), bool(d["calibrated"]), d.get("signal"),
                        None if d.get("frame") is None else int(d["frame"]), d.get("roi"), d.get("roi_polygon"),
                        d.get("roi_source"), d.get("layer_name"), bool(d.get("pixel_size_set_by_user", False)))


def _columns(d: Optional[dict]) -> Optional[SessionColumns]:
    if d is None:
        return None
    return SessionColumns(str(d.get("name") or "columns"), Columns.from_dict(d),
                          tuple(float(v) for v in d.get("origin_px", (0.0, 0.0))), bool(d.get("edited_after_result")))


# --- the image and the result back ------------------------------------------------------------

def load_image(image: SessionImage) -> Micrograph:
    """The session's whole image (every frame of a stack), with the pixel size the session had.
    An :class:`AutomatError` when its file is gone or unreadable."""
    from .read import apply_pixel_size, read_signals

    if not image.path:
        raise AutomatError("the session's image had no file")
    if not Path(image.path).is_file():
        raise AutomatError(f"the session's image {image.path} is not there any more")
    signals = read_signals(image.path)
    chosen = signals[0]
    if image.signal and len(signals) > 1:
        chosen = next((m for m in signals if (m.metadata.get("title") or m.metadata.get("detector")) == image.signal),
                      chosen)
    if not np.allclose(chosen.pixel_size_A, image.pixel_size_A, rtol=1e-6) or (image.calibrated and not chosen.calibrated):
        chosen = apply_pixel_size(chosen, image.pixel_size_A)
    return chosen


def analysed_micrograph(image: SessionImage, full: Optional[Micrograph]) -> Micrograph:
    """The micrograph the session's columns are measured on: ``full``'s frame, cropped to the region;
    without ``full`` (no image) an empty stand-in with the session's calibration and region."""
    if full is None:
        md = {k: v for k, v in (("roi", image.roi), ("roi_polygon", image.roi_polygon),
                                ("roi_source", image.roi_source)) if v is not None}
        return Micrograph(np.zeros((0, 0), np.float32), image.pixel_size_A, image.calibrated, image.path, md)
    mg = full
    if mg.is_stack:
        if image.frame is not None:
            mg = mg.frame(image.frame)
        else:
            from .stack import average_frames

            mg = average_frames(mg)
    if image.roi_polygon is not None:
        from ..pipeline import polygon_crop

        return polygon_crop(mg, image.roi_polygon)
    if image.roi is not None:
        return mg.crop(image.roi, **({"roi_source": image.roi_source} if image.roi_source else {}))
    return mg


def restore_result(doc: SessionDocument, micrograph: Micrograph):
    """A ``PipelineResult`` on ``micrograph`` (:func:`analysed_micrograph`) with the session's columns
    and what ``result.json`` holds: configuration, lattice, candidates (without their 3D templates:
    choosing another candidate needs a new retrieval), structure, energy, properties, planner,
    warnings. When the points were edited after the result, what was derived from the old points is
    left out (as the step widgets do); the candidates stay."""
    from ..config import PipelineConfig
    from ..model import EnergyReport, Lattice2D, Reconstruction, TemplateHit
    from ..pipeline import PipelineResult

    r = doc.result or {}
    config = PipelineConfig.from_dict(r.get("config") or {})
    image = doc.image
    if image is not None and image.roi_source == "user" and config.roi is None and config.roi_polygon is None:
        config = config.replace(**({"roi_polygon": image.roi_polygon} if image.roi_polygon is not None
                                   else {"roi": tuple(image.roi)}))
    result = PipelineResult(micrograph, config)
    if doc.columns is not None:
        result.columns = doc.columns.columns
        result.columns_source = ((r.get("columns") or {}).get("source", "detected")
                                 if not doc.columns.edited_after_result else "user")
        if result.columns_source == "detected" and any(p != "detected" for p in result.columns.provenance):
            result.columns_source = "user"
    result.hits = [TemplateHit.from_dict(h) for h in r.get("retrieval") or []]
    result.denoise_info = dict(r.get("denoise") or {})
    result.agent = r.get("agent")
    result.warnings = list(r.get("warnings") or [])
    result.timings_s = dict(r.get("timings_s") or {})
    result.domains = r.get("domains")
    if doc.columns is not None and doc.columns.edited_after_result:
        return result
    if r.get("lattice2d"):
        lattice = Lattice2D.from_dict(r["lattice2d"])
        lattice.origin_px = np.asarray(lattice.origin_px, float) - result.origin_px
        result.lattice = lattice
    if r.get("structure"):
        result.reconstruction = Reconstruction.from_dict(r["structure"])
        rec = result.reconstruction
        result.chosen_index = next((i for i, h in enumerate(result.hits) if h.template_id == rec.template_id
                                    and tuple(h.zone_axis) == tuple(rec.zone_axis)), 0)
    if r.get("energy"):
        result.energy = EnergyReport.from_dict(r["energy"])
    result.properties = r.get("properties")
    return result
