"""Core calls the widgets run in a worker, on the columns of a (possibly edited) Points layer."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...model import AutomatError, Columns, Micrograph, Progress, no_progress
from ..layers import MICROGRAPH_KEY, columns_from_points_layer


def layer_columns(layer) -> tuple[Columns, Optional[Micrograph]]:
    """The current columns of a Points layer and the micrograph they were detected on (or None)."""
    image = layer.metadata.get(MICROGRAPH_KEY)
    return columns_from_points_layer(layer), image if isinstance(image, Micrograph) else None


def measure_missing(columns: Columns, image: Optional[Micrograph]) -> Columns:
    """Columns whose unknown intensities (points added by hand) are measured on ``image``.

    Positions stay exactly where the user put them; only intensity and width are filled in.
    """
    missing = np.flatnonzero(~np.isfinite(columns.intensity))
    if image is None or not len(missing):
        return columns
    from ...detect import refine_columns

    fitted = refine_columns(image, columns, missing)
    out = columns.subset(np.arange(columns.count))
    out.intensity[missing] = fitted.intensity[missing]
    out.sigma_px[missing] = fitted.sigma_px[missing]
    return out


def fit_lattice(columns: Columns, image: Optional[Micrograph], progress: Progress = no_progress):
    """``(Lattice2D, Columns with sublattices)`` of the given columns (added ones measured first)."""
    from ...detect import find_lattice
    from ...pipeline import MIN_COLUMNS

    if columns.count < MIN_COLUMNS:
        raise AutomatError(f"only {columns.count} columns: at least {MIN_COLUMNS} are needed for a lattice")
    progress(0.0, "measuring added columns")
    columns = measure_missing(columns, image)
    return find_lattice(columns, image=None if image is None else image.data,
                        progress=lambda f, m="": progress(0.1 + 0.9 * f, m))


def require_calibration(image: Optional[Micrograph]) -> None:
    """Refuse to compare lengths with structures when the image had no calibration."""
    from ...pipeline import UNCALIBRATED

    if image is not None and not image.calibrated:
        raise AutomatError(UNCALIBRATED)


def retrieve_hits(columns: Columns, image: Optional[Micrograph], elements=(), top_k: int = 10,
                  z_exponent: float = 1.7, progress: Progress = no_progress):
    """``(hits, lattice, columns)``: the lattice of the columns and the best templates for it."""
    from ...detect.signal import shows_light_columns
    from ...templates import load_library, retrieve

    require_calibration(image)
    lattice, labelled = fit_lattice(columns, image, lambda f, m="": progress(0.2 * f, m))
    library = load_library(None, progress=lambda f, m="": progress(0.2 + 0.3 * f, m))
    hits = retrieve(lattice, elements=tuple(elements), library=library, top_k=top_k, z_exponent=z_exponent,
                    light_columns=shows_light_columns("auto", image),
                    progress=lambda f, m="": progress(0.5 + 0.5 * f, m))
    from ...templates.overlay import add_image_residuals

    add_image_residuals(hits, lattice, image, labelled)
    return hits, lattice, labelled


def reconstruct_hit(hit, columns: Columns, image: Optional[Micrograph], progress: Progress = no_progress):
    """``(Reconstruction, lattice, columns)`` from a template hit and the current columns; the columns
    come back with species labels and confidences (``reconstruct.labels``)."""
    from ...reconstruct import reconstruct
    from ...reconstruct.labels import label_columns

    require_calibration(image)
    lattice, labelled = fit_lattice(columns, image, lambda f, m="": progress(0.3 * f, m))
    rec = reconstruct(hit, lattice, progress=lambda f, m="": progress(0.3 + 0.7 * f, m))
    labelled, rec.z_contrast = label_columns(labelled, lattice, hit)
    return rec, lattice, labelled
