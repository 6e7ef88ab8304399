"""Relaxation mechanics with ASE's fast EMT potential (no ML model needed)."""

import numpy as np
import pytest

from napari_automat.energy.relax import evaluate, lattice_change_pct, relax_atoms
from napari_automat.model import AutomatError, Cancelled


@pytest.fixture
def emt():
    from ase.calculators.emt import EMT

    return EMT()


def test_lattice_change_pct():
    assert lattice_change_pct(np.eye(3) * 4.0, np.diag([4.0, 4.2, 3.9])) == pytest.approx(5.0)
    assert lattice_change_pct(np.eye(3) * 4.0, np.diag([4.0, 4.0, 3.6])) == pytest.approx(-10.0)


def test_relax_strained_cu_keeps_fcc(emt):
    from ase.build import bulk
    from ase.spacegroup.symmetrize import check_symmetry

    atoms = bulk("Cu", "fcc", a=3.8, cubic=True)
    atoms.rattle(0.0005, seed=1)  # far below symprec (0.01 Å): symmetrised back to fcc
    before = evaluate(atoms, emt)
    seen = []
    res = relax_atoms(atoms, emt, fmax_eV_A=0.01, max_steps=100, progress=lambda f, m: seen.append(f))
    assert res.converged and 0 < res.steps <= 100
    assert res.max_force_eV_A < 0.01 and max(abs(s) for s in res.stress_GPa) < 1.0
    assert res.energy_per_atom_eV < before.energy_per_atom_eV
    a = res.atoms.cell.lengths()[0]
    assert 3.55 < a < 3.65  # EMT's Cu lattice constant is ~3.59 Å
    assert res.lattice_change_pct == pytest.approx((a - 3.8) / 3.8 * 100, abs=0.1)
    assert check_symmetry(res.atoms, 1e-4).number == 225
    assert res.atoms.calc is None and not res.atoms.constraints
    assert seen == sorted(seen) and 0 <= seen[0] and seen[-1] <= 1


def test_step_limit_and_cancel(emt):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.9, cubic=True)
    res = relax_atoms(atoms, emt, fmax_eV_A=1e-4, max_steps=2)
    assert res.steps == 2 and not res.converged

    def stop(fraction, message):
        if fraction > 0:
            raise Cancelled("user")

    with pytest.raises(Cancelled):
        relax_atoms(atoms, emt, max_steps=50, progress=stop)
    with pytest.raises(AutomatError):
        relax_atoms(atoms, emt, optimizer="LBFGS-B")
