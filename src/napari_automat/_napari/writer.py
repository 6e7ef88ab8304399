"""npe2 writers: atom columns (Points layer) to CSV, a reconstructed structure to CIF, an image
(a micrograph or its denoised version) to a TIFF that keeps its Å calibration."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import STRUCTURE_KEY, columns_from_points


def write_columns(path: str, data: Any, meta: dict) -> list[str]:
    """Write the points of a layer as atom columns (positions in px and Å, features) to CSV; the
    positions of a layer placed over a crop (``translate``) in the full image's pixels."""
    from ..io.write import write_columns_csv

    scale = meta.get("scale") or (1.0, 1.0)
    shift = np.asarray(meta.get("translate", (0.0, 0.0)), float)[-2:] / np.asarray(scale, float)[-2:]
    columns = columns_from_points(np.asarray(data, float)[:, -2:] + shift, meta.get("features"), scale)
    write_columns_csv(path, columns)
    return [str(path)]


def write_structure(path: str, data: Any, meta: dict) -> list[str]:
    """Write the structure behind a 3D structure layer to CIF (nothing, with a warning, for
    other Points layers)."""
    from ..io.write import write_cif

    structure = (meta.get("metadata") or {}).get(STRUCTURE_KEY)
    if structure is None:
        from napari.utils.notifications import show_warning

        show_warning(f"layer '{meta.get('name', '')}' holds no reconstructed structure: choose a "
                     "structure layer made by 'Reconstruct 3D structure' to save a CIF")
        return []
    write_cif(path, structure)
    return [str(path)]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an image layer (2D or a stack of frames) as a float32 ImageJ TIFF: calibrated in nm when
    the layer's pixel size is a real one (an AutoMat micrograph layer that is calibrated), with its
    scalar metadata (signal, voltage, how it was denoised) in the description, which
    ``io.read.read_micrograph`` reads back."""
    import tifffile

    from ..io.write import atomic_path, write_tiff_calibrated

    info = meta.get("metadata") or {}
    scalars = {k: v for k, v in info.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    arr = np.asarray(data, dtype=np.float32)
    if getattr(arr, "ndim", 0) == 3 and meta.get("rgb"):
        arr = arr[..., :3].mean(axis=-1)
    if info.get("calibrated"):
        scale = tuple(float(v) for v in (meta.get("scale") or (1.0, 1.0))[-2:])
        write_tiff_calibrated(path, arr, scale, scalars)
    else:  # no real pixel size: a plain TIFF rather than a made-up calibration
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, arr, imagej=True, metadata={k: v for k, v in scalars.items() if "\n" not in str(v)})
    return [str(path)]
