"""npe2 reader: STEM micrographs (dm3/dm4, emd, ser/emi, mrc, tif, hspy/hdf5, mat, png/jpg) as image
layers with scale = pixel size [Å] and the :class:`~napari_automat.model.Micrograph` in metadata."""

from __future__ import annotations

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
    """One image layer per file; a stack opens whole as ``(frame, y, x)``."""
    from ..io.read import read_micrograph
    from .layers import micrograph_layer_data

    paths = path if isinstance(path, (list, tuple)) else [path]
    return [micrograph_layer_data(read_micrograph(p)) for p in paths]
