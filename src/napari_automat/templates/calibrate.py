"""Calibrate from structure: the pixel size [Å/px] at which a known compound fits an uncalibrated image.

An image without a spatial calibration still gives its 2D lattice in pixels. Given the compound, as
a CIF (:func:`reference_library`: the CIF's projections along every zone axis up to index 2) or as
the element hint (the library's compounds with those elements, light ones aside, and the prototypes
the retrieval decorates with them; a hint of four elements or more is also read with two metals on
one site, as in Pb(Mg1/3Nb2/3)O3), every projected cell whose shape (b/a and γ, scale-free; within
``ScoreParams.max_shape``) matches the measured reduced cell implies a pixel size: template length /
measured length. Each implied pixel size is then scored by the retrieval itself, with the measured
lattice at that pixel size (lattice, motif positions, Z-contrast and priors), so that the columns
decide between zone axes and compounds whose cells have the same shape at different sizes.

The scores become probabilities over the distinct pixel sizes with the decision's hinted-mode
posterior (:func:`napari_automat.decision.posterior_masses`): pixel sizes that fit alike are all
reported (:attr:`StructureCalibration.alternatives`), not dropped. A pixel size obtained this way is
as good as the reference cell and is not an independent measurement of the lattice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..geometry2d import SETTINGS, measured_cell
from ..model import AutomatError, Lattice2D, Progress, TemplateHit, no_progress

#: Relative uncertainty of a user's reference cell (a CIF refined for the sample's composition and
#: temperature is good to a few tenths of a per cent; strain in a thin specimen adds more).
REFERENCE_CELL_SIGMA = 0.005
#: Implied pixel sizes closer than this (log) are scored in one retrieval (its scale window is wider).
SEED_TOLERANCE = 0.04
#: A candidate is rescored at its own pixel size; candidates closer than this (log) share one rescoring.
RESCORE_TOLERANCE = 0.01
#: At most this many distinct pixel sizes are rescored (the best of the first pass).
MAX_RESCORED = 10
#: Hits kept from each retrieval.
TOP_K = 10
#: Highest |index| of the zone axes of a reference CIF.
MAX_INDEX = 2
#: Prior of a hint read with two of its metals sharing one site, against the hint as given (a stated
#: prior, not fitted: a mixed site is the exception, but no library compound has one).
SHARED_SITE_PRIOR = 0.5


@dataclass
class PixelSizeFit:
    """One pixel size [Å/px] that a projection of the reference implies, with the retrieval hit that
    scores it (lattice at that pixel size) and its probability among the distinct pixel sizes."""

    pixel_size_A: float
    sigma_A: float
    hit: TemplateHit
    probability: float = 0.0
    #: How the hint was read when it was not as given (two metals sharing a site).
    note: str = ""

    @property
    def label(self) -> str:
        """``formula space-group [uvw]`` of the projection (and how the hint was read)."""
        zone = "".join(str(int(v)) for v in self.hit.zone_axis)
        text = f"{self.hit.formula} {self.hit.details.get('spacegroup') or ''} [{zone}]".replace("  ", " ")
        return f"{text}, {self.note}" if self.note else text

    def to_dict(self) -> dict:
        return {"pixel_size_A": round(self.pixel_size_A, 6), "pixel_size_sigma_A": round(self.sigma_A, 6),
                "source": f"structure: {self.label}", "template_id": self.hit.template_id,
                "zone_axis": [int(v) for v in self.hit.zone_axis], "score": round(self.hit.score, 4),
                "probability": round(self.probability, 4)}


@dataclass
class StructureCalibration:
    """The pixel size a compound implies: the most probable fit and the other pixel sizes that fit
    with probability at least :data:`napari_automat.decision.NONE_SHOWN`."""

    best: PixelSizeFit
    alternatives: list[PixelSizeFit] = field(default_factory=list)
    #: What the compound was given as: ``CIF <name>`` or ``elements <A, B>``.
    reference: str = ""
    #: The measured reduced cell ``(a, b, γ)`` in pixels and degrees.
    measured_cell_px: tuple[float, float, float] = (float("nan"),) * 3
    #: Probability that none of the scored projections is right.
    none_probability: float = 0.0
    #: From this probability up the best pixel size is stated without ambiguity.
    confident: float = 0.8

    @property
    def pixel_size_A(self) -> float:
        return self.best.pixel_size_A

    @property
    def sigma_A(self) -> float:
        return self.best.sigma_A

    @property
    def source(self) -> str:
        return f"structure: {self.best.label}"

    @property
    def ambiguous(self) -> bool:
        return self.best.probability < self.confident

    def summary(self) -> str:
        """One line: the pixel size, what it comes from, and the alternatives."""
        text = (f"pixel size {self.pixel_size_A:.4f} ± {self.sigma_A:.4f} Å/px from {self.best.label} "
                f"({self.reference}; p = {self.best.probability:.2f})")
        if self.alternatives:
            text += "; also fitting: " + "; ".join(
                f"{f.pixel_size_A:.4f} Å/px from {f.label} (p = {f.probability:.2f})" for f in self.alternatives)
        return text

    def warning(self) -> str:
        """The sentence result.json carries: the lattice is not independently measured."""
        text = (f"the image has no calibration: its pixel size, {self.pixel_size_A:.4f} ± {self.sigma_A:.4f} Å/px, "
                f"was derived from the structure ({self.best.label}, {self.reference}), so the lattice parameters are "
                "that reference's, not an independent measurement")
        if self.ambiguous:
            text += f"; not sure (p = {self.best.probability:.2f})"
            if self.none_probability >= self.best.probability:
                text += f": it fits poorly (none of the projections: p = {self.none_probability:.2f})"
        if self.alternatives:
            text += "; other pixel sizes fit too: " + "; ".join(
                f"{f.pixel_size_A:.4f} Å/px from {f.label} (p = {f.probability:.2f})" for f in self.alternatives)
        return text

    def to_dict(self) -> dict:
        return {"pixel_size_A": round(self.pixel_size_A, 6), "pixel_size_sigma_A": round(self.sigma_A, 6),
                "source": self.source, "reference": self.reference, "probability": round(self.best.probability, 4),
                "ambiguous": self.ambiguous, "none_probability": round(self.none_probability, 4),
                "template_id": self.best.hit.template_id, "zone_axis": [int(v) for v in self.best.hit.zone_axis],
                "measured_cell_px": [round(float(v), 4) for v in self.measured_cell_px],
                "alternatives": [f.to_dict() for f in self.alternatives]}


def read_reference(path: Union[str, Path]):
    """The structure in a CIF file (pymatgen Structure; partial occupancies kept)."""
    import warnings

    path = Path(path)
    if not path.is_file():
        raise AutomatError(f"reference CIF not found: {path}")
    try:
        from pymatgen.core import Structure

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad input file
        raise AutomatError(f"cannot read the reference CIF {path.name}: {exc}") from None
    if len(structure) == 0:
        raise AutomatError(f"the reference CIF {path.name} has no atoms")
    return structure


def reference_library(structure, name: str = "reference"):
    """A one-entry :class:`~.library.TemplateLibrary` of ``structure`` (pymatgen Structure, possibly
    disordered): its conventional cell projected along every zone axis up to index
    :data:`MAX_INDEX`, as the library builder projects its entries, never decorated."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .library import TemplateLibrary, entry_projections
    from .sources import SYMPREC
    from .table import ProjectionTable

    try:
        sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
        conv = sga.get_conventional_standard_structure()
        number, symbol = sga.get_space_group_number(), sga.get_space_group_symbol()
        n_orbits = len(sga.get_symmetrized_structure().equivalent_sites)
    except Exception:  # noqa: BLE001 - spglib finds no symmetry for some cells: take the cell as given
        conv, number, symbol, n_orbits = structure.copy(), 1, "P1", len(structure)
    elements = [el.symbol for el in sorted(conv.composition.elements, key=lambda el: el.X)]
    records = [dict(pr, entry=0) for pr in entry_projections((conv, elements, False))]
    if not records:
        raise AutomatError(f"{name}: no projection with resolvable columns along a zone axis up to index {MAX_INDEX}")
    entry = {"id": f"cif:{name}", "formula": conv.composition.formula.replace(" ", ""),
             "reduced_formula": conv.composition.reduced_formula, "elements": elements,
             "spacegroup_number": number, "spacegroup_symbol": symbol, "n_orbits": n_orbits,
             "is_2d": False, "decorate": False, "sources": [{"id": name, "source": "cif", "description": name}],
             "structure": {"lattice": np.round(conv.lattice.matrix, 6).tolist(),
                           "species": [{str(el): float(occ) for el, occ in site.species.items()} for site in conv],
                           "frac": np.round(np.mod(conv.frac_coords, 1.0), 6).tolist()}}
    return TemplateLibrary([entry], ProjectionTable.from_records(records, [len(elements)]), {"reference": name})


