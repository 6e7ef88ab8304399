"""Break ties between candidates that project alike with their stability under the potential.

A single projection says nothing about the atoms along the beam: rocksalt AgCl and a CuAu-type
AgCl show the same square Ag lattice along [001]. Among the top retrieval candidates with the
top one's elements, each distinct structure is reconstructed, briefly relaxed, and its formation
energy weighs its image score: ``weight = score · exp(-(Ef - Ef_min) / ENERGY_SCALE_EV)``.
"""

from __future__ import annotations

import math
from typing import Optional

from ..model import Lattice2D, Progress, TemplateHit, no_progress

#: Formation energy [eV/atom] above the most stable candidate that costs a factor e of weight.
ENERGY_SCALE_EV = 0.1
#: Candidates scoring below this fraction of the best are not considered.
SCORE_WINDOW = 0.1
#: Short relaxation of each candidate: step limit and force threshold [eV/Å].
RELAX_STEPS, RELAX_FMAX = 40, 0.1


def _structure_key(hit: TemplateHit) -> tuple:
    return hit.formula, hit.details.get("spacegroup_number")


def stability_candidates(hits: list[TemplateHit], max_candidates: int) -> list[int]:
    """Indices of the distinct (formula, space group) hits worth checking: the top hit's elements,
    score within :data:`SCORE_WINDOW` of the best, at most ``max_candidates``."""
    if not hits:
        return []
    elements = {el.symbol for el in hits[0].structure.composition} if hits[0].structure is not None else None
    seen, out = set(), []
    for i, hit in enumerate(hits):
        if len(out) >= max_candidates or hit.score < SCORE_WINDOW * hits[0].score:
            break
        if hit.structure is None or {el.symbol for el in hit.structure.composition} != elements:
            continue
        key = _structure_key(hit)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def rerank_by_stability(hits: list[TemplateHit], lattice: Lattice2D, model: str = "auto",
                        max_candidates: int = 3, checkpoint: Optional[str] = None, device: str = "cpu",
                        progress: Progress = no_progress) -> list[TemplateHit]:
    """``hits`` reordered by image score × stability weight (the checked candidates first, in
    weight order; the rest keep their order). Each checked hit gets ``details['formation_energy_eV']``
    [eV/atom after a short relaxation] and ``details['stability_weight']``; a candidate that cannot
    be reconstructed or evaluated keeps weight 0 and goes after the checked ones."""
    from ..model import AutomatError
    from ..reconstruct import reconstruct
    from .compute import compute_energy

    chosen = stability_candidates(hits, max_candidates)
    if len(chosen) < 2:
        return list(hits)
    energies: dict[int, float] = {}
    for k, i in enumerate(chosen):
        progress(k / len(chosen), f"stability of {hits[i].formula} ({hits[i].details.get('spacegroup', '?')})")
        try:
            structure = reconstruct(hits[i], lattice).structure
            report = compute_energy(structure, model=model, relax=True, fmax_eV_A=RELAX_FMAX,
                                    max_steps=RELAX_STEPS, checkpoint=checkpoint, device=device)
        except (AutomatError, ValueError, RuntimeError):
            continue
        if report.formation_energy_per_atom_eV is not None and math.isfinite(report.formation_energy_per_atom_eV):
            energies[i] = report.formation_energy_per_atom_eV
    if not energies:
        return list(hits)
    lowest = min(energies.values())
    weights = {}
    for i in chosen:
        hit = hits[i]
        if i in energies:
            weights[i] = hit.score * math.exp(-(energies[i] - lowest) / ENERGY_SCALE_EV)
            hit.details["formation_energy_eV"] = round(energies[i], 4)
        else:
            weights[i] = 0.0
        hit.details["stability_weight"] = round(weights[i], 6)
    progress(1.0, "stability checked")
    ranked = sorted(chosen, key=lambda i: -weights[i])
    rest = [h for i, h in enumerate(hits) if i not in weights]
    return [hits[i] for i in ranked] + rest
