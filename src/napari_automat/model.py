"""Data objects that flow through the chain (see docs/DESIGN): plain dataclasses, units in names.

Coordinates: images are indexed ``(row, col)`` = ``(y, x)``, like napari. Positions named ``_px``
are in pixels of the image they came from; everything else is in Å and degrees.
Every object has ``to_dict`` (JSON-ready, no arrays of image size) and ``from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional

import numpy as np

#: A progress callback: ``progress(fraction_done in [0, 1], message)``.
Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str = "") -> None:
    """The default progress callback: does nothing."""



class Parameters:
    """Mixin of the frozen parameter objects (``ScoreParams``, ``DetectParams``): a JSON-ready dict
    (tuples as lists) and back (lists as tuples; unknown keys ignored, missing ones default)."""

    def to_dict(self) -> dict:
        return {f.name: _as_lists(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Optional[dict]):
        names = {f.name for f in fields(cls)}
        return cls(**{k: _as_tuples(v) for k, v in (d or {}).items() if k in names})


def _as_lists(value):
    return [_as_lists(v) for v in value] if isinstance(value, tuple) else value


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


class AutomatError(ValueError):
    """Bad input or an impossible request, with a one-line message meant for the user."""


class Cancelled(RuntimeError):
    """Raised by a progress callback to stop long work."""


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


@dataclass
class Micrograph:
    """A calibrated image (or stack of frames).

    ``data`` is 2D ``(y, x)`` or 3D ``(frame, y, x)``; ``pixel_size_A`` is ``(y, x)`` in Å per
    pixel (anisotropic scales are kept). ``calibrated`` is False when the file had no usable
    spatial calibration (then ``pixel_size_A`` is a guess or set by the user).
    ``metadata`` holds what the file said: ``voltage_kV``, ``detector``,
    ``convergence_angle_mrad``, ``signal``, ``original_units``, ``original_scale``.
    ``true_columns_px`` (simulations only) are exact projected column positions ``(n, 2)``.
    """

    data: np.ndarray
    pixel_size_A: tuple[float, float] = (1.0, 1.0)
    calibrated: bool = False
    path: Optional[str] = None
    metadata: dict = field(default_factory=dict)
    true_columns_px: Optional[np.ndarray] = None

    @property
    def is_stack(self) -> bool:
        return self.data.ndim == 3

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def mean_pixel_size_A(self) -> float:
        return float(np.mean(self.pixel_size_A))

    def frame(self, index: int = 0) -> "Micrograph":
        """One 2D frame of a stack (the image itself when already 2D)."""
        if not self.is_stack:
            return self
        if not -self.data.shape[0] <= index < self.data.shape[0]:
            raise AutomatError(f"frame {index} out of range: the stack has {self.data.shape[0]} frames")
        return Micrograph(np.asarray(self.data[index]), self.pixel_size_A, self.calibrated,
                          self.path, dict(self.metadata, frame=int(index)), self.true_columns_px)

    def with_data(self, data: np.ndarray, **metadata) -> "Micrograph":
        """The same calibration and provenance around new pixel data."""
        return Micrograph(data, self.pixel_size_A, self.calibrated, self.path,
                          dict(self.metadata, **metadata), self.true_columns_px)

    def crop(self, roi, **metadata) -> "Micrograph":
        """The 2D rectangle ``roi = (y0, y1, x0, x1)`` [px, ends exclusive], with the same pixel size;
        ``metadata['roi']`` records it (positions in the crop plus ``(y0, x0)`` are full-image ones)."""
        y0, y1, x0, x1 = (int(v) for v in roi)
        truth = self.true_columns_px
        if truth is not None:
            truth = np.asarray(truth, float) - (y0, x0)
            truth = truth[np.all((truth >= 0) & (truth <= (y1 - y0 - 1, x1 - x0 - 1)), axis=1)]
        return Micrograph(np.asarray(self.data)[y0:y1, x0:x1], self.pixel_size_A, self.calibrated, self.path,
                          dict(self.metadata, roi=[y0, y1, x0, x1], full_shape=list(self.shape), **metadata), truth)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "pixel_size_A": _floats(self.pixel_size_A),
            "calibrated": bool(self.calibrated),
            "metadata": {k: _plain(v) for k, v in self.metadata.items() if _jsonable(_plain(v))},
        }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, tuple))


@dataclass
class Columns:
    """Atom columns found in one 2D image.

    ``positions_px`` is ``(n, 2)`` sub-pixel ``(y, x)``; per column: ``intensity`` (integrated,
    background-subtracted, arbitrary units), ``sigma_px`` (Gaussian width), ``sublattice``
    (int, -1 unknown), ``species`` (element symbol or column label such as ``"Ti+O"``, "" unknown),
    ``species_confidence`` (0..1), ``provenance`` (``detected``, ``moved`` or ``added``),
    ``displacement_pm`` ``(n, 2)`` ``(dy, dx)`` from the ideal fitted lattice [pm] (NaN unknown) and
    ``flag`` (``"dim"``: possible vacancy or lighter substitution; ``"bright"``: possible heavier
    substitution; ``""``: an ordinary member of its sublattice), ``position_sigma_px`` (1σ position
    uncertainty of the Gaussian fit [mean px]) and ``fit_r2`` (its R²); NaN where unknown.
    """

    positions_px: np.ndarray
    pixel_size_A: tuple[float, float]
    intensity: np.ndarray
    sigma_px: np.ndarray
    sublattice: np.ndarray
    species: list[str]
    species_confidence: np.ndarray
    provenance: list[str]
    displacement_pm: Optional[np.ndarray] = None
    flag: Optional[list[str]] = None
    position_sigma_px: Optional[np.ndarray] = None
    fit_r2: Optional[np.ndarray] = None

    def __post_init__(self):
        self.positions_px = np.asarray(self.positions_px, dtype=float).reshape(-1, 2)
        n = len(self.positions_px)
        for name, (kind, fill) in COLUMN_FEATURES.items():
            setattr(self, name, _feature(getattr(self, name), n, kind, fill, name))

    @classmethod
    def from_positions(cls, positions_px, pixel_size_A, **features) -> "Columns":
        """Columns with only positions known (other features filled with 'unknown')."""
        return cls(positions_px, tuple(pixel_size_A), **{name: features.get(name) for name in COLUMN_FEATURES})

    def __len__(self) -> int:
        return len(self.positions_px)

    @property
    def count(self) -> int:
        return len(self)

    @property
    def positions_A(self) -> np.ndarray:
        """``(n, 2)`` positions ``(y, x)`` in Å."""
        return self.positions_px * np.asarray(self.pixel_size_A, dtype=float)

    @property
    def mean_sigma_A(self) -> float:
        s = self.sigma_px[np.isfinite(self.sigma_px)]
        return float(np.mean(s) * np.mean(self.pixel_size_A)) if len(s) else float("nan")

    def flat_features(self) -> dict:
        """Every feature as one value per column, ``(n, 2)`` ones split (:data:`FLAT_FEATURES` order):
        the layout of the columns table and of the Points layer's features."""
        out = {}
        for name, (kind, _) in COLUMN_FEATURES.items():
            values = getattr(self, name)
            if kind == "vec2":
                out.update({flat: values[:, k].copy() for k, flat in enumerate(VEC2_NAMES[name])})
            else:
                out[name] = list(values) if kind == "str" else values.copy()
        return out

    @classmethod
    def from_flat(cls, positions_px, pixel_size_A, flat: dict) -> "Columns":
        """The inverse of :meth:`flat_features`; missing features are unknown."""
        features = {}
        for name, (kind, _) in COLUMN_FEATURES.items():
            if kind == "vec2":
                parts = [flat.get(part) for part in VEC2_NAMES[name]]
                features[name] = None if any(p is None for p in parts) else np.column_stack(parts).reshape(-1, 2)
            else:
                features[name] = flat.get(name)
        return cls(positions_px, tuple(pixel_size_A), **features)

    def subset(self, mask) -> "Columns":
        """The columns at ``mask`` (boolean or indices), every feature kept."""
        mask = np.asarray(mask)
        idx = np.flatnonzero(mask) if mask.dtype == bool else mask
        return Columns(self.positions_px[idx], self.pixel_size_A,
                       **{name: _take(getattr(self, name), idx) for name in COLUMN_FEATURES})

    def to_dict(self, full: bool = False) -> dict:
        out = {"count": self.count, "mean_sigma_A": _none_if_nan(self.mean_sigma_A)}
        if full:
            out.update(positions_px=self.positions_px.tolist(), pixel_size_A=_floats(self.pixel_size_A))
            for name, (kind, _) in COLUMN_FEATURES.items():
                values = getattr(self, name)
                out[name] = (values if kind == "str" else values.tolist() if kind == "int"
                             else [_nan_list(v) for v in values] if kind == "vec2" else _nan_list(values))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Columns":
        def read(name, kind):
            values = d.get(name)
            if values is None or kind in ("str", "int"):
                return values
            return [_arr(v) for v in values] if kind == "vec2" else _arr(values)

        return cls(np.asarray(d["positions_px"], float), tuple(d["pixel_size_A"]),
                   **{name: read(name, kind) for name, (kind, _) in COLUMN_FEATURES.items()})


