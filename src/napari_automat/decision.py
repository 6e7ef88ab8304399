"""The decision: how sure the chain is of its answer, and what the image says about calibration.

Retrieval ranks template hits by an image score in (0, 1] whose log is a sum of per-term
log-likelihoods (lattice shape and scale, column positions, Z-contrast) and log-priors (elements,
simplicity, plan view); the stability check multiplies in a Boltzmann-like energy prior
(``details['stability_weight']``). Those numbers rank well but are not probabilities. Here they
become one, over the distinct structures among the hits plus "none of these":

    q(structure j) ∝ Σ_{hits i of j} exp(β · log e_i),   q(none) ∝ exp(β · log e_0)
    p(structure j) = (1 − ε) q(j) + ε / J,              p(none) = (1 − ε) q(none)

with ``e_i`` the hit's evidence (stability weight when checked, else score), ``β`` a temperature,
``log e_0`` the evidence of the truth being elsewhere (outside the library or outside the top
hits) and ``ε`` the chance that the scores misrank the J structures altogether (a wrong column
reading, an unmodelled contrast), shared evenly among them. Three numbers per mode (with and
without the element hint), fitted by maximum likelihood on the tuning split of the benchmark
(``automat bench calibrate``), judged on a held-out split.

Hits are one answer when their structures match (pymatgen's ``StructureMatcher`` with
:data:`MATCH_TOLERANCES`, the benchmark's definition of a right answer): the same structure seen
along two zone axes, a decorated prototype and the library compound it reproduces, a cubic and a
slightly tilted perovskite. They are one structure type when they match with the species ignored
(perovskite ABC3 whatever A, B and C are), the answer an image without a hint can support best.
The structure-type posterior (fitted on its own β, log e_0, ε) weighs each type by its best hit
only: the compound within a type is a nuisance profiled out, so that a type the library holds
many compounds of does not win for that alone (on the tuning split's no-hint rows, type top-1
55% summed, 68% profiled).

Two structures of one formula whose projected patterns fit the image equally and which both
predict its cell size (:func:`alike_in_image`) are told apart by the priors alone (library
compound or decorated prototype, simpler cell, energy): a cubic perovskite and its tilted
polymorphs seen in HAADF, a monolayer and its bulk crystal in plan view. The verdict names such
an alternative, whatever the probability, so that a user knows the polymorph is not read from the image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from .model import TemplateHit

#: A verdict names the "none of these" probability from this size on.
NONE_SHOWN = 0.1
#: ``Decision.status`` values, most to least sure.
STATUSES = ("confident", "uncertain", "no answer")
#: StructureMatcher tolerances (AutoMat's) that make two structures one answer: fractional length,
#: site and angle [degrees]; the benchmark's match uses the same.
MATCH_TOLERANCES = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}
#: The factors of a hit's score that say how its projected pattern fits the image (the others are
#: the cell size, which a decorated prototype only predicts, and priors) ...
IMAGE_TERMS = ("lattice_shape", "positions", "z_contrast")
#: ... and the largest difference of their logs at which two fits are alike (2%), when both
#: structures also predict the measured cell size within this many of their widths.
ALIKE_LOG = 0.02
ALIKE_SCALE_SIGMAS = 2.0


@dataclass(frozen=True)
class PosteriorParams:
    """The few numbers that turn hit scores into probabilities, and the words a probability earns.

    The defaults are fitted by ``automat bench calibrate`` on the tuning split (300 images: seed 0
    in standard conditions and seed 3 in shifted ones, CHGNet stability check with the hint);
    docs/benchmarks.md gives the commands and the held-out figures.
    """

    #: β with the element hint: the power of the evidence (higher = sharper posterior).
    temperature_hint: float = 5.978
    #: log e_0 with the hint: the log-evidence of "none of the retrieved structures".
    none_log_evidence_hint: float = -6.706
    #: β without the element hint (the fit makes it all but a step: without a hint only a near-perfect
    #: score says the compound is right, and the none-evidence sits at a score of 1).
    temperature_no_hint: float = 403.4
    #: log e_0 without the hint.
    none_log_evidence_no_hint: float = -0.001
    #: ε with the hint: the probability that the scores misrank the structures, spread evenly.
    misrank_hint: float = 0.05
    #: ε without the hint.
    misrank_no_hint: float = 0.2621
    #: β, log e_0 and ε of the structure-type posterior without a hint (fitted against whether the
    #: structure type is right whatever the species: what an image without a hint can tell).
    temperature_type: float = 5.446
    none_log_evidence_type: float = -1.496
    misrank_type: float = 0.2567
    #: A top probability from here up is stated as the answer ("confident").
    confident: float = 0.8
    #: Below this the image supports no answer; in between it is "uncertain".
    no_answer: float = 0.3

    def for_mode(self, hinted: bool) -> tuple[float, float, float]:
        """``(β, log e_0, ε)`` for runs with (``hinted``) or without the element hint."""
        if hinted:
            return self.temperature_hint, self.none_log_evidence_hint, self.misrank_hint
        return self.temperature_no_hint, self.none_log_evidence_no_hint, self.misrank_no_hint

    def for_type(self, hinted: bool) -> tuple[float, float, float]:
        """``(β, log e_0, ε)`` of the structure-type posterior (with a hint, the compound's)."""
        return self.for_mode(True) if hinted else (self.temperature_type, self.none_log_evidence_type,
                                                   self.misrank_type)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "PosteriorParams":
        names = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in (d or {}).items() if k in names})


