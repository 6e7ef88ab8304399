"""MATLAB ``.mat`` micrographs, as StatSTEM and QEM save them.

MATLAB v4–v7 files are read with :func:`scipy.io.loadmat`, v7.3 files (HDF5) with h5py; v7.3
stores arrays column-major, so every array is transposed back to MATLAB's ``(row, column)`` =
``(y, x)``. The image is StatSTEM's ``obs`` field when there is one (``input.obs``), else the
largest real 2D numeric array of at least ``MIN_SIZE_PX`` per side, wherever it is nested. Its
pixel size is a ``dx`` (or ``pixel_size``) number in Å/px, StatSTEM's unit, taken from the
image's own struct first, then from the enclosing ones. ``dx = 1`` is StatSTEM's placeholder for
an unknown pixel size and leaves the image uncalibrated.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ..model import AutomatError, Micrograph
from .read import MIN_SIZE_PX, _as_image_array, _recognise_signal, validate_image

#: Field names (lower case, letters and digits only) that hold the pixel size [Å/px].
PIXEL_SIZE_KEYS = ("dx", "pixelsize", "pixelsizea")
#: Field name of the image in StatSTEM's input struct; preferred over any larger array.
IMAGE_KEY = "obs"
_NUMERIC_CLASSES = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}


def read_mat(path: Path) -> Micrograph:
    """The image and pixel size [Å/px] of a ``.mat`` file (see the module docstring)."""
    import h5py

    if h5py.is_hdf5(path):
        entries, fmt = _entries_v73(path), "mat-v7.3"
    else:
        import scipy.io

        contents = scipy.io.loadmat(str(path), simplify_cells=True)
        entries = list(_entries_v5({k: v for k, v in contents.items() if not k.startswith("__")}, ()))
        fmt = "mat"
    name, image = _pick_image(entries, path)
    image = _as_image_array(image)
    validate_image(image)
    size, note = _pixel_size(entries, name)
    metadata: dict[str, Any] = {"format": fmt, "variable": _dotted(name)}
    if note:
        metadata["calibration_note"] = note
    if size is not None:
        metadata.update(original_units=["Å", "Å"], original_scale=list(size))
    for text in (".".join(name), path.stem):
        signal = _recognise_signal(text)
        if signal:
            metadata["signal"] = signal
            break
    if size is None:
        return Micrograph(image, (1.0, 1.0), False, str(path), metadata)
    return Micrograph(image, size, True, str(path), metadata)


# ---------------------------------------------------------------------------------------------
# a file's variables as (name path, kind, value): "array" (an ndarray), "object" (its class name)
# or "other" (what it is, in words)


def _entries_v5(tree: Any, name: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    from scipy.io.matlab import MatlabFunction, MatlabOpaque

    if isinstance(tree, dict):  # a struct (simplify_cells turns structs into dicts)
        for key, value in tree.items():
            yield from _entries_v5(value, name + (str(key),))
    elif isinstance(tree, list):  # a cell array or a struct array
        for i, value in enumerate(tree):
            yield from _entries_v5(value, name[:-1] + (f"{name[-1]}{{{i + 1}}}",))
    elif isinstance(tree, (MatlabOpaque, MatlabFunction)):
        yield name, "object", _opaque_class(tree)
    elif isinstance(tree, np.ndarray) and tree.dtype == object:
        yield from _entries_v5(list(tree.flat), name)
    elif isinstance(tree, (np.ndarray, np.number, int, float)) and not isinstance(tree, bool):
        arr = np.asarray(tree)
        yield (name, "array", arr) if np.issubdtype(arr.dtype, np.number) else (name, "other", "not numeric")
    else:
        yield name, "other", "text" if isinstance(tree, str) else "not numeric"


def _opaque_class(value: np.ndarray) -> str:
    """The class name scipy keeps for a MATLAB class object (field ``s2`` up to scipy 1.17,
    ``_Class`` after), or '' when it has none."""
    names = value.dtype.names or ()
    for field in ("_Class", "s2"):
        if field in names and value.size and isinstance(value.flat[0][field], bytes):
            return value.flat[0][field].decode(errors="replace")
    return ""


def _entries_v73(path: Path) -> list[tuple[tuple[str, ...], str, Any]]:
    import h5py

    found: list[tuple[tuple[str, ...], str, Any]] = []

    def visit(key: str, obj: Any) -> None:
        if key.startswith("#") or not isinstance(obj, h5py.Dataset):  # '#refs#', '#subsystem#': MATLAB internals
            return
        cls = obj.attrs.get("MATLAB_class", b"")
        cls = cls.decode() if isinstance(cls, bytes) else str(cls)
        name = tuple(key.split("/"))
        if "MATLAB_object_decode" in obj.attrs and cls not in _NUMERIC_CLASSES | {"char", "logical", "cell"}:
            found.append((name, "object", cls))
        elif cls in _NUMERIC_CLASSES and obj.dtype.kind in "iuf" and not obj.attrs.get("MATLAB_empty", 0):
            found.append((name, "array", np.transpose(obj[()])))
        else:
            found.append((name, "other", "text" if cls == "char" else cls or "not numeric"))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


# ---------------------------------------------------------------------------------------------
# image and pixel size


def _pick_image(entries: list, path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    images = [(name, np.squeeze(value)) for name, kind, value in entries if kind == "array"]
    images = [(name, value) for name, value in images
              if value.ndim == 2 and min(value.shape) >= MIN_SIZE_PX and not np.iscomplexobj(value)]
    if images:
        return max(images, key=lambda item: (_key(item[0][-1]) == IMAGE_KEY, item[1].size))
    objects = [(name, cls) for name, kind, cls in entries if kind == "object"]
    if objects:
        name, cls = objects[0]
        what = f"'{_dotted(name)}' is a MATLAB {cls + ' ' if cls else ''}class object"
        raise AutomatError(f"{path.name} holds no plain 2D image ({what}, which only MATLAB can read): in MATLAB, "
                           "save the image and pixel size as plain variables, e.g. obs = input.obs; dx = input.dx; "
                           "save('image.mat', 'obs', 'dx')")
    seen = ", ".join(f"{_dotted(name)} {_describe(kind, value)}" for name, kind, value in entries[:6])
    raise AutomatError(f"{path.name} holds no 2D image of at least {MIN_SIZE_PX}x{MIN_SIZE_PX} pixels "
                       f"({seen or 'no variables'}{', ...' if len(entries) > 6 else ''})")


def _pixel_size(entries: list, image_name: tuple[str, ...]) -> tuple[Optional[tuple[float, float]], Optional[str]]:
    """Pixel size (y, x) [Å/px] from the ``dx`` nearest to the image, and an optional note."""
    found = []
    for name, kind, value in entries:
        if kind != "array" or _key(name[-1]) not in PIXEL_SIZE_KEYS:
            continue
        values = [float(v) for v in np.ravel(value)]
        if len(values) in (1, 2) and all(math.isfinite(v) and v > 0 for v in values):
            pair = values if len(values) == 2 else values * 2
            found.append((_shared_structs(name, image_name), -len(name), name, pair))
    if not found:
        return None, None
    _, _, name, values = max(found)
    if values == [1.0, 1.0]:
        return None, (f"{_dotted(name)} = 1, StatSTEM's placeholder for an unknown pixel size: ignored, "
                      "set the pixel size")
    return (values[0], values[1]), f"{_dotted(name)} read as Å per pixel (StatSTEM's unit)"


def _shared_structs(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many enclosing structs the variables ``a`` and ``b`` have in common."""
    shared = 0
    for x, y in zip(a[:-1], b[:-1]):
        if x != y:
            break
        shared += 1
    return shared


def _key(field: str) -> str:
    return re.sub(r"[^a-z0-9]", "", field.lower())


def _dotted(name: tuple[str, ...]) -> str:
    return ".".join(name) or "(unnamed)"


def _describe(kind: str, value: Any) -> str:
    if kind == "array":
        return "(" + "x".join(str(s) for s in np.shape(value)) + ")" if np.ndim(value) else "(number)"
    if kind == "object":
        return f"({value or 'class'} object)"
    return f"({value})"