#: Per-column features of :class:`Columns`: name → (kind, value when unknown). Kinds: ``float``,
#: ``int`` and ``str`` (one value per column) and ``vec2`` (``(n, 2)``).
COLUMN_FEATURES = {
    "intensity": ("float", np.nan), "sigma_px": ("float", np.nan), "sublattice": ("int", -1),
    "species": ("str", ""), "species_confidence": ("float", 0.0), "provenance": ("str", "detected"),
    "displacement_pm": ("vec2", np.nan), "flag": ("str", ""), "position_sigma_px": ("float", np.nan),
    "fit_r2": ("float", np.nan),
}


#: The one-value-per-column names of the ``vec2`` features.
VEC2_NAMES = {"displacement_pm": ("dy_pm", "dx_pm")}
#: Flat feature name → (kind, value when unknown), in table order (see :meth:`Columns.flat_features`).
FLAT_FEATURES = {flat: (("float", fill) if kind == "vec2" else (kind, fill))
                 for name, (kind, fill) in COLUMN_FEATURES.items()
                 for flat in (VEC2_NAMES[name] if kind == "vec2" else (name,))}


def _feature(values, n: int, kind: str, fill, name: str):
    """One feature normalised to ``n`` columns (``fill`` where not given)."""
    if kind == "str":
        return list(values) if values is not None and len(values) == n else [fill] * n
    if kind == "vec2":
        arr = np.full((n, 2), fill) if values is None else np.asarray(values, float)
        if arr.shape != (n, 2):
            raise ValueError(f"{name} has shape {arr.shape} for {n} columns")
        return arr
    arr = _column(values, n, fill)
    return arr.astype(int) if kind == "int" else arr