def calibrate_pixel_size(readings: Sequence[tuple[Lattice2D, float]], measured_pixel_size_A: float = 1.0,
                         elements: Sequence[str] = (), reference=None, library=None,
                         light_columns: Optional[bool] = False, z_exponent: float = 1.7, params=None,
                         posterior=None, progress: Progress = no_progress) -> StructureCalibration:
    """The pixel size [Å/px] at which the compound fits the measured lattice.

    ``readings``: ``(lattice, prior)`` readings of the columns (the first is the primary; see
    ``pipeline.column_readings``), measured with the placeholder ``measured_pixel_size_A`` [Å/px];
    the pixel sizes returned are in the same frame. The compound is ``reference`` (a CIF path or a
    pymatgen Structure) or else the element hint ``elements``, looked up in ``library`` (default: the
    packaged one), as given and with two of its metals sharing a site (:func:`_shared_site_hints`).
    ``light_columns``, ``z_exponent``, ``params`` (``ScoreParams``): as for :func:`~.retrieve.retrieve`;
    ``posterior``: the ``PosteriorParams`` whose hinted mode turns scores into probabilities. Raises
    :class:`AutomatError` when no projection of the compound fits.
    """
    from ..decision import NONE_SHOWN, PosteriorParams
    from .retrieve import DEFAULT_PARAMS, normalise_hint

    params = params or DEFAULT_PARAMS
    posterior = posterior or PosteriorParams()
    if not readings:
        raise AutomatError("no measured lattice to calibrate")
    primary = readings[0][0]
    if reference is not None:
        structure = reference if hasattr(reference, "lattice") else read_reference(reference)
        name = Path(reference).name if not hasattr(reference, "lattice") else structure.composition.reduced_formula
        library, what = reference_library(structure, name), f"CIF {name}"
        hypotheses = [((), np.ones(1, bool), 1.0, "")]
    else:
        from .library import load_library

        hint = normalise_hint(elements)
        if not hint:
            raise AutomatError("calibrating from structure needs the compound: an element hint or a reference CIF")
        library = library if library is not None else load_library()
        what = "elements " + ", ".join(hint)
        hypotheses = [(h, _relevant_entries(library, h, params), prior, note)
                      for h, prior, note in [(hint, 1.0, "")] + _shared_site_hints(hint)]
        hypotheses = [h for h in hypotheses if h[1].any()]
        if not hypotheses:
            raise AutomatError(f"the template library has no compound or prototype for {what}: "
                               "give a reference CIF (--reference-cif)")
    cell = measured_cell(primary)[0]
    a_px, b_px = (float(v) / measured_pixel_size_A for v in np.linalg.norm(cell, axis=1))
    cell_px = (a_px, b_px, math.degrees(math.atan2(cell[1, 1], cell[1, 0])))
    fits, shaped = [], False
    for k, (hint, entries, prior, note) in enumerate(hypotheses):
        factors = _shape_factors(library, entries, cell, params.max_shape)
        shaped = shaped or bool(len(factors))
        part = lambda f, m="", k=k: progress((k + f) / len(hypotheses), m)  # noqa: E731
        found = _fits(readings, measured_pixel_size_A, factors, hint, library, light_columns, z_exponent, params,
                      reference is not None, part)
        for fit in found:
            fit.hit.score *= prior ** params.prior_weight
            fit.note = note
        fits += found
    if not fits:
        how = "with its columns where the image has them" if shaped else "in the shape of its projected cell"
        raise AutomatError(_no_fit(what, cell_px, params.max_shape, how))
    best, alternatives, none_p = _posterior(fits, posterior, NONE_SHOWN)
    progress(1.0, f"pixel size {best.pixel_size_A:.4f} Å/px from {best.label}")
    return StructureCalibration(best, alternatives, what, cell_px, none_p, posterior.confident)


