"""Write results atomically: text, JSON, CIF, column tables (CSV) and calibrated TIFF images.

Every writer goes to a temporary file in the destination folder and then ``os.replace``-s it,
so a reader never sees a half-written file and an interrupted run leaves the old file intact.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from ..model import FLAT_FEATURES, AutomatError, Columns

#: Columns of the atom-column table, in file order.
COLUMNS_CSV_HEADER = ("y_px", "x_px", "y_A", "x_A", *FLAT_FEATURES)

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars/arrays to numbers/lists, NaN/inf to None,
    paths to strings, objects with ``to_dict`` through it."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (numpy types converted, NaN/inf as null) atomically."""
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_cif(path: PathLike, structure: Any, symprec: float = 0.1, comments: Sequence[str] = ()) -> Path:
    """Write a pymatgen ``Structure`` as CIF with its space group found at ``symprec`` [Å].

    The structure is symmetrised (refined) at that tolerance; if symmetry analysis fails the
    structure is written as given in P1. ``comments`` go first, as ``#`` lines.
    """
    from pymatgen.io.cif import CifWriter

    try:
        text = str(CifWriter(structure, symprec=symprec))
    except Exception:
        text = str(CifWriter(structure))
    header = "".join(f"# {' '.join(str(line).split())}\n" for line in comments)
    return write_text_atomic(path, header + text)


def write_columns_csv(path: PathLike, columns: Columns) -> Path:
    """Write atom columns as CSV with :data:`COLUMNS_CSV_HEADER` (NaN as empty cells)."""
    pos_A = columns.positions_A
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS_CSV_HEADER)
    flat = columns.flat_features()
    convert = {"float": _cell, "int": int, "str": str}
    for i in range(len(columns)):
        writer.writerow([_cell(columns.positions_px[i, 0]), _cell(columns.positions_px[i, 1]),
                         _cell(pos_A[i, 0]), _cell(pos_A[i, 1])]
                        + [convert[kind](flat[name][i]) for name, (kind, _) in FLAT_FEATURES.items()])
    return write_text_atomic(path, buf.getvalue())


def read_columns_csv(path: PathLike, pixel_size_A: Optional[tuple[float, float]] = None) -> Columns:
    """Read a table written by :func:`write_columns_csv`.

    The pixel size [Å/px] is recovered from the ``_A`` and ``_px`` columns unless given
    (``(1, 1)`` when it cannot be recovered, e.g. an empty table).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except OSError as exc:
        raise AutomatError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    missing = {"y_px", "x_px"} - set(header)
    if missing:
        raise AutomatError(f"{path.name} is not a columns table: no {', '.join(sorted(missing))} column")
    try:
        pos = np.array([[_num(r["y_px"]), _num(r["x_px"])] for r in rows], dtype=float).reshape(-1, 2)
        pos_A = np.array([[_num(r.get("y_A")), _num(r.get("x_A"))] for r in rows], dtype=float).reshape(-1, 2)
        feats = {name: _read_feature(rows, name, kind) for name, (kind, _) in FLAT_FEATURES.items() if name in header}
    except ValueError as exc:
        raise AutomatError(f"{path.name}: bad number in the columns table ({exc})") from None
    if pixel_size_A is None:
        pixel_size_A = tuple(_ratio(pos_A[:, k], pos[:, k]) for k in (0, 1))
    return Columns.from_flat(pos, tuple(float(v) for v in pixel_size_A), feats)


def _read_feature(rows: list[dict], name: str, kind: str) -> list:
    """One feature of a columns table; empty cells are unknown (NaN, -1, or the default text)."""
    if kind == "float":
        return [_num(r.get(name)) for r in rows]
    if kind == "int":
        return [int(float(r[name])) if (r.get(name) or "").strip() else -1 for r in rows]
    fill = FLAT_FEATURES[name][1]
    return [r.get(name) or fill for r in rows]


def write_tiff_calibrated(path: PathLike, data: np.ndarray, pixel_size_A: Union[float, tuple[float, float]],
                          metadata: Optional[dict] = None) -> Path:
    """Write an ImageJ float32 TIFF, ``(y, x)`` or ``(frame, y, x)``, calibrated in nm per pixel.

    ``pixel_size_A`` is in Å/px (one number or ``(y, x)``); scalar ``metadata`` entries (e.g.
    ``voltage_kV``, ``signal``) go into the ImageJ description and are read back by
    :func:`~napari_automat.io.read.read_micrograph`.
    """
    import tifffile

    from .read import _pixel_pair

    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise AutomatError(f"expected a 2D image or a stack of 2D frames, got data of shape {arr.shape}")
    py_nm, px_nm = (v / 10.0 for v in _pixel_pair(pixel_size_A))
    info = {str(k): v for k, v in (metadata or {}).items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool) and "\n" not in str(v)}
    info["unit"] = "nm"
    if arr.ndim == 3:
        info["axes"] = "TYX"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, resolution=(1.0 / px_nm, 1.0 / py_nm), metadata=info)
    return Path(path)


def _cell(value: float) -> str:
    value = float(value)
    return repr(value) if math.isfinite(value) else ""


def _num(text: Optional[str]) -> float:
    return float(text) if text is not None and text.strip() else float("nan")


def _ratio(length_A: np.ndarray, length_px: np.ndarray) -> float:
    """Least-squares Å per pixel from paired coordinates (1.0 when undetermined)."""
    ok = np.isfinite(length_A) & np.isfinite(length_px)
    denom = float(np.sum(length_px[ok] ** 2))
    ratio = float(np.sum(length_A[ok] * length_px[ok]) / denom) if denom > 0 else float("nan")
    return ratio if math.isfinite(ratio) and ratio > 0 else 1.0
