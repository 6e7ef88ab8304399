"""The per-image session behind a columns layer: the step widgets run pipeline stages on it.

A columns layer made by the detect (or agent) widget carries the ``PipelineResult`` its points came
from; the lattice, retrieve and reconstruct widgets call ``pipeline.run_stage`` on that session, so
a click through the widgets decides exactly as ``pipeline.run`` and the CLI do. When the user has
edited the points since, the session takes the edited points as the user's columns (as
``pipeline.run(columns=…)`` does) and forgets what was derived from the old ones.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..config import PipelineConfig
from ..model import Columns, Micrograph
from ..pipeline import PipelineResult
from .layers import MICROGRAPH_KEY, columns_from_points_layer

#: Layer metadata key of the session a columns layer belongs to.
SESSION_KEY = "automat_session"


def new_session(micrograph: Micrograph, config: Optional[PipelineConfig] = None) -> PipelineResult:
    """A session on ``micrograph`` (the image the columns are measured on)."""
    return PipelineResult(micrograph, config or PipelineConfig())


def layer_micrograph_of(layer, columns: Columns) -> Micrograph:
    """The image behind a columns layer, or an empty calibrated stand-in for points drawn by hand."""
    image = layer.metadata.get(MICROGRAPH_KEY)
    if isinstance(image, Micrograph):
        return image
    return Micrograph(np.zeros((0, 0), np.float32), columns.pixel_size_A, True, None, {"layer": layer.name})


def layer_session(layer, **config_changes) -> PipelineResult:
    """The session of a columns layer, brought up to date with its current points and with
    ``config_changes`` (``PipelineConfig`` fields) applied. Stored in the layer's metadata."""
    columns = columns_from_points_layer(layer)
    session = layer.metadata.get(SESSION_KEY)
    if not isinstance(session, PipelineResult):
        session = new_session(layer_micrograph_of(layer, columns))
        layer.metadata[SESSION_KEY] = session
    if not same_points(session.columns, columns):
        session.columns = columns
        session.columns_source = "detected" if all(p == "detected" for p in columns.provenance) else "user"
        # what was derived from the old points is gone; the candidates stay for the user to choose from
        session.lattice = session.first_pass = session.reconstruction = session.energy = None
        session.readings = {}  # else reconstruct would take a candidate's reading of the old points back
    if config_changes:
        session.config = session.config.replace(**config_changes)
    return session


def same_points(a: Optional[Columns], b: Columns) -> bool:
    """Whether two column sets have the same points (positions and provenance)."""
    return (a is not None and a.count == b.count and list(a.provenance) == list(b.provenance)
            and np.allclose(a.positions_px, b.positions_px, atol=1e-6))


def show_session_columns(layer, session: PipelineResult) -> None:
    """Write the session's columns back into its layer: their features when the points are the
    same, and the points themselves when a stage changed them (motif sites added or dropped) on a
    layer the user has not edited. An edited layer is never overwritten."""
    from .layers import columns_features, set_column_features, untracked

    columns = session.columns
    if columns is None:
        return
    if columns.count == len(layer.data):
        set_column_features(layer, columns)
    elif session.columns_source == "detected":
        with untracked(layer):
            layer.data = np.asarray(columns.positions_px, float).copy()
            layer.features = columns_features(columns)
