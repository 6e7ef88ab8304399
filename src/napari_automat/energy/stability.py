"""Break ties between candidates that project alike with their stability under the potential.

A single projection says nothing about the atoms along the beam: rocksalt AgCl and a CuAu-type
AgCl show the same square Ag lattice along [001]. Among the top retrieval candidates with the
top one's elements, each distinct structure is reconstructed and the lowest formation energy of
its primitive cell over an isotropic volume scan (static energies, so a candidate costs a fraction
of a second) weighs its image score: ``weight = score · exp(-max(0, Ef - Ef_min - metastable_eV) /
energy_scale_eV)`` (``templates.retrieve.ScoreParams``). Polymorphs within the metastability window keep their image score (a cubic
perovskite film is not refused for its tilted bulk ground state), and a candidate whose atoms
overlap (a bad fit of the template to the image) is dropped before its energy is trusted.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..decision import structure_key, structures_match
from ..model import Lattice2D, Progress, TemplateHit, no_progress

#: Candidates with two atoms closer than this fraction of their atomic radii's sum are unphysical.
MIN_DISTANCE_RATIO = 0.75
#: Linear scale factors of the volume scan around the reconstructed cell.
SCAN = (0.94, 0.97, 1.0, 1.03, 1.06)


def scan_energy_per_atom(structure, calculator) -> float:
    """Lowest energy per atom [eV] of ``structure`` scaled isotropically by :data:`SCAN` (the
    minimum of a parabola through the scan, kept inside it)."""
    from .compute import to_atoms

    atoms = to_atoms(structure)
    cell = np.array(atoms.get_cell())
    energies = []
    for f in SCAN:
        scaled = atoms.copy()
        scaled.set_cell(cell * f, scale_atoms=True)
        scaled.calc = calculator
        energies.append(float(scaled.get_potential_energy()) / len(scaled))
    c2, c1, c0 = np.polyfit(SCAN, energies, 2)
    best = min(energies)
    if c2 > 0:
        x = float(np.clip(-c1 / (2 * c2), SCAN[0], SCAN[-1]))
        best = min(best, float(np.polyval((c2, c1, c0), x)))
    return best


def overlap_ratio(structure) -> float:
    """Smallest interatomic distance over the sum of the two atoms' atomic radii (1 for one atom)."""
    from pymatgen.core.periodic_table import Element

    if len(structure) < 2:
        return 1.0
    radii = np.array([Element(site.specie.symbol).atomic_radius or 1.5 for site in structure], float)
    dist = structure.distance_matrix
    np.fill_diagonal(dist, np.inf)
    return float(np.min(dist / (radii[:, None] + radii[None, :])))


def stability_candidates(hits: list[TemplateHit], max_candidates: int, window: float = 0.1) -> list[int]:
    """Indices of the distinct hits worth checking: the top hit's elements, score at least
    ``window`` times the best, at most ``max_candidates``. Hits with the same formula and
    space group count as one unless their structures differ: another assignment of the species to
    a prototype's sites (Pb on the A or on the B site of a perovskite, Ni or Sn on the tetrahedral
    site of a half-Heusler) projects alike but is a different crystal."""
    if not hits:
        return []
    elements = {el.symbol for el in hits[0].structure.composition} if hits[0].structure is not None else None
    out: list[int] = []
    for i, hit in enumerate(hits):
        if len(out) >= max_candidates or hit.score < window * hits[0].score:
            break
        if hit.structure is None or {el.symbol for el in hit.structure.composition} != elements:
            continue
        if not any(structure_key(hits[j]) == structure_key(hit) and structures_match(hits[j], hit) for j in out):
            out.append(i)
    return out


def rerank_by_stability(hits: list[TemplateHit], lattice: Lattice2D, model: str = "auto",
                        max_candidates: int = 5, checkpoint: Optional[str] = None, device: str = "cpu",
                        progress: Progress = no_progress, params=None) -> list[TemplateHit]:
    """``hits`` reordered by image score × stability weight (the checked candidates first, in
    weight order; the rest keep their order). Each checked hit gets ``details['formation_energy_eV']``
    [eV/atom, lowest over the volume scan] and ``details['stability_weight']``; a candidate that
    cannot be reconstructed or evaluated keeps weight 0 and goes after the checked ones. ``params``:
    the ``ScoreParams`` of the energy prior (default: the defaults)."""
    from ..model import AutomatError
    from ..templates.retrieve import DEFAULT_PARAMS

    params = params or DEFAULT_PARAMS
    from ..reconstruct import reconstruct
    from .backends import get_calculator, resolve_model
    from .references import elemental_references, formation_energy_per_atom

    chosen = stability_candidates(hits, max_candidates, params.stability_window)
    if len(chosen) < 2:
        return list(hits)
    name, _ = resolve_model(model, checkpoint)
    checkpoint = checkpoint if name == "mattersim" else None
    calculator = get_calculator(name, checkpoint, device)
    energies: dict[int, float] = {}
    for k, i in enumerate(chosen):
        progress(k / len(chosen), f"stability of {hits[i].formula} ({hits[i].details.get('spacegroup', '?')})")
        try:
            structure = reconstruct(hits[i], hits[i].lattice or lattice).structure.get_primitive_structure()  # fewer atoms, same Ef
            if overlap_ratio(structure) < MIN_DISTANCE_RATIO:
                hits[i].details["stability_note"] = "atoms overlap: the template does not fit this lattice"
                continue
            refs = elemental_references([el.symbol for el in structure.composition], name, checkpoint, device=device)
            energy = formation_energy_per_atom(structure, scan_energy_per_atom(structure, calculator), refs)
        except (AutomatError, ValueError, RuntimeError):
            continue
        if math.isfinite(energy):
            energies[i] = energy
    if not energies:
        return list(hits)
    lowest = min(energies.values())
    weights = {}
    for i in chosen:
        hit = hits[i]
        if i in energies:
            excess = max(0.0, energies[i] - lowest - params.metastable_eV)
            prior = math.exp(-excess / params.energy_scale_eV)
            weights[i] = hit.score * prior ** params.prior_weight
            hit.details["formation_energy_eV"] = round(energies[i], 4)
            hit.details["energy_prior"] = round(prior, 6)
        else:
            weights[i] = 0.0
        hit.details["stability_weight"] = round(weights[i], 6)
    progress(1.0, "stability checked")
    ranked = sorted(chosen, key=lambda i: -weights[i])
    rest = [h for i, h in enumerate(hits) if i not in weights]
    return [hits[i] for i in ranked] + rest
