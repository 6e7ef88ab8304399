"""Conversions between the core data objects and napari layers (no viewer needed).

Functions named ``*_layer_data`` return napari ``LayerDataTuple``s ``(data, kwargs, layer_type)``.
2D layers keep data in pixels of the image and carry the pixel size [Å] as their ``scale``, so
points, vectors and image line up in world coordinates (Å). 3D structure layers are in Å.
"""

from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..model import FLAT_FEATURES, Columns, Lattice2D, Micrograph

#: Layer metadata keys holding core objects.
MICROGRAPH_KEY = "automat_micrograph"
COLUMNS_KEY = "automat_columns"
LATTICE_KEY = "automat_lattice"
STRUCTURE_KEY = "automat_structure"
HITS_KEY = "automat_hits"
SELECTED_HIT_KEY = "automat_selected_hit"

UNITS_2D = ("angstrom", "angstrom")

#: Face colour per sublattice (-1 = unknown); further sublattices fall back to a grey cycle.
SUBLATTICE_COLORS = {-1: "#9e9e9e", 0: "#ff9f1c", 1: "#2ec4ff", 2: "#7bd389", 3: "#ff5d8f",
                     4: "#c792ea", 5: "#ffe066"}

#: Border colour per intensity flag: ordinary columns black, outliers of their sublattice in colour.
FLAG_COLORS = {"": "black", "dim": "#00e5ff", "bright": "#ff1744"}

FEATURE_NAMES = tuple(FLAT_FEATURES)
#: Features of a point added by hand.
ADDED_DEFAULTS = {**{name: fill for name, (_, fill) in FLAT_FEATURES.items()}, "provenance": "added"}
#: Layer metadata key of the sublattice and species the user chose for points added by hand.
ADDED_LABELS_KEY = "automat_added_labels"
#: Features the user labels; without a choice in the metadata, added points keep napari's
#: feature_defaults for them (napari copies the last selected point's).
LABELS = ("sublattice", "species")

#: Points layer -> its provenance-tracking state (weak, so layers are not kept alive).
_TRACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def unique_name(base: str, existing: Sequence[str]) -> str:
    """``base``, or ``base [2]``, ``base [3]``… whichever is not taken yet."""
    names = set(existing)
    if base not in names:
        return base
    i = 2
    while f"{base} [{i}]" in names:
        i += 1
    return f"{base} [{i}]"


# --- images ------------------------------------------------------------------------------------

def micrograph_layer_data(micrograph: Micrograph, name: Optional[str] = None, **extra_metadata) -> tuple:
    """An image layer for a micrograph: scale = pixel size [Å] (1 on the frame axis of a stack)."""
    scale = tuple(float(s) for s in micrograph.pixel_size_A)
    units: tuple = UNITS_2D
    if micrograph.is_stack:
        scale, units = (1.0, *scale), ("pixel", *UNITS_2D)
    if name is None:
        name = Path(micrograph.path).stem if micrograph.path else "micrograph"
    metadata = {MICROGRAPH_KEY: micrograph, "pixel_size_A": list(micrograph.pixel_size_A),
                "calibrated": bool(micrograph.calibrated), **micrograph.to_dict()["metadata"],
                **extra_metadata}
    data = np.asarray(micrograph.data)
    step = max(1, int(np.sqrt(data.size / 250_000)))  # percentiles of a subsample: fast on big images
    sample = np.asarray(data[..., ::step, ::step], dtype=float)
    sample = sample[np.isfinite(sample)]
    lo, hi = np.percentile(sample, (0.5, 99.5)) if sample.size else (0.0, 1.0)
    kwargs = {"name": name, "scale": scale, "units": units, "metadata": metadata, "colormap": "gray"}
    if hi > lo:
        kwargs["contrast_limits"] = (float(lo), float(hi))
    return data, kwargs, "image"


def micrograph_from_layer(layer, frame: Optional[int] = None) -> Micrograph:
    """The micrograph behind an image layer, with its current data and scale.

    Works for any image layer: without AutoMat metadata the pixel size is the layer scale and the
    calibration flag is False. ``frame`` picks one frame of a stack.
    """
    data = np.asarray(layer.data)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and getattr(layer, "rgb", False):
        data = data[..., :3].mean(axis=-1)
    pixel_size = tuple(float(s) for s in layer.scale[-2:])
    stored = layer.metadata.get(MICROGRAPH_KEY)
    if isinstance(stored, Micrograph):
        same_scale = np.allclose(pixel_size, stored.pixel_size_A)
        mg = Micrograph(data, pixel_size, stored.calibrated, stored.path,
                        dict(stored.metadata) if same_scale else dict(stored.metadata, pixel_size_set_by_user=True),
                        stored.true_columns_px if data.shape == stored.data.shape else None)
    else:
        mg = Micrograph(data, pixel_size, False, layer.source.path if layer.source else None,
                        {"layer": layer.name})
    if mg.data.ndim == 3 and frame is not None:
        return mg.frame(frame)
    if mg.data.ndim > 3:
        raise ValueError(f"layer '{layer.name}' has {mg.data.ndim} dimensions; expected (y, x) or (frame, y, x)")
    return mg


