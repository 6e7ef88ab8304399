"""npe2 readers: STEM micrographs (dm3/dm4, emd, ser/emi, mrc, tif, hspy/hdf5, mat) as image layers
with scale = pixel size [Å] and the :class:`~napari_automat.model.Micrograph` in metadata; what
AutoMat writes back as layers: a columns table (``columns.csv``) as the columns Points layer, a CIF
as the 3D structure layers.

Every ``get_*`` function never raises: napari asks every plugin about every path it may open.
"""

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


def _paths(path: Any) -> list[Path]:
    return [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]


def get_columns_reader(path: Any) -> Optional[Callable[[Any], list]]:
    """:func:`read_columns` when every file is a columns table written by AutoMat, else None."""
    try:
        from ..io.write import COLUMNS_CSV_HEADER

        start, paths = ",".join(COLUMNS_CSV_HEADER[:2]), _paths(path)
        for p in paths:
            with open(p, encoding="utf-8") as fh:
                if not fh.readline().startswith(start):
                    return None
        return read_columns if paths else None
    except Exception:  # noqa: BLE001 - a plugin must not break opening other files
        return None


def read_columns(path: Any) -> list[tuple]:
    """One columns Points layer per table: positions [px], scale [Å/px], features (provenance included)."""
    from ..io.write import read_columns_csv
    from .layers import columns_layer_data

    from .autosave import install_on_current_viewer

    layers = [columns_layer_data(read_columns_csv(p), name=p.stem) for p in _paths(path)]
    install_on_current_viewer()  # hand edits of the opened columns are autosaved too
    return layers


def get_structure_reader(path: Any) -> Optional[Callable[[Any], list]]:
    """:func:`read_structures` for CIF files, else None."""
    try:
        paths = _paths(path)
        return read_structures if paths and all(p.suffix.lower() == ".cif" and p.is_file() for p in paths) else None
    except Exception:  # noqa: BLE001 - a plugin must not break opening other files
        return None


def read_structures(path: Any) -> list[tuple]:
    """The 3D layers of each CIF's structure: atoms (Points) and cell edges (Shapes), in Å."""
    from pymatgen.core import Structure

    from ..model import AutomatError
    from .layers import structure_layer_data

    layers = []
    for p in _paths(path):
        try:
            structure = Structure.from_file(p)
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds on a bad CIF
            raise AutomatError(f"{p.name} holds no structure pymatgen can read: {' '.join(str(exc).split())}") from None
        layers += structure_layer_data(structure, name=p.stem)
    return layers
