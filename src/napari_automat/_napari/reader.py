"""npe2 reader: STEM micrographs (dm3/dm4, emd, ser/emi, mrc, tif, hspy/hdf5, mat, png/jpg) as image
layers with scale = pixel size [Å] and the :class:`~napari_automat.model.Micrograph` in metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional


def get_reader(path: Any) -> Optional[Callable[[Any], list]]:
    """The reader function when AutoMat can read ``path`` (a path or list of paths), else None.

    Never raises: napari asks every plugin about every path.
    """
    try:
        from ..io.read import supported_path

        return read_layers if supported_path(path) else None
    except Exception:  # noqa: BLE001 - a plugin must not break opening other files
        return None


def read_layers(path: Any) -> list[tuple]:
    """Image layers of each file; a stack opens whole as ``(frame, y, x)``.

    A file with several detector signals of one scan (HAADF, iDPC, DPC, segments) opens one layer
    per signal named ``"<file stem> <signal title>"``, the best for analysis returned last: on top
    of the layer list, the one widgets pick and the only one visible. A single-signal file opens
    one layer named after the file.
    """
    from ..io.read import read_signals
    from .layers import micrograph_layer_data

    paths = path if isinstance(path, (list, tuple)) else [path]
    layers = []
    for p in paths:
        micrographs = read_signals(p)
        if len(micrographs) == 1:
            layers.append(micrograph_layer_data(micrographs[0]))
            continue
        for i, mg in reversed(list(enumerate(micrographs))):
            label = mg.metadata.get("title") or mg.metadata.get("detector") or f"signal {i + 1}"
            data, kwargs, kind = micrograph_layer_data(mg, name=f"{Path(p).stem} {label}")
            layers.append((data, dict(kwargs, visible=i == 0), kind))
    return layers