def _fits(readings, measured_pixel_size_A: float, factors: np.ndarray, hint: tuple[str, ...], library,
          light_columns, z_exponent: float, params, from_cif: bool, progress: Progress) -> list[PixelSizeFit]:
    """The pixel sizes that the projections with the measured cell shape (``factors``: template /
    measured length) imply, each scored by the retrieval at that pixel size (``hint``'s compounds only)."""
    def scored(pixel: float) -> list[TemplateHit]:
        return [h for h in _retrieve_at(readings, pixel / measured_pixel_size_A, hint, library, light_columns,
                                        z_exponent, params) if _of_compound(h, hint, params)]

    # First pass: one retrieval per group of implied pixel sizes; each hit names its own pixel size.
    seeds = _centres(np.log(measured_pixel_size_A * factors), SEED_TOLERANCE)
    found: dict[tuple, tuple[float, float]] = {}
    for k, log_p in enumerate(seeds):
        progress(0.8 * k / len(seeds), f"pixel sizes from the structure: {k + 1}/{len(seeds)}")
        for hit in scored(math.exp(log_p)):
            key = (hit.template_id, tuple(hit.zone_axis))
            if key not in found or hit.score > found[key][0]:
                found[key] = (hit.score, math.exp(log_p) / _relative_scale(hit))
    # Second pass: each candidate scored at its own pixel size (no scale penalty), the best first.
    order = sorted(found.values(), key=lambda v: -v[0])
    pixels = _centres(np.log([p for _, p in order]), RESCORE_TOLERANCE, keep_order=True)[:MAX_RESCORED]
    fits = []
    for k, log_p in enumerate(pixels):
        progress(0.8 + 0.2 * k / len(pixels), "scoring the pixel sizes")
        pixel = math.exp(log_p)
        centred = [h for h in scored(pixel) if abs(math.log(_relative_scale(h))) <= RESCORE_TOLERANCE]
        if centred:
            hit = max(centred, key=lambda h: h.score)
            fits.append(_fit(hit, pixel / _relative_scale(hit), readings[0][0], from_cif, params))
    return fits


