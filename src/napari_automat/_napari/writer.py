"""npe2 writers: atom columns (Points layer) to CSV, a reconstructed structure to CIF."""

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