#: Smallest evidence taken (a hit scored 0 is impossible, not -inf in the arithmetic).
_FLOOR = 1e-12


def hit_evidence(hit: TemplateHit) -> float:
    """The hit's evidence: its stability weight when the stability check weighed it, else its score."""
    weight = hit.details.get("stability_weight")
    return float(weight if weight is not None else hit.score)


def log_evidence(hit: TemplateHit) -> float:
    """log of :func:`hit_evidence`, floored so that a hit scored 0 stays finite."""
    return math.log(max(hit_evidence(hit), _FLOOR))


def species_log_prior(formula: str) -> float:
    """Without a hint, the prior of a compound: each number of species (element, binary, ternary, …)
    equally likely, the library's compounds with that number equally likely among themselves. The
    many ternaries that fit a miscalibrated lattice by chance then do not outvote the few elements
    (no-hint structure type stated right on the tuning split: 46% → 54%)."""
    from pymatgen.core import Composition

    counts = _species_counts()
    n = min(len(Composition(formula).elements), MAX_SPECIES_CLASS)
    return -math.log(len(counts) * counts.get(n, 1))


#: Compounds with this many species or more are one class of the species-count prior.
MAX_SPECIES_CLASS = 4


@lru_cache(maxsize=1)
def _species_counts() -> dict[int, int]:
    """Library compounds per number of species, up to :data:`MAX_SPECIES_CLASS` (the packaged library)."""
    from .templates.library import load_library

    counts: dict[int, int] = {}
    for e in load_library().entries:
        n = min(len(e["elements"]), MAX_SPECIES_CLASS)
        counts[n] = counts.get(n, 0) + 1
    return counts


#: The factors of a hit's evidence that are priors (the others are likelihoods of the image):
#: the score's terms and the stability check's energy prior.
PRIOR_TERMS = ("elements", "simplicity", "plan_view", "reading_prior", "energy_prior")


def log_prior(hit: TemplateHit) -> float:
    """The log of the hit's prior factors as stated, before ``ScoreParams.prior_weight`` (κ) raised
    them in its evidence: ``log_evidence = log-likelihood + κ · log_prior``."""
    return sum(math.log(max(float(hit.details.get(k) or 1.0), _FLOOR)) for k in PRIOR_TERMS)