def _take(values, idx):
    return [values[i] for i in idx] if isinstance(values, list) else values[idx]


def _column(values, n: int, fill) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=float)
    arr = np.asarray(values, dtype=float).ravel()
    if len(arr) != n:
        raise ValueError(f"feature has {len(arr)} values for {n} columns")
    return arr


def _arr(values):
    return None if values is None else np.asarray([np.nan if v is None else v for v in values], float)


def _none_if_nan(x: float):
    return None if x is None or not np.isfinite(x) else float(x)


def _nan_list(arr) -> list:
    return [_none_if_nan(v) for v in np.asarray(arr, dtype=float)]


@dataclass
class MotifSite:
    """One column site of the 2D cell: fractional ``(u, v)`` along (a, b), mean intensity."""

    frac: tuple[float, float]
    intensity: float
    sublattice: int
    count: int = 0
    species: str = ""

    def to_dict(self) -> dict:
        return {"frac": _floats(self.frac), "intensity": _none_if_nan(self.intensity),
                "sublattice": int(self.sublattice), "count": int(self.count), "species": self.species}

    @classmethod
    def from_dict(cls, d: dict) -> "MotifSite":
        return cls(tuple(d["frac"]), d["intensity"] if d["intensity"] is not None else np.nan,
                   d["sublattice"], d.get("count", 0), d.get("species", ""))


