"""Benchmark metrics: structure match, lattice error, column detection, denoising, retrieval, energies.

Definitions (the figures in ``metrics.json`` mean exactly this):

* **match**: pymatgen ``StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)`` (other settings its
  defaults: primitive cells, volume scaled, so a match says "same structure type and decoration";
  the scale error is in the lattice RMSD).
* **structure type**: the same matcher with the species ignored (``fit_anonymous``): the right
  structure type whatever the chemistry, which is what an image without a hint can tell.
* **composition correct**: equal reduced formulas.
* **lattice RMSD** [Å]: the reconstruction's primitive cell is mapped onto the true conventional
  standard cell (``SpacegroupAnalyzer(symprec=0.1)``) with ``StructureMatcher.get_s2_like_s1``,
  which keeps the reconstruction's own lengths; RMSD = sqrt(mean((a'-a)², (b'-b)², (c'-c)²)).
  Only for matched pairs (``None`` otherwise).
* **detection**: true and detected columns more than ``margin_A`` inside the image are paired
  greedily by distance within ``radius_A``; recall = paired / true, precision = paired / detected,
  RMSE over pairs [pm].
* **denoise PSNR/SSIM**: the image is mapped onto the clean one by a least-squares scale and
  offset (units differ: counts vs ΣZⁿ), data range = clean max − min; SSIM by scikit-image.
* **retrieval top-k**: the true reduced formula is among the first k hits; ``zone`` variants also
  require a hit's zone axis to be symmetry-equivalent to the true one (point group of the truth).
* **reference formation enthalpies**: pymatgen's experimental table (``exp_compounds.json.gz``,
  eV per formula unit, converted to eV/atom), looked up by reduced formula; 0 for elements.
"""

from __future__ import annotations

import gzip
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..decision import MATCH_TOLERANCES  # one definition of "the same structure"
from ..templates.sources import SYMPREC



def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**MATCH_TOLERANCES)


def structures_match(predicted, truth) -> bool:
    """Whether two pymatgen Structures match within :data:`MATCH_TOLERANCES`."""
    return bool(_matcher().fit(predicted, truth))


def structure_types_match(predicted, truth) -> bool:
    """Whether two Structures match within :data:`MATCH_TOLERANCES` with their species ignored."""
    return bool(_matcher().fit_anonymous(predicted, truth))


def composition_correct(predicted, truth) -> bool:
    """Equal reduced formulas."""
    return predicted.composition.reduced_formula == truth.composition.reduced_formula