def structure_key(hit: TemplateHit) -> tuple[str, Optional[int]]:
    """A name for the structure a hit stands for: reduced formula and space-group number."""
    from pymatgen.core import Composition

    return Composition(hit.formula).reduced_formula, hit.details.get("spacegroup_number")


def type_key(hit: TemplateHit) -> tuple[str, Optional[int]]:
    """A name for the structure type a hit stands for: anonymous formula (ABC3) and space-group number."""
    from pymatgen.core import Composition

    return Composition(hit.formula).anonymized_formula, hit.details.get("spacegroup_number")


_SAME: dict[tuple, bool] = {}


def same_structure(a: TemplateHit, b: TemplateHit, anonymous: bool = False) -> bool:
    """Whether two hits are one answer (their structures match within :data:`MATCH_TOLERANCES`;
    ``anonymous``: with the species ignored). Cached per pair of template ids."""
    if a.template_id == b.template_id:
        return True
    ka, kb = (type_key(a), type_key(b)) if anonymous else (structure_key(a), structure_key(b))
    # same formula and space group is not enough: Pb on the A or on the B site of a perovskite
    return ka[0] == kb[0] and structures_match(a, b, anonymous)


def structures_match(a: TemplateHit, b: TemplateHit, anonymous: bool = False) -> bool:
    """Whether two hits' template structures match within :data:`MATCH_TOLERANCES` (``anonymous``:
    with the species ignored); False without structures. Cached per pair of distinct template ids
    (a template id names one structure up to scale, which the matcher ignores)."""
    if a.structure is None or b.structure is None:
        return False
    if a.template_id == b.template_id:  # nothing to key a cache on: compare the structures themselves
        return _fit(a.structure, b.structure, anonymous)
    key = (min(a.template_id, b.template_id), max(a.template_id, b.template_id), anonymous)
    if key not in _SAME:
        _SAME[key] = _fit(a.structure, b.structure, anonymous)
    return _SAME[key]


def _fit(a, b, anonymous: bool) -> bool:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(**MATCH_TOLERANCES)
    try:
        return bool(matcher.fit_anonymous(a, b) if anonymous else matcher.fit(a, b))
    except Exception:  # noqa: BLE001 - an odd cell is simply another answer
        return False


def answer_groups(hits: Sequence[TemplateHit], anonymous: bool = False) -> list[int]:
    """Group index of each hit: hits of one group are one answer (:func:`same_structure`, greedy
    against each group's first, best-ranked hit)."""
    firsts: list[TemplateHit] = []
    out = []
    for h in hits:
        g = next((i for i, f in enumerate(firsts) if same_structure(h, f, anonymous)), None)
        if g is None:
            firsts.append(h)
            g = len(firsts) - 1
        out.append(g)
    return out


def posterior_masses(log_evidence: Sequence[float], groups: Sequence[int], beta: float,
                     none_log: float, misrank: float = 0.0, profile: bool = False,
                     log_prior: Optional[Sequence[float]] = None) -> tuple[list[float], float]:
    """Probability of each group of hits and of "none of these", from the hits' log-evidence (see
    the module docstring for β, log e_0 and ε = ``misrank``). A group's weight is the sum of its
    hits' (alternative readings of one structure), or with ``profile`` its best hit's (a structure
    type: its compounds are a nuisance profiled out, so a type is not favoured for having many).
    ``log_prior``: a prior per hit, added to β · log-evidence untempered."""
    top = max(max(log_evidence), none_log)
    weights = [0.0] * (max(groups) + 1)
    for i, (g, v) in enumerate(zip(groups, log_evidence)):
        w = math.exp(beta * (v - top) + (log_prior[i] if log_prior is not None else 0.0))
        weights[g] = max(weights[g], w) if profile else weights[g] + w
    none_w = math.exp(beta * (none_log - top))
    total = sum(weights) + none_w
    even = misrank / len(weights)
    return [(1.0 - misrank) * w / total + even for w in weights], (1.0 - misrank) * none_w / total