@dataclass
class Lattice2D:
    """The measured 2D lattice: basis vectors ``(y, x)`` in Å, reduced (|a| <= |b|, gamma 60..120°).

    ``origin_px`` is the position of a lattice point ``(y, x)`` in pixels; ``motif`` the column sites
    of one cell; ``fft_mismatch`` the relative difference between the real-space basis and the one
    seen in the Fourier transform (``nan`` when not checked).
    """

    a_vec_A: np.ndarray
    b_vec_A: np.ndarray
    origin_px: np.ndarray = field(default_factory=lambda: np.zeros(2))
    motif: list[MotifSite] = field(default_factory=list)
    fft_mismatch: float = float("nan")
    uncertainty_A: float = float("nan")

    def __post_init__(self):
        self.a_vec_A = np.asarray(self.a_vec_A, dtype=float)
        self.b_vec_A = np.asarray(self.b_vec_A, dtype=float)
        self.origin_px = np.asarray(self.origin_px, dtype=float)

    @property
    def a_A(self) -> float:
        return float(np.linalg.norm(self.a_vec_A))

    @property
    def b_A(self) -> float:
        return float(np.linalg.norm(self.b_vec_A))

    @property
    def gamma_deg(self) -> float:
        c = np.dot(self.a_vec_A, self.b_vec_A) / (self.a_A * self.b_A)
        return float(np.degrees(np.arccos(np.clip(c, -1, 1))))

    @property
    def area_A2(self) -> float:
        return float(abs(np.cross(self.a_vec_A, self.b_vec_A)))

    def to_dict(self) -> dict:
        return {"a_A": self.a_A, "b_A": self.b_A, "gamma_deg": self.gamma_deg,
                "a_vec_A": _floats(self.a_vec_A), "b_vec_A": _floats(self.b_vec_A),
                "origin_px": _floats(self.origin_px), "motif": [m.to_dict() for m in self.motif],
                "fft_mismatch": _none_if_nan(self.fft_mismatch),
                "uncertainty_A": _none_if_nan(self.uncertainty_A)}

    @classmethod
    def from_dict(cls, d: dict) -> "Lattice2D":
        return cls(d["a_vec_A"], d["b_vec_A"], d.get("origin_px", [0, 0]),
                   [MotifSite.from_dict(m) for m in d.get("motif", [])],
                   d.get("fft_mismatch") if d.get("fft_mismatch") is not None else np.nan,
                   d.get("uncertainty_A") if d.get("uncertainty_A") is not None else np.nan)


@dataclass(frozen=True)
class HitGeometry:
    """How a template's projection maps onto the measured cell: the cell ``setting`` (one of
    ``geometry2d.SETTINGS``), 2D ``inverted``, the ``origin_shift`` (fractional in the measured
    cell), the isotropic ``scale`` (measured / template length), the template vectors
    ``basis_frac3`` whose projections are the measured a and b, and both cells ``(a, b [Å], γ [°])``."""

    setting: int
    inverted: bool
    origin_shift: tuple[float, float]
    scale: float
    basis_frac3: tuple
    template_cell_A: tuple[float, float, float]
    measured_cell_A: tuple[float, float, float]

    @classmethod
    def from_details(cls, d: dict) -> Optional["HitGeometry"]:
        if "setting" not in d:
            return None
        return cls(int(d["setting"]), bool(d.get("inverted", False)), tuple(d.get("origin_shift", (0.0, 0.0))),
                   float(d.get("scale", 1.0)), tuple(tuple(v) for v in d.get("basis_frac3", ())),
                   tuple(d.get("template_cell_A", ())), tuple(d.get("measured_cell_A", ())))


@dataclass(frozen=True)
class ScoreTerms:
    """The factors of a hit's score (each in [0, 1]; the score is their product): likelihoods of
    the lattice shape and scale, the column positions and the Z-contrast; priors of the elements,
    the cell variant, simplicity, plan view and the reading of the columns."""

    lattice_shape: float
    lattice_scale: float
    positions: float
    z_contrast: float
    elements: float
    cell_variant: float = 1.0
    simplicity: float = 1.0
    plan_view: float = 1.0
    reading_prior: float = 1.0

    @classmethod
    def from_details(cls, d: dict) -> Optional["ScoreTerms"]:
        names = ("lattice_shape", "lattice_scale", "positions", "z_contrast", "elements")
        if not all(isinstance(d.get(k), (int, float)) for k in names):
            return None
        extra = {k: float(d[k]) for k in ("cell_variant", "simplicity", "plan_view", "reading_prior")
                 if isinstance(d.get(k), (int, float))}
        return cls(*(float(d[k]) for k in names), **extra)