def lattice_rmsd_A(predicted, truth) -> Optional[float]:
    """RMS difference [Å] of a, b, c of ``predicted`` mapped onto the true conventional cell (see module doc).

    ``None`` when the structures do not match.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    matcher = _matcher()
    if not matcher.fit(predicted, truth):
        return None
    conv = SpacegroupAnalyzer(truth, symprec=SYMPREC).get_conventional_standard_structure()
    from pymatgen.analysis.structure_matcher import StructureMatcher

    mapper = StructureMatcher(primitive_cell=False, attempt_supercell=True, **MATCH_TOLERANCES)
    mapped = mapper.get_s2_like_s1(conv, predicted.get_primitive_structure())
    if mapped is None:
        return None
    diff = np.asarray(mapped.lattice.abc) - np.asarray(conv.lattice.abc)
    return float(np.sqrt(np.mean(diff ** 2)))


def visible_mask(labels: Sequence[str], detector: str, z_exponent: float = 1.7, fraction: float = 0.1) -> np.ndarray:
    """Which true columns a detector shows. In HAADF/ADF a column is visible when its Σ Z^n (over the
    elements of its label such as ``"Ti+O"``) is at least ``fraction`` of the heaviest column's: pure-O
    columns next to Sr (7%) are not. ABF/BF/iDPC images show every column."""
    from pymatgen.core import Element

    if detector.upper() not in ("HAADF", "ADF"):
        return np.ones(len(labels), bool)
    weight = np.array([sum(Element(el).Z ** z_exponent for el in label.split("+")) for label in labels], float)
    return weight >= fraction * weight.max() if len(weight) else np.ones(0, bool)


def match_columns(true_px: np.ndarray, found_px: np.ndarray, pixel_size_A: float, shape: Sequence[int],
                  radius_A: float = 0.5, margin_A: float = 1.0, visible: Optional[np.ndarray] = None) -> dict:
    """Detection recall, precision and position RMSE [pm] of ``found_px`` against ``true_px`` ``(n, 2)`` (y, x).

    Columns within ``margin_A`` of the image border are left out on both sides; pairs are formed
    greedily by increasing distance, each column used once, up to ``radius_A``. ``visible`` (mask
    over ``true_px``) marks the columns the detector should show: recall counts only those, while a
    detection on a faint true column is still correct (``n_correct``) for the precision.
    """
    from scipy.spatial import cKDTree

    m = margin_A / pixel_size_A

    def inside(p):
        p = np.asarray(p, float).reshape(-1, 2)
        return np.all((p >= m) & (p <= np.asarray(shape[:2], float) - 1 - m), axis=1)

    true_px = np.asarray(true_px, float).reshape(-1, 2)
    visible = np.ones(len(true_px), bool) if visible is None else np.asarray(visible, bool)
    keep_t, keep_f = inside(true_px), inside(found_px)
    t, vis, f = true_px[keep_t], visible[keep_t], np.asarray(found_px, float).reshape(-1, 2)[keep_f]
    out = {"n_true": int(vis.sum()), "n_found": int(len(f)), "n_matched": 0, "n_correct": 0,
           "recall": None, "precision": None, "position_rmse_pm": None}
    if not vis.any():
        return out
    pairs = []
    if len(f):
        dist = cKDTree(t).sparse_distance_matrix(cKDTree(f), radius_A / pixel_size_A, output_type="ndarray")
        dist = np.sort(dist, order="v")
        used_t, used_f = set(), set()
        for i, j, d in dist:
            if i not in used_t and j not in used_f:
                used_t.add(i)
                used_f.add(j)
                pairs.append((d, vis[i]))
    d_vis = [d for d, v in pairs if v]
    out.update(n_matched=len(d_vis), n_correct=len(pairs), recall=len(d_vis) / int(vis.sum()),
               precision=len(pairs) / len(f) if len(f) else None)
    if d_vis:
        out["position_rmse_pm"] = float(np.sqrt(np.mean(np.square(d_vis))) * pixel_size_A * 100.0)
    return out


def _aligned(image: np.ndarray, clean: np.ndarray) -> np.ndarray:
    x = np.asarray(image, float).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.asarray(clean, float).ravel(), rcond=None)
    return (design @ coef).reshape(np.shape(clean))


def psnr_dB(image: np.ndarray, clean: np.ndarray) -> float:
    """PSNR [dB] of ``image`` against ``clean`` after a least-squares scale and offset."""
    clean = np.asarray(clean, float)
    mse = float(np.mean((_aligned(image, clean) - clean) ** 2))
    peak = float(clean.max() - clean.min())
    return float("inf") if mse == 0 else 10.0 * math.log10(peak ** 2 / mse)


def ssim(image: np.ndarray, clean: np.ndarray) -> float:
    """Structural similarity of ``image`` (scale/offset aligned) to ``clean``."""
    from skimage.metrics import structural_similarity

    clean = np.asarray(clean, float)
    return float(structural_similarity(_aligned(image, clean), clean, data_range=float(clean.max() - clean.min())))


def _equivalent_axes(truth, zone_axis) -> list[np.ndarray]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ops = SpacegroupAnalyzer(truth, symprec=SYMPREC).get_point_group_operations(cartesian=False)
    axis = np.asarray(zone_axis, float)
    return [op.rotation_matrix @ axis for op in ops]


def _parallel(u, v) -> bool:
    u, v = np.asarray(u, float), np.asarray(v, float)
    return bool(np.linalg.norm(np.cross(u, v)) <= 1e-6 * np.linalg.norm(u) * np.linalg.norm(v))


def retrieval_ranks(hits: Sequence, truth, zone_axis=None) -> dict:
    """1-based rank of the first hit with the true reduced formula (``formula_rank``) and of the first
    with the formula and a symmetry-equivalent zone axis (``zone_rank``); ``None`` when absent.

    ``hits``: TemplateHit objects or their dicts. Zone axes are compared in the truth's conventional
    cell, which is the setting of the library's entries for the same compound.
    """
    from pymatgen.core import Composition

    formula = truth.composition.reduced_formula
    axes = _equivalent_axes(truth, zone_axis) if zone_axis is not None else []
    formula_rank = zone_rank = None
    for k, hit in enumerate(hits, start=1):
        h = hit if isinstance(hit, dict) else hit.to_dict()
        if Composition(h["formula"]).reduced_formula != formula:
            continue
        formula_rank = formula_rank or k
        if zone_rank is None and any(_parallel(a, h["zone_axis"]) for a in axes):
            zone_rank = k
    return {"formula_rank": formula_rank, "zone_rank": zone_rank}


@lru_cache(maxsize=1)
def _experimental_table() -> dict:
    import pymatgen.analysis.compatibility as compat
    from pymatgen.core import Composition

    path = Path(compat.__file__).parent / "exp_compounds.json.gz"
    if not path.exists():
        return {}
    table: dict = {}
    with gzip.open(path, "rt") as fh:
        for row in json.load(fh):
            comp = Composition(row["formula"])
            table.setdefault(comp.reduced_formula, float(row["exp energy"]) / comp.num_atoms)
    return table


def experimental_formation_energy(formula: str) -> Optional[float]:
    """Experimental formation enthalpy [eV/atom] of ``formula`` from pymatgen's table (``None`` if absent;
    0 for an element, its standard state by definition)."""
    from pymatgen.core import Composition

    comp = Composition(formula)
    if len(comp.elements) == 1:
        return 0.0
    return _experimental_table().get(comp.reduced_formula)