@dataclass
class Decision:
    """The posterior over the retrieved structures and the verdict it supports.

    ``hit_probability[i]``: probability that hit ``i``'s structure is the right one (shared by the
    hits of one structure); ``probability``: that of the chosen hit's structure; ``type_probability``:
    that of its structure type; ``none_probability``: that the right structure is not among the hits.
    """

    status: str
    probability: float
    formula: Optional[str]
    spacegroup: Optional[str]
    structure_type: Optional[str]
    type_probability: float
    none_probability: float
    hinted: bool
    hit_probability: list[float] = field(default_factory=list)
    hit_log_likelihood: list[float] = field(default_factory=list)
    runner_up: Optional[str] = None
    #: The probability from which a statement is confident (``PosteriorParams.confident``).
    confident_level: float = 0.8
    #: Failed quality checks (columns off the Fourier transform, a large relaxation drift): with
    #: any, a confident posterior is stated as uncertain, with the reason.
    caveats: list[str] = field(default_factory=list)
    #: Intensity of each column site of the measured cell relative to the brightest, brightest
    #: first: what the image says about heavy and light columns whatever the compound.
    column_classes: list[float] = field(default_factory=list)
    #: Other structures of the chosen formula that fit the image alike (:func:`alike_in_image`),
    #: as "formula space group (p = …)", most probable first.
    alike: list[str] = field(default_factory=list)

    @property
    def type_only(self) -> bool:
        """The structure type is confident where the compound is not (typical without a hint)."""
        return self.status != "confident" and self.type_probability >= self.confident_level

    def line(self) -> str:
        """One line a user reads: the answer with its probability, or what the image does support."""
        text = self._verdict()
        if not self.hinted and self.status != "confident" and len(self.column_classes) > 1:
            text += ("; column sites per cell at " + " / ".join(f"{v:.2f}" for v in self.column_classes)
                     + " of the brightest")
        if self.alike and not self.type_only:
            named = self.status != STATUSES[0] and self.alike[0] == self.runner_up
            text += (f"; the image fits {'both' if named else self.alike[0]} alike: the polymorph rests on "
                     "the priors (library compound, simpler cell, energy)")
        return text + (f"; but {'; '.join(self.caveats)}" if self.caveats else "")

    def _verdict(self) -> str:
        best = f"{self.formula} {self.spacegroup}"
        if self.status == "confident":
            return f"confident: {best} (p = {self.probability:.2f})"
        if self.type_only:
            return (f"structure type only: {self.structure_type} (p = {self.type_probability:.2f}); compound "
                    f"not determined (best {best}, p = {self.probability:.2f})")
        alt = f"; next {self.runner_up}" if self.runner_up else ""
        if self.none_probability >= NONE_SHOWN:
            alt += f"; none of these: p = {self.none_probability:.2f}"
        if self.status == "uncertain":
            return f"uncertain: {best} (p = {self.probability:.2f}{alt})"
        if self.none_probability >= self.probability:
            return (f"no answer: no structure of the library fits well (none of these: p = "
                    f"{self.none_probability:.2f}; best {best}, p = {self.probability:.2f})")
        return f"no answer: several structures fit alike (best {best}, p = {self.probability:.2f}{alt})"

    def to_dict(self) -> dict:
        return {"status": self.status, "probability": round(self.probability, 4), "formula": self.formula,
                "spacegroup": self.spacegroup, "structure_type": self.structure_type,
                "type_probability": round(self.type_probability, 4), "type_only": self.type_only,
                "none_probability": round(self.none_probability, 4), "hinted": self.hinted,
                "runner_up": self.runner_up, "caveats": list(self.caveats),
                "column_classes": [round(v, 3) for v in self.column_classes], "alike": list(self.alike),
                "summary": self.line()}