@dataclass
class TemplateHit:
    """One retrieved candidate: a (possibly re-decorated) structure seen along ``zone_axis``.

    ``score`` is in [0, 1] (higher is better); ``details`` holds the partial scores and the
    lattice mismatch. ``structure`` is the 3D pymatgen Structure to reconstruct from and
    ``lattice`` the measured Lattice2D (the reading of the columns) it was scored on; neither is in JSON.
    """

    template_id: str
    formula: str
    zone_axis: tuple[int, int, int]
    score: float
    details: dict = field(default_factory=dict)
    structure: Any = None
    source: str = ""
    lattice: Any = None

    @property
    def geometry(self) -> Optional[HitGeometry]:
        """The typed mapping of the template onto the measured cell (None for a bare hit)."""
        return HitGeometry.from_details(self.details)

    @property
    def terms(self) -> Optional[ScoreTerms]:
        """The typed factors of the score (None for a bare hit)."""
        return ScoreTerms.from_details(self.details)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        geometry, terms = self.geometry, self.terms
        return {"template_id": self.template_id, "formula": self.formula,
                "zone_axis": [int(v) for v in self.zone_axis], "score": float(self.score),
                "source": self.source, "geometry": None if geometry is None else asdict(geometry),
                "terms": None if terms is None else asdict(terms), "details": self.details}

    @classmethod
    def from_dict(cls, d: dict) -> "TemplateHit":
        """A hit read back from ``result.json`` (without its 3D structure and lattice)."""
        return cls(d["template_id"], d["formula"], tuple(int(v) for v in d["zone_axis"]), float(d["score"]),
                   dict(d.get("details") or {}), None, d.get("source", ""))


@dataclass
class Reconstruction:
    """The 3D structure rebuilt from a template and the measured lattice."""

    structure: Any  # pymatgen Structure, conventional standard cell
    template_id: str
    zone_axis: tuple[int, int, int]
    symprec_A: float
    warnings: list[str] = field(default_factory=list)
    #: Z-contrast fit of the labelled columns (``reconstruct.labels.fit_z_exponent``), or None.
    z_contrast: Optional[dict] = None

    def to_dict(self) -> dict:
        from .reconstruct.cif import structure_summary  # local: pymatgen stays out of import time

        return {**structure_summary(self.structure, symprec=self.symprec_A), "z_contrast": self.z_contrast}

    @classmethod
    def from_dict(cls, d: dict) -> "Reconstruction":
        """A reconstruction read back from ``result.json``'s ``structure`` block (its CIF)."""
        from pymatgen.core import Structure

        return cls(Structure.from_str(d["cif"], fmt="cif"), d.get("template_id", ""),
                   tuple(int(v) for v in d.get("zone_axis", (0, 0, 1))), float(d.get("symprec_A", 0.1)),
                   list(d.get("warnings", [])), d.get("z_contrast"))


@dataclass
class EnergyReport:
    """Energies of the (relaxed) structure from one machine-learned potential."""

    model: str
    energy_per_atom_eV: float
    formation_energy_per_atom_eV: Optional[float]
    relaxed: bool
    max_force_eV_A: float
    steps: int = 0
    lattice_change_pct: float = 0.0
    stress_GPa: Optional[list[float]] = None
    relaxed_structure: Any = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "energy_per_atom_eV": float(self.energy_per_atom_eV),
                "formation_energy_per_atom_eV": _none_if_nan(self.formation_energy_per_atom_eV)
                if self.formation_energy_per_atom_eV is not None else None,
                "relaxed": bool(self.relaxed), "max_force_eV_A": float(self.max_force_eV_A),
                "steps": int(self.steps), "lattice_change_pct": float(self.lattice_change_pct),
                "stress_GPa": self.stress_GPa, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict) -> "EnergyReport":
        e_f = d.get("formation_energy_per_atom_eV")
        return cls(d["model"], float(d["energy_per_atom_eV"]), None if e_f is None else float(e_f),
                   bool(d["relaxed"]), float(d["max_force_eV_A"]), int(d.get("steps", 0)),
                   float(d.get("lattice_change_pct", 0.0)), d.get("stress_GPa"), None, list(d.get("warnings", [])))
