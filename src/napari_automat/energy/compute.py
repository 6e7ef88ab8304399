"""``compute_energy``: relax a structure with MatterSim or CHGNet and report its formation energy."""

from __future__ import annotations

from typing import Optional

from ..model import AutomatError, EnergyReport, Progress, no_progress

#: Share of the progress bar given to the relaxation; the elemental references get the rest.
_RELAX_SHARE = 0.8


def _scaled(progress: Progress, start: float, stop: float) -> Progress:
    return lambda fraction, message="": progress(start + (stop - start) * fraction, message)


def to_atoms(structure):
    """An ASE Atoms copy of a pymatgen Structure (ordered) or of ASE Atoms."""
    if hasattr(structure, "get_chemical_symbols"):
        atoms = structure.copy()
    else:
        if not structure.is_ordered:
            raise AutomatError("the structure has partially occupied sites: order it before computing energies")
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
    if len(atoms) == 0:
        raise AutomatError("the structure has no atoms")
    if not all(atoms.pbc) or atoms.cell.volume <= 1e-6:
        raise AutomatError("the structure needs a 3D periodic cell to compute energies")
    atoms.calc = None
    atoms.set_constraint()
    return atoms


def compute_energy(structure, model: str = "auto", relax: bool = True, fmax_eV_A: float = 0.05,
                   max_steps: int = 200, checkpoint: Optional[str] = None, device: str = "cpu",
                   progress: Progress = no_progress) -> EnergyReport:
    """Energy per atom [eV], formation energy [eV/atom], forces [eV/Å] and stress [GPa] of ``structure``.

    ``model``: ``auto`` (MatterSim when its checkpoint is available, else CHGNet; the reason goes
    into ``warnings``), ``mattersim`` or ``chgnet``. ``checkpoint`` is MatterSim's (path or
    pretrained name). With ``relax``, positions and cell are relaxed with the space group kept
    until forces < ``fmax_eV_A`` or ``max_steps``; ``lattice_change_pct`` is the signed change of
    the lattice parameter that moved most (the workflow judges it against
    ``PipelineConfig.max_lattice_change``). Formation energies use elemental references relaxed
    with the same model (see ``references``); when they cannot be had it is None, with a warning.
    ``progress`` may raise ``model.Cancelled``.
    """
    from .backends import get_calculator, resolve_model
    from .references import elemental_references, formation_energy_per_atom
    from .relax import evaluate, relax_atoms

    atoms = to_atoms(structure)
    name, reason = resolve_model(model, checkpoint)
    warnings = [f"energy model {name}: {reason}"] if (model or "auto").strip().lower() == "auto" else []
    checkpoint = checkpoint if name == "mattersim" else None
    progress(0.0, f"loading {name}")
    calculator = get_calculator(name, checkpoint, device)
    if relax:
        result = relax_atoms(atoms, calculator, fmax_eV_A, max_steps, progress=_scaled(progress, 0.0, _RELAX_SHARE))
        if not result.converged:
            warnings.append(f"relaxation did not converge in {max_steps} steps: max force "
                            f"{result.max_force_eV_A:.3f} eV/Å > {fmax_eV_A:g}")
    else:
        result = evaluate(atoms, calculator)
    progress(_RELAX_SHARE, "elemental references")
    try:
        refs = elemental_references(atoms.get_chemical_symbols(), name, checkpoint,
                                    _scaled(progress, _RELAX_SHARE, 1.0), device)
        formation = formation_energy_per_atom(atoms, result.energy_per_atom_eV, refs)
    except AutomatError as exc:
        formation = None
        warnings.append(f"no formation energy: {exc}")
    relaxed_structure = None
    if relax:
        from pymatgen.io.ase import AseAtomsAdaptor

        relaxed_structure = AseAtomsAdaptor.get_structure(result.atoms)
    progress(1.0, "energy done")
    return EnergyReport(model=name, energy_per_atom_eV=result.energy_per_atom_eV,
                        formation_energy_per_atom_eV=formation, relaxed=bool(relax),
                        max_force_eV_A=result.max_force_eV_A, steps=result.steps,
                        lattice_change_pct=result.lattice_change_pct, stress_GPa=result.stress_GPa,
                        relaxed_structure=relaxed_structure, warnings=warnings)