def decide(hits: Sequence[TemplateHit], hinted: bool, chosen: int = 0,
           params: PosteriorParams = PosteriorParams(), caveats: Sequence[str] = (),
           column_classes: Sequence[float] = ()) -> Optional[Decision]:
    """The posterior over ``hits`` (best first) and the verdict on hit ``chosen``; None without hits.
    ``caveats``: failed quality checks, which keep the verdict from *confident*; ``column_classes``:
    the measured sites' relative intensities (stated without a hint)."""
    if not hits:
        return None
    beta, none_log, misrank = params.for_mode(hinted)
    logs = [log_evidence(h) for h in hits]
    groups, types = answer_groups(hits), answer_groups(hits, anonymous=True)
    masses, none_p = posterior_masses(logs, groups, beta, none_log, misrank)
    type_masses, _ = posterior_masses(logs, types, *params.for_type(hinted), profile=not hinted,
                                      log_prior=None if hinted else [species_log_prior(h.formula) for h in hits])
    hit_p = [masses[g] for g in groups]
    chosen = min(max(chosen, 0), len(hits) - 1)
    hit = hits[chosen]
    p = hit_p[chosen]
    status = STATUSES[0] if p >= params.confident else STATUSES[1] if p >= params.no_answer else STATUSES[2]
    if caveats and status == STATUSES[0]:
        status = STATUSES[1]
    others = sorted(((m, g) for g, m in enumerate(masses) if g != groups[chosen]), reverse=True)
    runner = None
    if others:
        other = hits[groups.index(others[0][1])]
        runner = f"{other.formula} {other.details.get('spacegroup') or '?'} (p = {others[0][0]:.2f})"
    alike_groups = {groups[i] for i, h in enumerate(hits) if groups[i] != groups[chosen] and alike_in_image(hit, h)}
    alike = sorted(((masses[g], groups.index(g)) for g in alike_groups), reverse=True)
    # the structure type the evidence favours: the chosen hit's with a hint, the most probable without
    t = types[chosen] if hinted else max(range(len(type_masses)), key=type_masses.__getitem__)
    typical = hits[types.index(t)]
    anon, _ = type_key(typical)
    return Decision(status=status, probability=p, formula=hit.formula, spacegroup=hit.details.get("spacegroup"),
                    structure_type=f"{anon} {typical.details.get('spacegroup') or ''}".strip(),
                    type_probability=type_masses[t], none_probability=none_p, hinted=hinted,
                    hit_probability=hit_p, hit_log_likelihood=logs, runner_up=runner,
                    confident_level=params.confident, caveats=list(caveats), column_classes=list(column_classes),
                    alike=[f"{hits[i].formula} {hits[i].details.get('spacegroup') or '?'} (p = {m:.2f})"
                           for m, i in alike])


def choices(hits: Sequence[TemplateHit], decision: Optional["Decision"], min_probability: float = 0.05,
            most: int = 5) -> list[tuple[int, str]]:
    """The distinct answers a user may choose from when the decision is not confident: ``(hit index,
    "formula space group (p = …)")`` for the best hit of each answer with at least ``min_probability``,
    most probable first, at most ``most``; empty when confident or with fewer than two."""
    if decision is None or decision.status == STATUSES[0] or not hits:
        return []
    firsts: dict[int, int] = {}
    for i, g in enumerate(answer_groups(hits)):
        firsts.setdefault(g, i)
    ranked = sorted(firsts.values(), key=lambda i: -decision.hit_probability[i])
    out = [(i, f"{hits[i].formula} {hits[i].details.get('spacegroup') or '?'} (p = {decision.hit_probability[i]:.2f})")
           for i in ranked if decision.hit_probability[i] >= min_probability][:most]
    return out if len(out) > 1 else []


