"""Template retrieval: rank library projections against a measured 2D lattice and motif.

Score = lattice shape × lattice scale × column positions × Z-contrast × elements, each in [0, 1]:

* lattice: the measured reduced cell (a, b, gamma) against each visible projected cell in its
  equivalent settings (swap, gamma ↔ 180° − gamma, b ± a), after the best isotropic rescaling
  (±8% for real compounds; around the radius-predicted scale for decorated prototypes);
* motif: measured sites against template columns after the best origin shift, setting and 2D
  inversion (RMS distance [Å] of the sites; template columns not seen cost more the brighter
  they are, so faint columns may be missed);
* Z-contrast: log site intensities against log ``Σ Z^n`` of the matched columns, up to a factor;
* elements: 1 when the template has the hinted elements, 0.5–0.9 for a prototype decorated with
  them (plausible oxidation states, data-mined substitution probability; intermetallics need no
  charge balance), 0.8 with light elements (Z ≤ 9) the hint left out, low when it lacks hinted
  elements, 0 when it has a heavier element the hint does not name;
* simplicity: :attr:`ScoreParams.simplicity` per symmetry-distinct site beyond one per element, so that of
  structures a projection cannot tell apart the simplest is preferred (cubic SrTiO3, 3 sites,
  over its tilted I4/mcm and Pnma variants, 4, when the image shows no superstructure);
* plan view: :attr:`ScoreParams.plan_view_bulk` for a layered crystal along its layer normal, so that its
  monolayer, which projects the same way, is preferred.

Signals that show light columns (annular bright field, bright field, iDPC) are matched against the
templates with every column visible as well, with a flatter Z-contrast (:attr:`ScoreParams.light_z_exponent`).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations, permutations, product
from typing import Optional, Sequence

import numpy as np

from ..geometry2d import SETTINGS, SETTINGS_INV, measured_cell, periodic_distance
from ..model import AutomatError, Lattice2D, Parameters, Progress, TemplateHit, no_progress
from .library import STRONG_FRACTION, VISIBLE_FRACTION

@dataclass(frozen=True)
class ScoreParams(Parameters):
    """Every number the retrieval score is made of (see the module docstring). Lengths in Å,
    mismatches as log ratios; ``PipelineConfig.score`` overrides fields, ``result.json`` records them."""

    #: Largest anisotropic lattice mismatch (strain-like: log lengths and angle in rad) considered.
    max_shape: float = 0.08
    #: Width of the lattice-shape likelihood.
    sigma_shape: float = 0.03
    #: Cell settings whose shape mismatch is within this of the best one are all tried for the motif.
    setting_tolerance: float = 0.01
    #: Largest isotropic rescaling (log) of a library compound: its cell against the image calibration.
    max_scale: float = math.log(1.08)
    #: Width of the isotropic-scale likelihood of a library compound (image calibration and DFT cells).
    sigma_scale: float = 0.04
    #: Relative uncertainty of a library compound's own cell (DFT-relaxed Materials Project cells are
    #: typically 1–2% off experiment): the floor of the calibration factor's uncertainty.
    sigma_cell: float = 0.015
    #: Relative uncertainty of a library cell's shape (its errors are mostly isotropic): the floor of
    #: the scan distortion's uncertainty (``decision.scan_distortion``; on the shifted tuning split
    #: the scan shear is read to 0.0001 median and 0.003 at the 90th percentile).
    sigma_cell_shape: float = 0.004
    #: Decorated prototypes: the range of scales considered ...
    decorated_scale: tuple[float, float] = (0.6, 1.6)
    #: ... and the width of the likelihood around the radius-predicted scale,
    sigma_scale_decorated: float = 0.06
    #: ... whose deviations up to this (log) cost nothing; a decoration whose predicted scale is
    #: more than ``scale_cut`` widths off the measured one is not scored.
    predicted_scale_slack: float = 0.05
    scale_cut: float = 3.0
    #: A template column at least ``FAINT[1]`` of the brightest that no site sits on costs all but
    #: this of the score (fainter ones cost less, down to nothing at ``FAINT[0]``).
    miss_floor: float = 0.05
    #: Width of the column-position likelihood [Å] ...
    sigma_pos_A: float = 0.3
    #: ... and of the log-intensity (Z-contrast) likelihood.
    sigma_log_i: float = 0.3
    #: Prototypes with more species than this are not decorated (n! permutations).
    max_decorated_species: int = 4
    #: Prior of a decoration: ``decoration_base + decoration_gain × substitution likelihood``.
    decoration_base: float = 0.5
    decoration_gain: float = 0.4
    #: Likelihood factor of a decoration per element in an uncommon oxidation state (not an alloy).
    uncommon_state: float = 0.3
    #: Elements up to this Z may be missing from a hint (light, often invisible in HAADF) ...
    light_z: int = 9
    #: ... at this prior; a template lacking hinted elements gets ``lacking_elements`` × overlap.
    light_left_out: float = 0.8
    lacking_elements: float = 0.1
    #: Prior factor per symmetry-distinct site beyond one per element: of structures a projection
    #: cannot tell apart the simplest is preferred (cubic SrTiO3 over its tilted variants).
    simplicity: float = 0.9
    #: Prior factor of a layered crystal seen along its layer normal: that view cannot tell one
    #: layer from the stack, and plan-view images of van der Waals materials are mostly of
    #: exfoliated flakes, so the monolayer ranks first and the bulk stays next to it.
    plan_view_bulk: float = 0.97
    #: Z-contrast exponent of light-column signals (annular bright field, bright field, iDPC), whose
    #: column contrast grows far more slowly with Z than HAADF's.
    light_z_exponent: float = 0.25
    #: With the signal unknown, both readings are scored and the light-column one carries a prior of
    #: 1 / ``light_margin`` (HAADF-like is the common case).
    light_margin: float = 1.25
    #: Prior of the reading without the motif sites that completion found in the cell-averaged
    #: residual (those sites are evidence of their own; the reading with them has prior 1).
    first_pass_prior: float = 0.5
    #: Motif sites fainter than this fraction of the brightest may be probe tails or bright-field
    #: fringes: the reading without them is scored too ...
    faint_site: float = 0.25
    #: ... with this prior.
    faint_dropped_prior: float = 0.5
    #: Energy prior of the stability stage: a candidate's evidence is its score times
    #: exp(−max(0, Ef − Ef_min − ``metastable_eV``) / ``energy_scale_eV``) [eV/atom]: polymorphs within
    #: the usual range of metastable crystals keep their score ...
    metastable_eV: float = 0.07
    energy_scale_eV: float = 0.1
    #: ... among the distinct candidates scoring at least this fraction of the best.
    stability_window: float = 0.1
    #: κ: the power of every prior factor (elements, simplicity, plan view, reading, energy) in the
    #: score, so that score = Π likelihood terms × Π priors^κ. The decision raises scores to β
    #: (``decision.PosteriorParams``); κ = 1 tempers the priors with the likelihood, κ = 1/β takes
    #: them at their stated strength. Fitted with β on the tuning split (``automat bench calibrate``).
    prior_weight: float = 1.0



#: Template columns fainter than FAINT[0] (relative to the brightest) may go unseen freely; from
#: FAINT[1] up they are always detected (the library's build fractions).
FAINT = (VISIBLE_FRACTION, STRONG_FRACTION)
#: Formulas up to this many atoms may also be mixed-valence (Fe3O4).
MAX_GUESS_ATOMS = 12
#: Non-metals that take each other's interstitial sites in carbides, nitrides and borides.
INTERSTITIAL = {"B", "C", "N"}
DEFAULT_PARAMS = ScoreParams()


class _Index:
    """Pattern rows of a library's projection table as arrays for the vectorised lattice filter;
    the rows' columns are read from the table when a row is scored."""

    def __init__(self, library):
        from pymatgen.core import Element

        table = library.projections
        self.table = table
        self.z = [np.array([Element(el).Z for el in e["elements"]], float) for e in library.entries]
        self.n_species = np.array([len(e["elements"]) for e in library.entries])
        self.prototype = np.array([e.get("decorate", True) for e in library.entries], bool)
        self.extra_sites = np.array([max(0, e.get("n_orbits", len(e["elements"])) - len(e["elements"]))
                                     for e in library.entries], float)
        self.proj = table.pat_proj
        self.entry = table.proj_entry[table.pat_proj]
        layered = np.array([e.get("layered", False) for e in library.entries], bool)
        plan_view = layered[table.proj_entry] & np.all(table.proj_axis == (0, 0, 1), axis=1)  # per projection
        self.plan_view_rows = plan_view[self.proj]
        self._priors: dict = {}
        # Rows showing the columns visible with the entry's own species (at the build's Z exponent),
        # with and without the faint ones; rows showing every column (light-column signals).
        self.own = table.pat_own
        self.n_columns = np.diff(table.full_start)  # per projection
        self.every = np.diff(table.vis_start) == self.n_columns[table.pat_proj]
        self.lengths, self.gammas = _settings_metric(table.pat_cell.astype(float))
        # Reduced cell lengths (log Å), sorted by the shorter, to find the rows a lattice can match.
        log_ab = np.log(self.lengths[:, 0])
        self.a_order = np.argsort(log_ab[:, 0], kind="stable")
        self.log_a_sorted, self.log_b = log_ab[self.a_order, 0], log_ab[:, 1]
        self.keys: dict[tuple, tuple] = {}
        self._patterns: dict[int, dict] = {}
        self._visible: dict[int, tuple] = {}

    def priors(self, params: ScoreParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(simplicity per entry, plan-view factor per row, prior per row)`` under ``params`` (the
        last to the power ``params.prior_weight``)."""
        key = (params.simplicity, params.plan_view_bulk, params.prior_weight)
        if key not in self._priors:
            simplicity = params.simplicity ** self.extra_sites
            plan_view = np.where(self.plan_view_rows, params.plan_view_bulk, 1.0)
            self._priors[key] = (simplicity, plan_view, (simplicity[self.entry] * plan_view) ** params.prior_weight)
        return self._priors[key]

    def rows_near(self, a: float, b: float, low: float, high: float, max_shape: float) -> np.ndarray:
        """Rows whose reduced cell lengths, times a scale in ``[exp(low), exp(high)]``, are within
        ``max_shape`` (log) of the measured ``a <= b`` [Å]. Every row the lattice filter can pass
        is among them: at the best setting each length is within ``shape / √2`` of the scale."""
        lo = np.searchsorted(self.log_a_sorted, math.log(a) - high - max_shape, side="left")
        hi = np.searchsorted(self.log_a_sorted, math.log(a) - low + max_shape, side="right")
        rows = self.a_order[lo:hi]
        db = math.log(b) - self.log_b[rows]
        return rows[(db >= low - max_shape) & (db <= high + max_shape)]

    def pattern(self, r: int) -> dict:
        """``kind``, ``visible``, ``basis``, ``frac`` (k, 2) and ``counts`` (k, n_elements) of row ``r``."""
        if r not in self._patterns:
            t = self.table
            self._patterns[r] = {"kind": "geometric" if t.pat_kind[r] else "weighted", "visible": list(self.visible(r)),
                                 "basis": t.pat_basis[r].astype(float), "frac": t.pattern_frac(r), "counts": t.pattern_counts(r)}
        return self._patterns[r]

    def visible(self, r: int) -> tuple:
        if r not in self._visible:
            self._visible[r] = self.table.visible(r)
        return self._visible[r]

    def full_counts(self, pi: int) -> np.ndarray:
        return self.table.full_counts_of(pi)

    def visible_keys(self, pi: int, z: np.ndarray, z_exponent: float) -> tuple:
        """Indices of the columns of projection ``pi`` visible with atomic numbers ``z``: all above
        ``VISIBLE_FRACTION`` of the brightest, and only those above ``STRONG_FRACTION`` (if fewer)."""
        memo = (pi, tuple(z), z_exponent)
        if memo not in self.keys:
            w = self.full_counts(pi) @ z ** z_exponent
            keys = [tuple(int(i) for i in np.flatnonzero(w >= f * w.max())) for f in (VISIBLE_FRACTION, STRONG_FRACTION)]
            self.keys[memo] = tuple(dict.fromkeys(keys))
        return self.keys[memo]

    def rows(self, pi: int, key: tuple) -> list[int]:
        """Rows of projection ``pi`` with visible columns ``key`` (none when the file lacks them)."""
        return [r for r in self.table.pattern_rows(pi) if self.visible(r) == key]


def _settings_metric(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|v1|, |v2|`` (R, 8, 2) and their angle [deg] (R, 8) for every setting of each cell (R, 2, 2)."""
    vecs = np.einsum("sij,rjk->rsik", SETTINGS, cells.reshape(-1, 2, 2))
    lengths = np.linalg.norm(vecs, axis=-1)
    cosg = np.einsum("rsk,rsk->rs", vecs[:, :, 0], vecs[:, :, 1]) / (lengths[..., 0] * lengths[..., 1])
    return lengths, np.degrees(np.arccos(np.clip(cosg, -1, 1)))


def _index(library) -> _Index:
    if "index" not in library.cache:
        library.cache["index"] = _Index(library)
    return library.cache["index"]


def _motif_scores(frac_t: np.ndarray, log_w: np.ndarray, settings: Sequence[int], meas: tuple,
                  params: ScoreParams = DEFAULT_PARAMS) -> list[dict]:
    """Best position and Z-contrast agreement per weight vector in ``log_w`` (P, n), over the
    cell settings, the 2D inversion and the origin shifts that put the brightest measured site
    on a template column."""
    cell, frac_m, intensity = meas
    P = len(log_w)
    if len(frac_m) == 0:
        return [{"position": 1.0, "intensity": 1.0, "rms_A": None, "setting": settings[0], "inverted": False,
                 "shift": [0.0, 0.0], "sites": []} for _ in range(P)]
    use_i = bool(np.all(np.isfinite(intensity)) and np.all(intensity > 0) and len(frac_m) > 1)
    anchor = int(np.argmax(intensity)) if use_i else 0
    ops = [(s, sign) for s in settings for sign in (1.0, -1.0)]
    g = np.stack([sign * frac_t @ SETTINGS_INV[s] for s, sign in ops])  # (T, n, 2)
    shifts = frac_m[anchor] - g  # (T, n, 2): the anchor site on each template column
    d = periodic_distance(frac_m, g[:, None] + shifts[:, :, None], cell)  # (T, S, k, n)
    d = d.reshape(-1, *d.shape[2:])  # (T*S, k, n)
    nearest = d.argmin(-1)
    # Every measured site must sit on a template column ...
    rms = np.sqrt((d.min(-1) ** 2).mean(-1))
    # ... and every template column should have been seen, the fainter the less surely.
    w_rel = np.exp(log_w - log_w.max(1, keepdims=True))  # (P, n)
    seen = np.clip((w_rel - FAINT[0]) / (FAINT[1] - FAINT[0]), 0, 1) * (1 - params.miss_floor)
    missed = 1 - np.exp(-0.5 * (d.min(-2) / params.sigma_pos_A) ** 2)  # (T*S, n): 0 on a site, 1 far away
    pos = np.exp(-0.5 * (rms / params.sigma_pos_A) ** 2) * np.prod(1 - seen[:, None, :] * missed[None], axis=-1)
    if use_i:
        r = np.log(intensity) - log_w[:, nearest]  # (P, T*S, k)
        r -= r.mean(-1, keepdims=True)
        inten = np.exp(-0.5 * (np.sqrt((r ** 2).mean(-1)) / params.sigma_log_i) ** 2)
    else:
        inten = np.ones((P, len(rms)))
    best = np.argmax(pos * inten, axis=1)
    n_shift = g.shape[1]
    return [{"position": float(pos[p, k]), "intensity": float(inten[p, k]), "rms_A": float(rms[k]),
             "setting": ops[k // n_shift][0], "inverted": ops[k // n_shift][1] < 0,
             "shift": np.mod(shifts[k // n_shift, k % n_shift], 1.0).tolist(), "sites": nearest[k].tolist()}
            for p, k in enumerate(best)]


@lru_cache(maxsize=4096)
def _oxidation_guess(formula: str) -> Optional[tuple[int, dict]]:
    """``(n_uncommon, oxidation state per element)`` of a charge-balanced guess, or None.

    One ICSD state per element is tried, preferring pymatgen's common states (``n_uncommon``
    counts the elements that need another); then one element may mix two of its common states
    (Fe3O4: Fe2+ + 2 Fe3+), counted as one uncommon state, with its mean state."""
    from pymatgen.core import Composition

    comp = Composition(formula)
    common = [el.common_oxidation_states for el in comp.elements]
    states = [tuple(el.icsd_oxidation_states) or c for el, c in zip(comp.elements, common)]
    best = None
    for combo in product(*states):
        if abs(sum(n * o for n, o in zip(comp.values(), combo))) < 1e-6:
            rank = sum(o not in c for c, o in zip(common, combo))  # prefer the most common states
            if best is None or rank < best[0]:
                best = (rank, {el.symbol: float(o) for el, o in zip(comp.elements, combo)})
    if best is not None:
        return best
    mixed = _mixed_valence([el.symbol for el in comp.elements], list(comp.values()), common)
    return (1, mixed) if mixed is not None else None


def _mixed_valence(symbols: list, counts: list, common: list) -> Optional[dict]:
    """Mean oxidation states with one element split over two of its common states, or None."""
    if sum(counts) > MAX_GUESS_ATOMS:
        return None
    for i, n in enumerate(counts):
        if n < 2 or abs(n - round(n)) > 1e-6 or len(common[i]) < 2:
            continue
        n = int(round(n))
        others = [j for j in range(len(counts)) if j != i]
        for combo in product(*(common[j] for j in others)):
            rest = sum(counts[j] * o for j, o in zip(others, combo))
            for low, high in combinations(sorted(common[i]), 2):
                for k in range(1, n):
                    if abs(rest + k * low + (n - k) * high) < 1e-6:
                        out = {symbols[j]: float(o) for j, o in zip(others, combo)}
                        return {**out, symbols[i]: (k * low + (n - k) * high) / n}
    return None


@lru_cache(maxsize=1)
def _substitution():
    try:
        from pymatgen.core.structure_prediction.substitution_probability import SubstitutionProbability
    except ImportError:  # older pymatgen
        from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability
    return SubstitutionProbability()


@lru_cache(maxsize=65536)
def _lambda(new: str, old: str) -> Optional[float]:
    """pymatgen's substitution log-likelihood of species ``new`` for ``old`` (``"Sr2+"``), or None
    when the pair was never observed."""
    from pymatgen.core import Species

    sub = _substitution()
    lam = sub.get_lambda(Species.from_str(new), Species.from_str(old))
    return None if lam == sub.alpha else float(lam)


def _species(el: str, oxi: Optional[dict]):
    from pymatgen.core import Species

    if oxi is None or el not in oxi or abs(oxi[el] - round(oxi[el])) > 1e-6:
        return None
    return Species(el, int(round(oxi[el])))


def _metallic(el: str) -> bool:
    from pymatgen.core import Element

    return Element(el).is_metal or Element(el).is_metalloid


def _same_kind(old: str, new: str) -> bool:
    """Whether ``new`` may take ``old``'s site in an intermetallic: metal or metalloid for metal or
    metalloid, a non-metal of the same group, or B, C and N for each other (carbides, nitrides)."""
    from pymatgen.core import Element

    if _metallic(old) or _metallic(new):
        return _metallic(old) and _metallic(new)
    return Element(old).group == Element(new).group or {old, new} <= INTERSTITIAL


def _decorations(entry: dict, hint: tuple[str, ...], uncommon_state: float = DEFAULT_PARAMS.uncommon_state) -> list[dict]:
    """Plausible assignments of the hinted elements to the species of a prototype, with the
    substitution likelihood (0..1; times ``uncommon_state`` per element whose charge balance
    needs an uncommon oxidation state, as Ag3+ in AgCl3) and the radius-predicted lattice scale."""
    from pymatgen.core import Composition, Element

    old = entry["elements"]
    comp = {el.symbol: n for el, n in Composition(entry["reduced_formula"]).items()}
    old_oxi = (_oxidation_guess(entry["reduced_formula"]) or (0, None))[1]
    metallic = all(map(_metallic, old))
    out = []
    for perm in permutations(hint):
        mapping = dict(zip(old, perm))
        new_comp = Composition({mapping[el]: n for el, n in comp.items()})
        new_formula = new_comp.reduced_formula
        guess = _oxidation_guess(new_formula)
        # No charge balance for intermetallics: metals and metalloids only (NiTiSn on MgAgAs), or a
        # prototype that has no balanced states itself (Cr2AlC) decorated kind for kind (Ti2AlN).
        alloy = (metallic and all(map(_metallic, perm))) or (
            old_oxi is None and all(_same_kind(o, n) for o, n in mapping.items()))
        if guess is None and not alloy:
            continue
        uncommon, new_oxi = (0, None) if guess is None or alloy else guess
        q = []
        for o, n in mapping.items():
            if o == n:
                q.append(1.0)
                continue
            so, sn = _species(o, old_oxi), _species(n, new_oxi)
            lam = _lambda(str(sn), str(so)) if so is not None and sn is not None else None
            q.append(0.5 if lam is None else 1 / (1 + math.exp(-lam / 1.5)))  # 0.5: never observed
        radius = lambda el: Element(el).atomic_radius or 1.5  # noqa: E731
        scale = sum(n * radius(mapping[el]) for el, n in comp.items()) / sum(n * radius(el) for el, n in comp.items())
        out.append({"mapping": mapping, "formula": new_formula,
                    "likelihood": float(np.prod(q) ** (1 / len(q))) * uncommon_state ** uncommon,
                    "scale": float(scale), "z": np.array([Element(mapping[el]).Z for el in old], float)})
    return out


def _element_score(elements: list[str], hint: tuple[str, ...], params: ScoreParams = DEFAULT_PARAMS) -> float:
    from pymatgen.core import Element

    have, want = set(elements), set(hint)
    if not want or have == want:
        return 1.0
    if any(Element(el).Z > params.light_z for el in have - want):
        return 0.0  # the hint rules out a heavy element it does not name
    if want < have:
        return params.light_left_out  # light elements the hint may leave out
    return params.lacking_elements * len(have & want) / len(have | want)


def normalise_hint(elements) -> tuple[str, ...]:
    from pymatgen.core import Element

    out = []
    for el in elements or ():
        sym = str(el).strip()
        sym = sym[:1].upper() + sym[1:].lower()
        try:
            Element(sym)
        except ValueError:
            raise AutomatError(f"unknown element in the hint: {el!r}") from None
        if sym not in out:
            out.append(sym)
    return tuple(out)


def retrieve(lattice: Lattice2D, elements: Sequence[str] = (), library=None, top_k: int = 10,
             z_exponent: float = 1.7, light_columns: Optional[bool] = False,
             progress: Progress = no_progress, params: ScoreParams = DEFAULT_PARAMS) -> list[TemplateHit]:
    """Rank the template projections against the measured ``lattice`` (and its motif), best first.

    ``elements`` is an optional hint such as ``("Sr", "Ti", "O")``; prototypes with as many species
    are then also decorated with these elements. ``z_exponent`` sets the Z-contrast of the columns
    (which columns are visible was fixed when the library was built). ``light_columns``: the image
    shows light columns too (annular bright field, bright field, iDPC), so templates are also
    matched with every column visible, and intensities compare with ``params.light_z_exponent``
    instead; None (signal unknown): both readings are scored side by side and pooled, the
    light-column one with a prior of 1 / ``params.light_margin`` (``details['light_columns']`` says
    which reading a hit comes from). Scores are in [0, 1];
    ``details`` holds the partial scores, the fitted scale, the ambiguity (score gap to the next
    different formula among the scored candidates: rows that cannot reach the top ``top_k`` are
    not scored) and
    the in-plane mapping: ``basis_frac3`` (template vectors, fractional in the template cell,
    whose projections map onto the measured a and b), ``p``, ``q``, ``t``.
    """
    from .library import load_library

    library = library if library is not None else load_library(progress=progress)
    if light_columns is None:
        kwargs = {"elements": elements, "library": library, "top_k": top_k, "z_exponent": z_exponent,
                  "params": params}
        dark = retrieve(lattice, light_columns=False, progress=progress, **kwargs)
        light = retrieve(lattice, light_columns=True, **kwargs)
        for hit in dark:
            hit.details["light_columns"] = False
        for hit in light:
            hit.details["light_columns"] = True
        return pool_readings([(dark, 1.0), (light, 1.0 / params.light_margin)], top_k, params.prior_weight)
    progress(0.0, "retrieving templates")
    hint = normalise_hint(elements)
    if light_columns:
        z_exponent = params.light_z_exponent
    idx = _index(library)
    meas = measured_cell(lattice)
    cell = meas[0]
    a, b = np.linalg.norm(cell, axis=1)
    gamma = math.degrees(math.atan2(cell[1, 1], cell[1, 0]))

    decoratable = _decoratable(library, idx, hint, params)
    simplicity, plan_view, prior = idx.priors(params)
    # Rows whose cell lengths can match, then the lattice filter over their settings: anisotropic
    # misfit and isotropic scale.
    chosen = np.zeros(len(idx.entry), bool)
    chosen[idx.rows_near(a, b, -params.max_scale, params.max_scale, params.max_shape)] = True
    if decoratable.any():
        deco_rows = idx.rows_near(a, b, *np.log(params.decorated_scale), params.max_shape)
        chosen[deco_rows[decoratable[idx.entry[deco_rows]]]] = True
    rows = np.flatnonzero(chosen)
    la, lb = np.log(a / idx.lengths[rows, :, 0]), np.log(b / idx.lengths[rows, :, 1])
    shape = np.sqrt(0.5 * (la - lb) ** 2 + np.radians(gamma - idx.gammas[rows]) ** 2)
    best = shape.argmin(1)
    shape_best = shape[np.arange(len(best)), best]
    scale_best = (0.5 * (la + lb))[np.arange(len(best)), best]
    keep = shape_best <= params.max_shape
    rows, shape, shape_best, scale_best = rows[keep], shape[keep], shape_best[keep], scale_best[keep]
    at = np.full(len(idx.entry), -1)
    at[rows] = np.arange(len(rows))  # row -> position in the filtered arrays

    # Upper bounds of the score (lattice, scale and element factors; the motif factors are at most 1)
    # of the rows taken as they are ...
    el_scores = _element_scores(library, hint, params)
    kappa = params.prior_weight
    own = idx.own[rows] | idx.every[rows] if light_columns else idx.own[rows]
    exact = own & (np.abs(scale_best) <= params.max_scale) & ~decoratable[idx.entry[rows]]
    shape_score = np.exp(-0.5 * (shape_best / params.sigma_shape) ** 2)
    bounds = shape_score * np.exp(-0.5 * (scale_best / params.sigma_scale) ** 2) * el_scores[idx.entry[rows]] ** kappa \
        * prior[rows]
    candidates = [(float(bounds[i]), int(rows[i]), None, None) for i in np.flatnonzero(exact & (bounds > 0))]
    # ... and of the decorated prototypes (options: decoration, z per element, expected scale,
    # element score, scale sigma).
    if decoratable.any():
        for r, opts in _decorated_options(library, idx, hint, decoratable, rows, scale_best, light_columns,
                                          params).items():
            i = at[r]
            factors = [_option_factors(idx, r, opt, scale_best[i], z_exponent, params) for opt in opts]
            bound = shape_score[i] * prior[r] * max(
                (f[0] * f[1] * opt[3] ** kappa for f, opt in zip(factors, opts) if f), default=0.0)
            if bound > 0:
                candidates.append((bound, r, opts, factors))

    # Score rows best bound first; stop once no bound can reach the k-th best score found.
    candidates.sort(key=lambda item: -item[0])
    found: dict[tuple, dict] = {}
    kth = 0.0
    for bound, r, opts, factors in candidates:
        if len(found) >= top_k and bound < kth:
            break
        i, e, pi = at[r], int(idx.entry[r]), int(idx.proj[r])
        if opts is None:
            opts = [(None, idx.z[e], 1.0, float(el_scores[e]), params.sigma_scale)]
            factors = [_option_factors(idx, r, opts[0], scale_best[i], z_exponent, params)]
        entry, pat = library.entries[e], idx.pattern(r)
        settings = [int(k) for k in np.flatnonzero(shape[i] <= shape_best[i] + params.setting_tolerance)]
        log_w = np.log(np.maximum(np.stack([pat["counts"] @ o[1] ** z_exponent for o in opts]), 1e-9))
        improved = False
        for (deco, z, expected, el_score, sigma), f, m in zip(opts, factors,
                                                              _motif_scores(pat["frac"], log_w, settings, meas, params)):
            if f is None:
                continue
            scale_score, variant, scale_sigmas = f
            score = shape_score[i] * scale_score * m["position"] * m["intensity"] * el_score ** kappa * variant * prior[r]
            tid = entry["id"] if deco is None else \
                f"{entry['id']}|" + ",".join(deco["mapping"][x] for x in entry["elements"])
            key = (tid, tuple(int(x) for x in idx.table.proj_axis[pi]))
            if key in found and found[key]["score"] >= score:
                continue
            improved = improved or score > kth
            found[key] = {"score": score, "row": r, "entry": e, "deco": deco, "motif": m, "tid": tid,
                          "scale": math.exp(scale_best[i]), "scale_sigmas": scale_sigmas, "shape": float(shape_best[i]),
                          "parts": {"lattice_shape": float(shape_score[i]), "lattice_scale": scale_score,
                                    "positions": m["position"], "z_contrast": m["intensity"], "elements": el_score,
                                    "cell_variant": variant, "simplicity": float(simplicity[e]),
                                    "plan_view": float(plan_view[r])}}
        if improved and len(found) >= top_k:
            kth = heapq.nlargest(top_k, (h["score"] for h in found.values()))[-1]
    ranked = sorted(found.values(), key=lambda h: -h["score"])
    hits = [_hit(library, idx, h, meas, lattice) for h in ranked[:top_k]]
    for i, hit in enumerate(hits):
        nxt = next((h["score"] for h in ranked[i + 1:] if _formula(library, h) != hit.formula), 0.0)
        hit.details["ambiguity_gap"] = round(hit.score - nxt, 4)
    progress(1.0, f"{len(found)} template candidates")
    return hits


def pool_readings(readings: Sequence[tuple[list, float]], top_k: int, prior_weight: float = 1.0) -> list[TemplateHit]:
    """The best ``top_k`` hits of several readings of one image, each reading's scores times its
    prior (``details['reading_prior']``) to the power ``prior_weight`` (:attr:`ScoreParams.prior_weight`);
    of one template along one axis only the best reading stays."""
    best: dict[tuple, TemplateHit] = {}
    for hits, prior in readings:
        for hit in hits:
            hit.score *= prior ** prior_weight
            hit.details["reading_prior"] = round(hit.details.get("reading_prior", 1.0) * prior, 4)
            key = (hit.template_id, tuple(hit.zone_axis))
            if key not in best or hit.score > best[key].score:
                best[key] = hit
    return sorted(best.values(), key=lambda h: -h.score)[:top_k]


def _decoratable(library, idx: _Index, hint: tuple[str, ...], params: ScoreParams) -> np.ndarray:
    """Entries that may be decorated with ``hint``: prototypes with as many species, other elements
    (cached per hint)."""
    key = ("decoratable", hint, params.max_decorated_species)
    if key not in library.cache:
        out = np.zeros(len(library.entries), bool)
        if hint and len(hint) <= params.max_decorated_species:
            out = (idx.n_species == len(hint)) & idx.prototype & np.array([set(e["elements"]) != set(hint)
                                                                           for e in library.entries])
        library.cache[key] = out
    return library.cache[key]


def _element_scores(library, hint: tuple[str, ...], params: ScoreParams) -> np.ndarray:
    """:func:`_element_score` of every entry for ``hint`` (cached per hint and parameters)."""
    key = ("element_scores", hint, params.light_z, params.light_left_out, params.lacking_elements)
    if key not in library.cache:
        library.cache[key] = np.array([_element_score(e["elements"], hint, params) for e in library.entries])
    return library.cache[key]


def _option_factors(idx: _Index, r: int, option: tuple, log_scale: float, z_exponent: float, params: ScoreParams):
    """``(scale score, cell-variant factor, scale deviation in σ)`` of one option of row ``r``, or
    None when its predicted scale is more than ``params.scale_cut`` σ off the measured one."""
    deco, z, expected, el_score, sigma = option
    dev = log_scale - math.log(expected)
    if deco is not None:  # a radius-predicted scale is only good to a few per cent: no preference within
        dev = math.copysign(max(0.0, abs(dev) - params.predicted_scale_slack), dev)
    if abs(dev) > params.scale_cut * sigma:
        return None
    variant = 1.0
    if idx.table.pat_kind[r]:  # geometric: columns of unequal brightness were taken as equal
        w = idx.full_counts(int(idx.proj[r]))[list(idx.visible(r))] @ z ** z_exponent
        variant = float(np.sqrt(w.min() / w.max()))
    # A normalised likelihood: a predicted scale is less certain, so it can never score as a known one.
    return params.sigma_scale / sigma * math.exp(-0.5 * (dev / sigma) ** 2), variant, abs(dev) / sigma


def _decorated_options(library, idx: _Index, hint, decoratable: np.ndarray, rows: np.ndarray,
                       scale_best: np.ndarray, light_columns: bool, params: ScoreParams) -> dict[int, list]:
    """Options of the filtered ``rows`` of ``decoratable`` entries, decorated with the hint: the rows
    that show the columns visible with the new species (or, with ``light_columns``, every column)
    and whose scale fits."""
    from .library import Z_EXPONENT

    lo, hi = math.log(params.decorated_scale[0]), math.log(params.decorated_scale[1])
    fits = (scale_best >= lo) & (scale_best <= hi) & decoratable[idx.entry[rows]]
    fitting = {int(r) for r in rows[fits]}
    projections: dict[int, set] = {}
    for r in fitting:
        projections.setdefault(int(idx.entry[r]), set()).add(int(idx.proj[r]))
    cache = library.cache.setdefault("decorations", {})
    options: dict[int, list] = {}
    for e, pis in projections.items():
        entry = library.entries[e]
        key = (e, hint, params.uncommon_state)
        if key not in cache:
            cache[key] = [d for d in _decorations(entry, hint, params.uncommon_state)
                          if any(k != v for k, v in d["mapping"].items())]
        for d in cache[key]:
            for pi in pis:
                keys = idx.visible_keys(pi, d["z"], Z_EXPONENT)
                if light_columns:
                    keys += (tuple(range(idx.n_columns[pi])),)
                for r in (r for key in keys for r in idx.rows(pi, key)):
                    if r in fitting:
                        prior = params.decoration_base + params.decoration_gain * d["likelihood"]
                        options.setdefault(r, []).append((d, d["z"], d["scale"], prior, params.sigma_scale_decorated))
    return options


def _formula(library, h: dict) -> str:
    return h["deco"]["formula"] if h["deco"] is not None else library.entries[h["entry"]]["reduced_formula"]


def _rescaled(structure, scale: float, is_2d: bool):
    """``structure`` with its lengths times ``scale``; a monolayer's vacuum (along c) keeps its
    thickness [Å], only the layer and its in-plane cell scale."""
    if not is_2d:
        structure.scale_lattice(structure.volume * scale ** 3)
        return structure
    from pymatgen.core import Lattice, Structure

    a, b, c, alpha, beta, gamma = structure.lattice.parameters
    frac = structure.frac_coords.copy()
    middle = 0.5 * (frac[:, 2].max() + frac[:, 2].min())
    new_c = c + (scale - 1) * (frac[:, 2].max() - frac[:, 2].min()) * c
    frac[:, 2] = ((frac[:, 2] - middle) * c * scale) / new_c + middle
    return Structure(Lattice.from_parameters(a * scale, b * scale, new_c, alpha, beta, gamma), structure.species, frac)


def _hit(library, idx: _Index, h: dict, meas: tuple, lattice: Lattice2D) -> TemplateHit:
    r, entry, m, deco = h["row"], library.entries[h["entry"]], h["motif"], h["deco"]
    pi, table = int(idx.proj[r]), library.projections
    zone = table.proj_axis[pi].tolist()
    pat = idx.pattern(r)
    basis = SETTINGS[m["setting"]] @ np.asarray(pat["basis"], float)
    structure = library.structure(h["entry"])
    elements = entry["elements"] if deco is None else [deco["mapping"][x] for x in entry["elements"]]
    if deco is not None:
        structure.replace_species(deco["mapping"])
        structure = _rescaled(structure, h["scale"], entry["is_2d"])
    sites = [{el: float(c) for el, c in zip(elements, pat["counts"][j]) if c > 0} for j in m["sites"]]
    details = {
        **{k: round(float(v), 4) for k, v in h["parts"].items()},
        "lattice_mismatch": round(h["shape"], 4),
        "scale": round(h["scale"], 4),
        "scale_sigmas": round(h["scale_sigmas"], 3),
        "position_rms_A": None if m["rms_A"] is None else round(m["rms_A"], 3),
        "n_template_columns": len(pat["frac"]),
        "n_measured_sites": len(meas[1]),
        "cell_variant": pat["kind"],
        "template_cell_A": [round(float(x), 4) for x in idx.lengths[r, m["setting"]]] + [
            round(float(idx.gammas[r, m["setting"]]), 2)],
        "measured_cell_A": [round(float(x), 4) for x in np.linalg.norm(meas[0], axis=1)] + [
            round(math.degrees(math.atan2(meas[0][1, 1], meas[0][1, 0])), 2)],
        "basis_frac3": np.round(basis, 6).tolist(),
        "p": table.proj_p[pi].tolist(), "q": table.proj_q[pi].tolist(), "t": zone,
        "inverted": m["inverted"], "origin_shift": [round(x, 4) for x in m["shift"]],
        "site_composition": sites,
        "setting": int(m["setting"]),
        "columns_frac": np.round(pat["frac"], 5).tolist(),
        "columns_composition": [{el: float(c) for el, c in zip(elements, row) if c > 0} for row in pat["counts"]],
        "spacegroup": entry["spacegroup_symbol"], "spacegroup_number": entry["spacegroup_number"],
        "is_2d": entry["is_2d"],
        "decoration": None if deco is None else {**deco["mapping"], "likelihood": round(deco["likelihood"], 3),
                                                 "predicted_scale": round(deco["scale"], 3)},
    }
    source = "; ".join(s["description"] for s in entry["sources"])
    return TemplateHit(h["tid"], _formula(library, h), tuple(zone), float(h["score"]), details,
                       structure, source, lattice)