# --- atom columns ------------------------------------------------------------------------------

def _point_size_px(positions_px: np.ndarray) -> float:
    """Marker diameter [px]: 30 % of the median nearest-neighbour distance."""
    if len(positions_px) < 2:
        return 5.0
    from scipy.spatial import cKDTree

    d, _ = cKDTree(positions_px).query(positions_px, k=2)
    return float(max(2.0, 0.3 * np.median(d[:, 1])))


def columns_features(columns: Columns) -> dict:
    """The per-column features of a Points layer."""
    return columns.flat_features()


def columns_layer_data(columns: Columns, name: str = "columns", **extra_metadata) -> tuple:
    """A Points layer for atom columns: data = ``positions_px``, scale = pixel size [Å].

    Points the user adds get the ``feature_defaults`` (provenance ``added``); faces are coloured
    by sublattice, borders by intensity flag (:data:`FLAG_COLORS`).
    """
    kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in columns.pixel_size_A),
        "units": UNITS_2D,
        "features": columns_features(columns),
        "feature_defaults": dict(ADDED_DEFAULTS),
        "face_color": "sublattice",
        "face_color_cycle": dict(SUBLATTICE_COLORS),
        "border_color": "flag",
        "border_color_cycle": dict(FLAG_COLORS),
        "border_width": 0.12,
        "size": _point_size_px(columns.positions_px),
        "metadata": dict(extra_metadata),
    }
    return np.asarray(columns.positions_px, float).copy(), kwargs, "points"


def add_layer(viewer, layer_data: tuple):
    """Add a ``LayerDataTuple`` to the viewer; returns the layer (integer sublattices are categories)."""
    data, kwargs, kind = layer_data
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*looks like categorical data.*")
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
    if kind == "points" and "provenance" in kwargs.get("features", {}):
        track_provenance(layer)
    return layer


def columns_from_points_layer(layer, pixel_size_A: Optional[Sequence[float]] = None) -> Columns:
    """The current (possibly edited) points of a layer as Columns.

    Positions are the last two data axes [px]; ``pixel_size_A`` defaults to the layer scale.
    Missing features are filled with 'unknown' values (provenance ``added``).
    """
    scale = pixel_size_A if pixel_size_A is not None else layer.scale[-2:]
    return columns_from_points(layer.data, layer.features, scale)


def columns_from_points(data, features, pixel_size_A: Sequence[float]) -> Columns:
    """Columns from Points data ``(n, >=2)`` [px], a features table and the pixel size (y, x) [Å]."""
    data = np.asarray(data, float)
    positions = data[:, -2:] if len(data) else np.zeros((0, 2))
    pixel_size = tuple(float(s) for s in np.broadcast_to(np.asarray(pixel_size_A, float).ravel()[-2:], (2,)))
    n = len(positions)

    def get(key, kind):
        if features is not None and key in features and len(features[key]) == n:
            values = np.asarray(features[key], dtype=object)
            if kind == "float":
                return np.asarray(values, dtype=float)
            if kind == "int":
                return np.asarray([int(v) if v == v else -1 for v in values], dtype=int)
            return ["" if v is None or v != v else str(v) for v in values]
        default = ADDED_DEFAULTS[key]
        return [default] * n if kind == "str" else np.full(n, default, dtype=kind)

    return Columns.from_flat(positions, pixel_size, {key: get(key, kind) for key, (kind, _) in FLAT_FEATURES.items()})


def set_column_features(layer, columns: Columns) -> None:
    """Write features (sublattice, species, …) of same-length Columns into a Points layer."""
    if len(columns) != len(layer.data):
        raise ValueError(f"{len(columns)} columns for a layer of {len(layer.data)} points")
    features = layer.features.copy()
    for key, values in columns_features(columns).items():
        if key != "provenance":
            features[key] = values
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*looks like categorical data.*")
        layer.features = features
        layer.refresh_colors(update_color_mapping=False)