def alike_in_image(a: TemplateHit, b: TemplateHit) -> bool:
    """Whether two hits of one formula fit the image alike: each of :data:`IMAGE_TERMS` within
    :data:`ALIKE_LOG` in log, and each structure's cell size (known or predicted) within
    :data:`ALIKE_SCALE_SIGMAS` of the measured one (False when either lacks them): fcc and bcc
    metals along [001] show the same square pattern, but only one fits its spacing."""
    from pymatgen.core import Composition

    if Composition(a.formula).reduced_formula != Composition(b.formula).reduced_formula:
        return False
    ta, tb = a.terms, b.terms
    if ta is None or tb is None:
        return False
    if any(float(h.details.get("scale_sigmas", math.inf)) > ALIKE_SCALE_SIGMAS for h in (a, b)):
        return False
    return all(abs(math.log(max(getattr(ta, k), _FLOOR)) - math.log(max(getattr(tb, k), _FLOOR))) <= ALIKE_LOG
               for k in IMAGE_TERMS)


#: A calibration factor is reported as off when it differs from 1 by more than this many sigma
#: and more than :data:`CALIBRATION_MIN_OFF` (the reporting rule of issue 12, not a fitted number).
CALIBRATION_SIGMAS = 2.0
CALIBRATION_MIN_OFF = 0.02
#: ... and a scan distortion (shear, fast/slow aspect) from this size on.
DISTORTION_MIN = 0.01


def calibration(hits: Sequence[TemplateHit], chosen: int, lattice, params=None) -> dict:
    """The factor by which the image's pixel size must be multiplied for the chosen hit's structure to
    fit the measured ``lattice``, with its relative uncertainty, the residual shear (Δγ [rad] between
    the measured and template cells), what it was measured against, and ``applied`` (False: the
    structure is as measured).

    A library compound's own cell is the reference: the best undecorated hit of the chosen structure
    when the chosen one is a decorated prototype; failing that, the decoration's radius-predicted
    scale, with its far larger uncertainty (``source``: ``structure`` or ``decorated prototype``).
    ``params``: the ``ScoreParams`` whose cell uncertainties apply (default: the defaults)."""
    from .templates.retrieve import DEFAULT_PARAMS

    params = params or DEFAULT_PARAMS
    hit = hits[chosen]
    if hit.details.get("decoration") is not None:
        twin = next((h for h in hits if h.details.get("decoration") is None and same_structure(h, hit)), None)
        hit = twin or hit
    decoration = hit.details.get("decoration")
    scale = float(hit.details.get("scale") or 1.0)  # measured / template length
    if decoration is not None:
        scale /= float(decoration.get("predicted_scale") or 1.0)
    a = float(getattr(lattice, "a_A", float("nan")))
    unc = float(getattr(lattice, "uncertainty_A", float("nan")))
    measured = unc / a if math.isfinite(unc) and a > 0 else 0.01
    template = params.sigma_scale_decorated if decoration is not None else params.sigma_cell
    cell_t, cell_m = hit.details.get("template_cell_A"), hit.details.get("measured_cell_A")
    shear = math.radians(cell_m[2] - cell_t[2]) if cell_t and cell_m else None
    return {"scale_factor": round(1.0 / scale, 5), "scale_sigma": round(math.hypot(measured, template), 5),
            "shear": None if shear is None else round(shear, 5),
            "scan_distortion": scan_distortion(cell_t, lattice, math.hypot(measured, params.sigma_cell_shape)),
            "source": "decorated prototype" if decoration is not None else "structure",
            "against": f"{hit.formula} {hit.details.get('spacegroup', '')}".strip(),
            "template_id": hit.template_id, "applied": False}


