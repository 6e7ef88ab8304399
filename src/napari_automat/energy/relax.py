"""Relax a structure with an ASE calculator, keeping its symmetry; or evaluate it as it is.

Positions and cell move together through ASE's ``FrechetCellFilter``; ``FixSymmetry`` keeps the
space group found at the start (symprec in Å). Stress is reported in GPa, Voigt order
``xx, yy, zz, yz, xz, xy`` (ASE's), positive = tensile.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import AutomatError, Progress, no_progress

OPTIMIZERS = ("BFGS", "FIRE")
#: Harmless warnings the backends raise at every call (CHGNet converting constrained atoms, torch).
_NOISE = ("Only FixAtoms and FixCartesian", "Converting a tensor with requires_grad")


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        for message in _NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


@dataclass
class RelaxResult:
    """Energies and forces of one (relaxed) structure; ``atoms`` has neither calculator nor constraints."""

    atoms: Any
    energy_per_atom_eV: float
    max_force_eV_A: float
    stress_GPa: list[float]
    steps: int
    converged: bool
    lattice_change_pct: float = 0.0


def lattice_change_pct(cell_before, cell_after) -> float:
    """The relative change [%] of the lattice parameter (|a|, |b| or |c|) that changed most, signed.

    Positive means the cell grew. The cell vectors are compared one by one (the relaxation deforms
    the same cell, it does not re-reduce it).
    """
    before = np.linalg.norm(np.asarray(cell_before, float), axis=1)
    after = np.linalg.norm(np.asarray(cell_after, float), axis=1)
    change = (after - before) / before * 100.0
    return float(change[np.argmax(np.abs(change))])


def evaluate(atoms, calculator) -> RelaxResult:
    """Energy, forces and stress of ``atoms`` as they are (not relaxed, so ``converged`` is False)."""
    atoms = atoms.copy()
    atoms.calc = calculator
    with _quiet():
        return _result(atoms, 0, False, atoms.cell)


def relax_atoms(atoms, calculator, fmax_eV_A: float = 0.05, max_steps: int = 200, relax_cell: bool = True,
                keep_symmetry: bool = True, optimizer: str = "BFGS", symprec_A: float = 0.01,
                progress: Progress = no_progress) -> RelaxResult:
    """Relax positions (and the cell when ``relax_cell``) until every force is below ``fmax_eV_A``.

    Stops after ``max_steps`` optimizer steps; ``progress(step / max_steps, message)`` is called at
    every step and may raise ``model.Cancelled``, which propagates.
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    if optimizer not in OPTIMIZERS:
        raise AutomatError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if max_steps < 0:
        raise AutomatError(f"max_steps must be >= 0, got {max_steps}")
    atoms = atoms.copy()
    cell0 = atoms.cell.copy()
    atoms.calc = calculator
    if keep_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=symprec_A))
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    opt = (BFGS if optimizer == "BFGS" else FIRE)(target, logfile=None)

    def report():
        progress(min(opt.nsteps / max(max_steps, 1), 1.0), f"relaxing: step {opt.nsteps}/{max_steps}")

    opt.attach(report, interval=1)
    with _quiet():
        converged = bool(opt.run(fmax=fmax_eV_A, steps=max_steps))
        return _result(atoms, opt.nsteps, converged, cell0)


def _result(atoms, steps: int, converged: bool, cell0) -> RelaxResult:
    from ase.units import GPa

    energy = float(atoms.get_potential_energy()) / len(atoms)
    forces = atoms.get_forces(apply_constraint=False)
    stress = atoms.get_stress(voigt=True, apply_constraint=False) / GPa
    max_force = float(np.max(np.linalg.norm(forces, axis=1))) if len(atoms) else 0.0
    if not (np.isfinite(energy) and np.isfinite(max_force) and np.all(np.isfinite(stress))):
        raise AutomatError("the potential returned non-finite energies or forces for this structure")
    clean = atoms.copy()
    clean.calc = None
    clean.set_constraint()
    return RelaxResult(clean, energy, max_force, [float(s) for s in stress], int(steps), bool(converged),
                       lattice_change_pct(cell0, clean.cell))