def _shared_site_hints(hint: tuple[str, ...]) -> list[tuple[tuple[str, ...], float, str]]:
    """``(hint, prior, note)`` for the hint with two of its metals on one site, the lighter left out (the
    heavier dominates the contrast), at :data:`SHARED_SITE_PRIOR`: solid solutions and relaxors such
    as Pb(Mg1/3Nb2/3)O3, which no ordered compound nor any decoration with every hinted element
    describes. Only for hints of four elements or more, whose compounds the library and its decorated
    prototypes (as many species as the hint) rarely hold."""
    from pymatgen.core import Element

    if len(hint) < 4:
        return []
    metals = sorted((el for el in hint if Element(el).is_metal or Element(el).is_metalloid),
                    key=lambda el: Element(el).Z)
    return [(tuple(el for el in hint if el != light), SHARED_SITE_PRIOR, f"{light} on a shared metal site")
            for light in metals[:-1]]


def _no_fit(what: str, cell_px: tuple, max_shape: float, how: str) -> str:
    a, b, gamma = cell_px
    return (f"no projection of {what} fits the measured lattice (a = {a:.2f} px, b = {b:.2f} px, γ = {gamma:.1f}°) "
            f"{how} (zone axes up to index {MAX_INDEX}, shape within {100 * max_shape:.0f}%): check the compound "
            "or set the pixel size (--pixel-size)")


def _relevant_entries(library, hint: tuple[str, ...], params) -> np.ndarray:
    """Mask of the library's entries that can be the hinted compound: those with the hinted elements
    (and light ones the hint may leave out), and the prototypes the retrieval decorates with the hint
    (as many species, decoration allowed)."""
    from pymatgen.core import Element

    want = set(hint)
    decorates = len(want) <= params.max_decorated_species
    out = []
    for e in library.entries:
        have = set(e["elements"])
        compound = want <= have and all(Element(el).Z <= params.light_z for el in have - want)
        out.append(compound or (decorates and e.get("decorate", True) and len(have) == len(want)))
    return np.array(out, bool)


def _shape_factors(library, entries: np.ndarray, cell: np.ndarray, max_shape: float) -> np.ndarray:
    """Template length / measured length of every pattern of ``entries`` whose reduced cell, in its
    best setting (swap, mirror, b ± a), has the shape of the measured ``cell`` (2x2, any length unit)
    within ``max_shape`` (anisotropic log strain with the angle in rad, as the retrieval measures it)."""
    table = library.projections
    rows = np.flatnonzero(entries[table.proj_entry[table.pat_proj]])
    if not len(rows):
        return np.zeros(0)
    vecs = np.einsum("sij,njk->nsik", SETTINGS, table.pat_cell[rows].astype(float))  # (n, 8, 2, 2)
    lengths = np.linalg.norm(vecs, axis=-1)
    cos = np.einsum("nsk,nsk->ns", vecs[:, :, 0], vecs[:, :, 1]) / (lengths[..., 0] * lengths[..., 1])
    gammas = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    a, b = np.linalg.norm(cell, axis=1)
    gamma = math.degrees(math.atan2(cell[1, 1], cell[1, 0]))
    la, lb = np.log(a / lengths[..., 0]), np.log(b / lengths[..., 1])
    shape = np.sqrt(0.5 * (la - lb) ** 2 + np.radians(gamma - gammas) ** 2)
    best = shape.argmin(1)
    pick = np.arange(len(rows))
    ok = shape[pick, best] <= max_shape
    return np.exp(-0.5 * (la + lb)[pick, best][ok])