def scan_distortion(template_cell, lattice, sigma: float) -> Optional[dict]:
    """The linear scan distortion that maps the template's 2D cell onto the measured one, or None.

    A raster scan distorts as ``x' = s_x x + h y``, ``y' = s_y y`` (x the fast axis, y the slow one:
    drift and flyback skew during the slow scan), whatever the crystal's rotation. The measured cell
    ``M`` (rows a, b, in the image's (x, y)) is ``T Rᵀ Dᵀ`` for the template cell ``T`` (``template_cell``
    ``[a, b, γ]`` in the matched setting), a rotation or reflection ``R`` and ``D = [[s_x, h], [0, s_y]]``;
    ``D Dᵀ`` is known without ``R``, so ``D`` follows from a Cholesky-like factorisation. Returns
    ``shear`` (``h / s_y``: the fast-axis shift per unit slow-axis distance), ``aspect``
    (``s_y / s_x − 1``) and their common ``sigma`` (``sigma``: the relative uncertainty of the cell
    shape, measured and template). A template that is itself off in shape shows up here too."""
    a_vec = getattr(lattice, "a_vec_A", None)
    if not template_cell or a_vec is None:
        return None
    at, bt, gt = float(template_cell[0]), float(template_cell[1]), math.radians(float(template_cell[2]))
    t = np.array([[at, 0.0], [bt * math.cos(gt), bt * math.sin(gt)]])
    m = np.array([np.asarray(lattice.a_vec_A, float)[::-1], np.asarray(lattice.b_vec_A, float)[::-1]])  # (x, y)
    if abs(np.linalg.det(t)) < 1e-9 or abs(np.linalg.det(m)) < 1e-9:
        return None
    d = np.linalg.solve(t, m).T  # M = T Dᵀ' with D' = D R: D' D'ᵀ = D Dᵀ
    g = d @ d.T
    sy = math.sqrt(g[1, 1])
    h = g[0, 1] / sy
    sx = math.sqrt(max(g[0, 0] - h * h, 1e-12))
    return {"shear": round(h / sy, 5), "aspect": round(sy / sx - 1.0, 5), "sigma": round(sigma, 5)}


def scan_distortion_warning(cal: Optional[dict]) -> Optional[str]:
    """One sentence when the scan shear or the fast/slow aspect is significantly off (more than
    :data:`CALIBRATION_SIGMAS` σ and :data:`DISTORTION_MIN`), else None."""
    dist = (cal or {}).get("scan_distortion")
    if not dist:
        return None
    limit = max(CALIBRATION_SIGMAS * dist["sigma"], DISTORTION_MIN)
    parts = [f"sheared by {100 * dist['shear']:+.1f}% (x moves with y)" if abs(dist["shear"]) > limit else "",
             f"{100 * abs(dist['aspect']):.1f}% {'longer' if dist['aspect'] > 0 else 'shorter'} along the slow "
             f"scan (y) than along x" if abs(dist["aspect"]) > limit else ""]
    parts = [p for p in parts if p]
    if not parts:
        return None
    return (f"the scan appears {' and '.join(parts)}, ± {100 * dist['sigma']:.1f}%, against {cal['against']}: "
            f"drift or a scan-coil calibration; the structure's in-plane cell carries it")


def calibration_warning(cal: Optional[dict]) -> Optional[str]:
    """One sentence when the calibration factor is significantly off 1, else None."""
    if not cal:
        return None
    f, sigma = cal["scale_factor"], cal["scale_sigma"]
    off = 1.0 / f - 1.0  # how much too large the pixel size is
    if abs(off) <= max(CALIBRATION_SIGMAS * sigma, CALIBRATION_MIN_OFF):
        return None
    word = "high" if off > 0 else "low"
    return (f"the image's calibration appears {100 * abs(off):.1f} ± {100 * sigma:.1f}% {word} against "
            f"{cal['against']}: the pixel size fits it × {f:.3f} (the structure is written as measured)")


__all__ = ["Decision", "PosteriorParams", "STATUSES", "answer_groups", "calibration", "calibration_warning",
           "choices", "decide", "hit_evidence", "posterior_masses", "same_structure", "scan_distortion",
           "scan_distortion_warning"]