def ensure_column_features(layer) -> None:
    """Give a Points layer made outside AutoMat the column features (its points count as
    ``added``) and provenance tracking, so defaults and edits work as on detected columns."""
    if not all(key in layer.features for key in FEATURE_NAMES):
        columns = columns_from_points_layer(layer)
        features = layer.features.copy()
        for key, values in columns_features(columns).items():
            if key not in features:
                features[key] = values
        layer.features = features
        layer.feature_defaults = {**ADDED_DEFAULTS, **{k: layer.feature_defaults[k].iloc[0]
                                                       for k in layer.feature_defaults if k not in ADDED_DEFAULTS}}
    track_provenance(layer)


# --- provenance of user edits -----------------------------------------------------------------

def track_provenance(layer) -> None:
    """Mark points the user moves as ``moved`` (added ones stay ``added``) and give points the user
    adds (napari ``add``, a click in add mode or a paste) the features of a new point: provenance
    ``added`` and nothing fitted yet, whatever napari copied from the last selected point; their
    sublattice and species are those chosen for new points (``metadata[ADDED_LABELS_KEY]``) when set.
    Idempotent."""
    if layer in _TRACKED:
        return
    state = {"before": None, "paused": False}

    def on_data(event):
        action = str(getattr(event, "action", ""))
        if state["paused"]:
            return
        if action == "changing":
            state["before"] = np.array(layer.data, copy=True)
        elif action == "changed":
            before, state["before"] = state["before"], None
            idx = [i for i in (getattr(event, "data_indices", ()) or ()) if isinstance(i, (int, np.integer))]
            _mark_moved(layer, idx, before)
        elif action == "added":
            idx = [i for i in (getattr(event, "data_indices", ()) or ()) if isinstance(i, (int, np.integer)) and i < 0]
            _mark_added(layer, [len(layer.data) + i for i in idx])

    layer.events.data.connect(on_data)
    _TRACKED[layer] = state


def _mark_moved(layer, indices: list[int], before: Optional[np.ndarray]) -> None:
    if "provenance" not in layer.features or not len(indices):
        return
    data = np.asarray(layer.data)
    if before is not None:  # a whole-array change: only points whose position differs moved
        if before.shape != data.shape:
            return
        indices = [i for i in indices if not np.allclose(before[i], data[i])]
    prov = np.array(layer.features["provenance"], dtype=object)
    changed = False
    for i in indices:
        if 0 <= i < len(prov) and prov[i] == "detected":
            prov[i], changed = "moved", True
    if changed:
        layer.features["provenance"] = prov


def _mark_added(layer, indices: list[int]) -> None:
    if not indices or not all(key in layer.features for key in ADDED_DEFAULTS):
        return
    values = {**{k: v for k, v in ADDED_DEFAULTS.items() if k not in LABELS},
              **layer.metadata.get(ADDED_LABELS_KEY, {})}
    features = layer.features.copy()
    rows = features.index[indices]
    for key, value in values.items():
        features.loc[rows, key] = value
    layer.features = features


@contextmanager
def untracked(layer):
    """Change points programmatically without marking them ``moved``."""
    state = _TRACKED.get(layer)
    if state is None:
        yield
        return
    state["paused"] = True
    try:
        yield
    finally:
        state["paused"] = False


# --- lattice ----------------------------------------------------------------------------------

def lattice_layer_data(lattice: Lattice2D, pixel_size_A: Sequence[float], name: str = "lattice",
                       near_px: Optional[Sequence[float]] = None, **extra_metadata) -> tuple:
    """A Vectors layer with the basis a (red) and b (blue) drawn from a lattice point [px].

    The lattice point is ``origin_px``, or the one closest to ``near_px`` (e.g. the image centre).
    """
    px = np.asarray(pixel_size_A, float)
    a_px, b_px = lattice.a_vec_A / px, lattice.b_vec_A / px
    origin = np.asarray(lattice.origin_px, float)
    if near_px is not None:
        uv = np.linalg.solve(np.column_stack([a_px, b_px]), np.asarray(near_px, float) - origin)
        origin = origin + np.round(uv[0]) * a_px + np.round(uv[1]) * b_px
    vectors = np.array([[origin, a_px], [origin, b_px]])
    kwargs = {"name": name, "scale": tuple(px), "units": UNITS_2D, "edge_color": ["#ff3b30", "#1e90ff"],
              "edge_width": max(1.0, 0.08 * min(lattice.a_A, lattice.b_A) / float(px.mean())),
              "vector_style": "arrow", "length": 1.0, "features": {"vector": ["a", "b"]},
              "metadata": {LATTICE_KEY: lattice, **extra_metadata}}
    return vectors, kwargs, "vectors"