def _centres(log_values, tolerance: float, keep_order: bool = False) -> list[float]:
    """Representatives of ``log_values`` such that every value is within ``tolerance`` of one: the
    midpoints of sorted runs, or with ``keep_order`` the first value of each run in the given order."""
    values = [float(v) for v in log_values]
    if keep_order:
        out: list[float] = []
        for v in values:
            if all(abs(v - c) > tolerance for c in out):
                out.append(v)
        return out
    values.sort()
    out, start = [], None
    for v in values + [math.inf]:
        if start is None:
            start = last = v
        elif v - start > 2 * tolerance:
            out.append(0.5 * (start + last))
            start = last = v
        else:
            last = v
    return out


def _retrieve_at(readings, factor: float, hint, library, light_columns, z_exponent, params) -> list[TemplateHit]:
    """The retrieval's hits with every reading's lattice lengths times ``factor``, pooled over readings."""
    from .retrieve import pool_readings, retrieve

    scored = []
    for lattice, prior in readings:
        scaled = replace(lattice, a_vec_A=lattice.a_vec_A * factor, b_vec_A=lattice.b_vec_A * factor,
                         uncertainty_A=lattice.uncertainty_A * factor)
        scored.append((retrieve(scaled, elements=hint, library=library, top_k=TOP_K, z_exponent=z_exponent,
                                light_columns=light_columns, params=params), prior))
    return pool_readings(scored, TOP_K, params.prior_weight)


def _of_compound(hit: TemplateHit, hint: tuple[str, ...], params) -> bool:
    """Whether a hit is the hinted compound (every hit of a reference library is)."""
    if not hint:
        return True
    from pymatgen.core import Element

    have = {el.symbol for el in hit.structure.composition.elements}
    return set(hint) <= have and all(Element(el).Z <= params.light_z for el in have - set(hint))


def _relative_scale(hit: TemplateHit) -> float:
    """Measured / expected template length: the hit's scale, over the radius-predicted scale of a
    decorated prototype."""
    decoration = hit.details.get("decoration")
    predicted = float(decoration.get("predicted_scale") or 1.0) if decoration else 1.0
    return float(hit.details.get("scale") or 1.0) / predicted


def _fit(hit: TemplateHit, pixel: float, lattice: Lattice2D, from_cif: bool, params) -> PixelSizeFit:
    """A scored pixel size with its uncertainty: the measured lattice's, the reference cell's (a CIF,
    a library compound or a decorated prototype's predicted scale) and the disagreement of the two
    cell lengths (distortion of the image or of the structure)."""
    a = lattice.a_A
    measured = lattice.uncertainty_A / a if np.isfinite(lattice.uncertainty_A) and a > 0 else 0.01
    cell = (REFERENCE_CELL_SIGMA if from_cif else
            params.sigma_scale_decorated if hit.details.get("decoration") else params.sigma_cell)
    t, m = hit.details.get("template_cell_A"), hit.details.get("measured_cell_A")
    spread = 0.5 * abs(math.log(m[0] / t[0]) - math.log(m[1] / t[1])) if t and m else 0.0
    return PixelSizeFit(pixel, pixel * math.sqrt(measured ** 2 + cell ** 2 + spread ** 2), hit)


def _posterior(fits: list[PixelSizeFit], posterior, shown: float) -> tuple[PixelSizeFit, list[PixelSizeFit], float]:
    """The most probable pixel size, the others at least ``shown`` probable, and the probability of
    none. A fit is the same pixel size as a better one when they differ by less than their combined
    standard deviation."""
    from ..decision import posterior_masses

    fits = sorted(fits, key=lambda f: -f.hit.score)
    heads: list[PixelSizeFit] = []
    groups = []
    for f in fits:
        g = next((i for i, h in enumerate(heads) if abs(math.log(f.pixel_size_A / h.pixel_size_A))
                  <= math.hypot(f.sigma_A / f.pixel_size_A, h.sigma_A / h.pixel_size_A)), None)
        if g is None:
            heads.append(f)
            g = len(heads) - 1
        groups.append(g)
    beta, none_log, misrank = posterior.for_mode(True)
    masses, none_p = posterior_masses([math.log(max(f.hit.score, 1e-12)) for f in fits], groups, beta, none_log,
                                      misrank)
    for head, mass in zip(heads, masses):
        head.probability = mass
    ranked = sorted(heads, key=lambda h: -h.probability)
    return ranked[0], [h for h in ranked[1:] if h.probability >= shown], none_p


__all__ = ["PixelSizeFit", "StructureCalibration", "calibrate_pixel_size", "read_reference", "reference_library"]
