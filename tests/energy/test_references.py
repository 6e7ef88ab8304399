import json

import numpy as np
import pytest

from napari_automat.energy import elemental_references, formation_energy_per_atom, references
from napari_automat.energy.references import cache_dir, reference_candidates
from napari_automat.model import AutomatError


def test_every_element_has_a_sane_candidate():
    from ase.data import chemical_symbols
    from ase.neighborlist import neighbor_list

    for symbol in chemical_symbols[1:95]:
        for cand in reference_candidates(symbol):
            assert set(cand.atoms.get_chemical_symbols()) == {symbol}
            assert all(cand.atoms.pbc)
            d = neighbor_list("d", cand.atoms, 6.0)
            assert d.min() > 0.7, (symbol, cand.label)  # no overlapping atoms
    o2 = reference_candidates("O")
    assert len(o2) == 1 and not o2[0].relax_cell and len(o2[0].atoms) == 2
    assert {c.label for c in reference_candidates("C")} >= {"graphite"}
    for bad in ("Am", "Xx", ""):
        with pytest.raises(AutomatError):
            reference_candidates(bad)


def test_formation_energy_arithmetic(sto):
    refs = {"Sr": -1.0, "Ti": -8.0, "O": -5.0}
    # (1*-1 + 1*-8 + 3*-5) / 5 = -4.8
    assert formation_energy_per_atom(sto, -8.4, refs) == pytest.approx(-3.6)
    from pymatgen.io.ase import AseAtomsAdaptor

    assert formation_energy_per_atom(AseAtomsAdaptor.get_atoms(sto), -4.8, refs) == pytest.approx(0.0)
    with pytest.raises(AutomatError, match="Ti"):
        formation_energy_per_atom(sto, -8.4, {"Sr": -1.0, "O": -5.0})


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "energy_references"


@pytest.mark.slow
def test_references_are_lazy_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(tmp_path))
    computed = []
    real = references.compute_reference

    def counting(symbol, calculator, progress):
        computed.append(symbol)
        return real(symbol, calculator, progress)

    monkeypatch.setattr(references, "compute_reference", counting)
    refs = elemental_references(["O", "O"], "chgnet")
    assert computed == ["O"] and set(refs) == {"O"}
    assert -6.0 < refs["O"] < -4.0  # CHGNet's O2: about -4.8 eV/atom
    (path,) = (tmp_path / "energy_references").glob("*.json")
    table = json.loads(path.read_text())
    assert table["model_key"] == "chgnet-0.3.0" and set(table["elements"]) == {"O"}
    assert table["elements"]["O"]["converged"]

    refs2 = elemental_references(["Si", "O"], "chgnet")
    assert computed == ["O", "Si"]  # O came from the file
    assert refs2["O"] == refs["O"] and np.isfinite(refs2["Si"])