# --- domains ------------------------------------------------------------------------------------

#: Metadata key of a domains Labels layer: the ``result.json`` ``domains`` entries.
DOMAINS_KEY = "automat_domains"


def domains_layer_data(labels: np.ndarray, pixel_size_A: Sequence[float], domains: list[dict],
                       name: str = "domains") -> tuple:
    """A Labels layer of the domains (``PipelineResult.domain_labels``, 0 = not analysed), scale =
    pixel size [Å]; its features name each label's structure."""
    def structure(entry):
        s = entry.get("structure")
        return f"{s['formula']} {s['spacegroup']}" if s else entry.get("error", "no structure")

    features = {"index": [0] + [e["label"] for e in domains],
                "structure": ["not analysed"] + [structure(e) for e in domains],
                "area_fraction": [0.0] + [e["area_fraction"] for e in domains]}
    kwargs = {"name": name, "scale": tuple(float(p) for p in pixel_size_A), "units": UNITS_2D, "opacity": 0.35,
              "features": features, "metadata": {DOMAINS_KEY: domains}}
    return np.asarray(labels, int), kwargs, "labels"


def placed(layer_data: tuple, origin_px: Sequence[float]) -> tuple:
    """``layer_data`` of a crop moved to ``origin_px`` ``(y, x)`` [px] of the full image (napari's
    ``translate``, in the layer's scaled units); unchanged when the origin is 0."""
    data, kwargs, kind = layer_data
    if not np.any(origin_px):
        return layer_data
    scale = np.asarray(kwargs["scale"], float)[-2:]
    return data, dict(kwargs, translate=tuple(float(v) for v in np.asarray(origin_px, float) * scale)), kind


# --- region of the analysis -----------------------------------------------------------------

#: Shape types that make a region (rectangles rotated or not, polygons).
REGION_SHAPES = ("rectangle", "polygon")


def to_image_px(coords, layer, image_layer) -> np.ndarray:
    """``coords`` ``(n, >=2)`` in ``layer``'s data frame as ``(y, x)`` pixels of ``image_layer``,
    through both layers' scale and translate (last two axes)."""
    world = np.asarray(coords, float)[:, -2:] * layer.scale[-2:] + layer.translate[-2:]
    return (world - image_layer.translate[-2:]) / image_layer.scale[-2:]


def shape_region(shapes_layer, image_layer, shape) -> dict:
    """The ``PipelineConfig`` region of a Shapes layer's selected shape (else its last) over an
    image of ``shape`` ``(h, w)``: an axis-aligned rectangle gives ``roi``, a rotated rectangle
    or a polygon ``roi_polygon`` (image pixels). A ValueError for anything else."""
    from ..detect.region import polygon_region

    if not len(shapes_layer.data):
        raise ValueError(f"the Shapes layer '{shapes_layer.name}' has no shape: draw a rectangle or a polygon")
    index = min(shapes_layer.selected_data) if shapes_layer.selected_data else len(shapes_layer.data) - 1
    kind = shapes_layer.shape_type[index]
    if kind not in REGION_SHAPES:
        raise ValueError(f"a {kind} is not a region: draw a rectangle or a polygon")
    vertices = to_image_px(shapes_layer.data[index], shapes_layer, image_layer)
    bbox, _ = polygon_region(vertices, shape)
    upright = kind == "rectangle" and all(len(np.unique(np.round(v, 6))) == 2 for v in vertices.T)
    return {"roi": tuple(bbox)} if upright else {"roi_polygon": vertices.tolist()}


def analysed_region(result) -> Optional[np.ndarray]:
    """The outline ``(n, 2)`` [px, full image] of the region a result analysed: the user's polygon,
    else the box of its ROI or of the crystalline region (on the pixels' edges); None for the whole image."""
    config, metadata = result.config, result.micrograph.metadata
    if config.roi_polygon is not None:
        return np.asarray(config.roi_polygon, float)
    box = config.roi if config.roi is not None else (
        metadata["roi"] if metadata.get("roi_source") == "crystal" else None)
    if box is None:
        return None
    y0, y1, x0, x1 = np.asarray(box, float) - 0.5
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])


