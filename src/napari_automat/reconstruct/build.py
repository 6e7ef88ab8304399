"""Rebuild the 3D structure from a retrieved template and the measured 2D lattice.

The template's lattice parameters are refitted so that its projected cell matches the measured
one, with only the parameters its crystal system leaves free (cubic: a; tetragonal and hexagonal:
a, c; orthorhombic: a, b, c; monoclinic and triclinic: the free angles too). Parameters the
image does not see keep their ratio to the others (a weak prior on isotropic scaling), so cubic
gets one isotropic scale and tetragonal [001] its c/a. 2D monolayers keep their vacuum axis.
The result is symmetrised with spglib and given as its conventional standard cell.
"""

from __future__ import annotations

import math

import numpy as np

from ..model import AutomatError, Lattice2D, Progress, Reconstruction, TemplateHit, no_progress

#: Parameter changes above this fraction are reported.
STRAIN_WARNING = 0.05
#: In-plane misfit left after the fit above which the template is flagged as inconsistent.
RESIDUAL_WARNING = 0.02
#: Weight of the prior that keeps unobserved parameters in their template ratios.
PRIOR_WEIGHT = 0.05
#: Symmetry tolerance [Å] when the lattice has no uncertainty.
DEFAULT_SYMPREC = 0.1


def _groups(system: str, params: np.ndarray, is_2d: bool) -> tuple[list[list[int]], list[list[int]]]:
    """Free length groups (indices 0..2) and free angle groups (3..5) of a conventional cell."""
    angles = params[3:]
    special = np.isclose(angles, 90, atol=1e-3) | np.isclose(angles, 120, atol=1e-3) | np.isclose(angles, 60, atol=1e-3)
    if system == "cubic":
        lengths, free_angles = [[0, 1, 2]], []
    elif system in ("tetragonal", "hexagonal") or (system == "trigonal" and np.isclose(angles[2], 120, atol=1e-3)):
        lengths, free_angles = [[0, 1], [2]], []
    elif system == "trigonal":  # rhombohedral axes
        lengths, free_angles = [[0, 1, 2]], [[3, 4, 5]]
    elif system == "orthorhombic":
        lengths, free_angles = [[0], [1], [2]], []
    else:  # monoclinic, triclinic: the angles that are not fixed by the cell shape
        lengths, free_angles = [[0], [1], [2]], [[3 + i] for i in range(3) if not special[i]]
    if is_2d:  # the vacuum axis keeps its length
        lengths = [[i for i in g if i != 2] for g in lengths if g != [2]]
    return lengths, free_angles