def region_layer_data(outline: np.ndarray, pixel_size_A: Sequence[float], name: str = "region used") -> tuple:
    """A Shapes layer with the outline ``(n, 2)`` [px] of the analysed region, scale = pixel size [Å]."""
    kwargs = {"name": name, "scale": tuple(float(p) for p in pixel_size_A), "units": UNITS_2D,
              "shape_type": "polygon", "edge_color": "#ffd60a", "face_color": "transparent",
              "edge_width": max(1.5, 0.01 * float(np.ptp(outline, axis=0).max()))}
    return [np.asarray(outline, float)], kwargs, "shapes"


# --- 3D structure -----------------------------------------------------------------------------

#: Metadata key marking a layer as the projection overlay of a retrieval candidate.
OVERLAY_KEY = "automat_template_overlay"


def template_overlay_layer_data(positions_px: np.ndarray, compositions: list[dict], pixel_size_A,
                                name: str = "candidate projection", **extra_metadata) -> tuple:
    """Rings at a candidate template's projected columns, coloured by the column's heaviest element
    (Jmol colours); the column composition is in the ``column`` feature."""
    from ..reconstruct.labels import column_label

    labels = [column_label(c) if c else "" for c in compositions]
    colors, _ = _element_style([label.split("+")[0] for label in labels])
    size = _point_size_px(np.asarray(positions_px, float)) * 1.6 if len(positions_px) else 5.0
    kwargs = {"name": name, "scale": tuple(float(v) for v in np.broadcast_to(pixel_size_A, (2,))),
              "units": UNITS_2D, "symbol": "ring", "face_color": colors if len(labels) else "white",
              "border_width": 0.0, "size": size, "features": {"column": labels},
              "metadata": {OVERLAY_KEY: True, **extra_metadata}}
    return np.asarray(positions_px, float).reshape(-1, 2), kwargs, "points"


def _element_style(symbols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Jmol-like RGB colours and covalent radii [Å] for element symbols."""
    from ase.data import atomic_numbers, covalent_radii
    from ase.data.colors import jmol_colors

    z = np.array([atomic_numbers.get(s, 0) for s in symbols], int)
    return jmol_colors[z], covalent_radii[z]


def cell_atoms(structure, tol: float = 1e-3) -> tuple[np.ndarray, list[str]]:
    """Cartesian positions [Å] and element symbols of one cell, with atoms on faces, edges and
    corners repeated on the opposite side (so the cell looks complete)."""
    frac_all, symbols = [], []
    for site in structure:
        f = np.mod(np.asarray(site.frac_coords, float), 1.0)
        f[np.isclose(f, 1.0, atol=tol)] = 0.0
        shifts = [np.array(s) for s in np.ndindex(2, 2, 2)
                  if all(not s[k] or f[k] < tol for k in range(3))]
        element = site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie)
        for s in shifts:
            frac_all.append(f + s)
            symbols.append(element)
    frac = np.array(frac_all).reshape(-1, 3)
    return frac @ np.asarray(structure.lattice.matrix), symbols


def cell_edges(structure) -> list[np.ndarray]:
    """The 12 edges of the cell as ``(2, 3)`` Cartesian segments [Å]."""
    m = np.asarray(structure.lattice.matrix)
    edges = []
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        for i, j in np.ndindex(2, 2):
            start = i * m[others[0]] + j * m[others[1]]
            edges.append(np.array([start, start + m[axis]]))
    return edges


def structure_layer_data(structure, name: str = "structure", **extra_metadata) -> list[tuple]:
    """A 3D Points layer (atoms coloured by element, sized by covalent radius) and a Shapes layer
    with the cell edges. Data axes are ``(z, y, x)`` in Å, so the default view looks down c."""
    xyz, symbols = cell_atoms(structure)
    colors, radii = _element_style(symbols)
    atoms = (xyz[:, ::-1].copy(), {
        "name": name, "ndim": 3, "units": ("angstrom",) * 3, "size": 0.9 * radii, "face_color": colors,
        "border_color": "black", "border_width": 0.05, "shading": "spherical",
        "features": {"element": symbols}, "metadata": {STRUCTURE_KEY: structure, **extra_metadata},
    }, "points")
    edges = [e[:, ::-1] for e in cell_edges(structure)]
    cell = (edges, {"name": f"{name} cell", "ndim": 3, "units": ("angstrom",) * 3, "shape_type": "path",
                    "edge_color": "#dddddd", "edge_width": 0.05,
                    "metadata": {STRUCTURE_KEY: structure, **extra_metadata}}, "shapes")
    return [atoms, cell]


def structure_layers(viewer) -> list[Any]:
    """Points layers of the viewer that hold a reconstructed structure."""
    from napari.layers import Points

    return [layer for layer in viewer.layers if isinstance(layer, Points) and STRUCTURE_KEY in layer.metadata]