def _projected(matrix: np.ndarray, basis: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """Lengths [Å] and angle [deg] of the projections of ``basis`` (2, 3, fractional) ⟂ ``t``."""
    beam = t @ matrix
    beam = beam / np.linalg.norm(beam)
    v = basis @ matrix
    v = v - np.outer(v @ beam, beam)
    la, lb = np.linalg.norm(v, axis=1)
    return la, lb, math.degrees(math.acos(np.clip(v[0] @ v[1] / (la * lb), -1, 1)))


def _template_basis(structure, zone_axis, cell: np.ndarray) -> np.ndarray:
    """The template vectors (fractional) whose projections best match the measured cell, for
    hits that do not carry them."""
    from ..templates.projection import project, visible_columns
    from ..geometry2d import SETTINGS

    vis = visible_columns(project(structure, zone_axis))
    a, b = np.linalg.norm(cell, axis=1)
    gamma = math.degrees(math.atan2(cell[1, 1], cell[1, 0]))
    best = None
    for m in SETTINGS:
        la, lb, g = _projected(structure.lattice.matrix, m @ vis.basis_frac3, np.asarray(zone_axis, float))
        s = math.sqrt(a * b / (la * lb))
        cost = math.log(a / (s * la)) ** 2 + math.log(b / (s * lb)) ** 2 + math.radians(gamma - g) ** 2
        if best is None or cost < best[0]:
            best = (cost, m @ vis.basis_frac3)
    return best[1]


def reconstruct(hit: TemplateHit, lattice: Lattice2D, progress: Progress = no_progress) -> Reconstruction:
    """The template of ``hit`` with its cell fitted to the measured ``lattice`` and symmetrised
    (symprec = the lattice's uncertainty [Å], 0.1 Å when unknown)."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from scipy.optimize import least_squares

    from ..geometry2d import measured_cell

    if hit.structure is None:
        raise AutomatError(f"template {hit.template_id} carries no structure to reconstruct from")
    progress(0.0, f"fitting {hit.formula} to the measured lattice")
    template = hit.structure.copy()
    cell = measured_cell(lattice)[0]
    a_m, b_m = np.linalg.norm(cell, axis=1)
    gamma_m = math.degrees(math.atan2(cell[1, 1], cell[1, 0]))
    symprec = lattice.uncertainty_A if np.isfinite(lattice.uncertainty_A) and lattice.uncertainty_A > 0 \
        else DEFAULT_SYMPREC
    symprec = float(min(max(symprec, 0.01), 0.5))
    t = np.asarray(hit.zone_axis, float)
    basis = np.asarray(hit.details["basis_frac3"], float) if "basis_frac3" in hit.details \
        else _template_basis(template, hit.zone_axis, cell)

    params0 = np.array(template.lattice.parameters, float)
    sga0 = SpacegroupAnalyzer(template, symprec=symprec)
    lengths, angles = _groups(sga0.get_crystal_system(), params0, bool(hit.details.get("is_2d")))

    def lattice_of(x):
        p = params0.copy()
        for k, g in enumerate(lengths):
            p[g] = np.exp(x[k]) * params0[g] / params0[g[0]]
        for k, g in enumerate(angles):
            p[g] = x[len(lengths) + k]
        return Lattice.from_parameters(*p)

    def residuals(x):
        la, lb, g = _projected(lattice_of(x).matrix, basis, t)
        res = [math.log(la / a_m), math.log(lb / b_m), math.radians(g - gamma_m)]
        d = np.array([x[k] - math.log(params0[g[0]]) for k, g in enumerate(lengths)])
        res += list(PRIOR_WEIGHT * (d - d.mean()))
        res += [PRIOR_WEIGHT * math.radians(x[len(lengths) + k] - params0[g[0]]) for k, g in enumerate(angles)]
        return res

    x0 = [math.log(params0[g[0]]) for g in lengths] + [params0[g[0]] for g in angles]
    fit = least_squares(residuals, x0) if x0 else None
    new_lattice = lattice_of(fit.x) if fit is not None else template.lattice
    progress(0.5, "symmetrising")
    fitted = Structure(new_lattice, template.species, template.frac_coords)
    refined = SpacegroupAnalyzer(fitted, symprec=symprec).get_refined_structure()
    sga = SpacegroupAnalyzer(refined, symprec=symprec)
    result = refined if hit.details.get("is_2d") else sga.get_conventional_standard_structure()

    warnings = []
    misfit = np.abs(residuals(fit.x)[:3]) if fit is not None else np.zeros(3)
    if misfit.max() > RESIDUAL_WARNING:
        warnings.append(f"{hit.formula} [{' '.join(map(str, hit.zone_axis))}] cannot match the measured cell "
                        f"within its symmetry: {100 * misfit.max():.1f}% misfit remains")
    strain = np.abs(np.array(new_lattice.abc) / params0[:3] - 1)
    if strain.max() > STRAIN_WARNING:
        warnings.append(f"large strain against the template {hit.template_id}: lattice parameters change by up to "
                        f"{100 * strain.max():.1f}%")
    if sga.get_space_group_number() != sga0.get_space_group_number():
        warnings.append(f"space group changed from {sga0.get_space_group_symbol()} to {sga.get_space_group_symbol()} "
                        f"at symprec {symprec:.2f} Å")
    progress(1.0, f"reconstructed {result.composition.reduced_formula} ({sga.get_space_group_symbol()})")
    return Reconstruction(result, hit.template_id, tuple(int(v) for v in hit.zone_axis), symprec, warnings)
