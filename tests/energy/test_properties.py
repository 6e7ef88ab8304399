"""Physical properties with CHGNet (bundled weights): hull, bulk modulus, phonons, elastic tensor.

Small primitive cells and few steps keep each test to seconds; the hull phases are cached in the
session's temporary cache (``conftest``), so a chemical system is relaxed once per session.
"""

import numpy as np
import pytest

pytest.importorskip("chgnet")
pytest.importorskip("phonopy")

from napari_automat.energy import properties as props  # noqa: E402
from napari_automat.model import AutomatError, Cancelled  # noqa: E402


@pytest.fixture(scope="module")
def calc():
    from napari_automat.energy.backends import get_calculator

    return get_calculator("chgnet")


@pytest.fixture(scope="module")
def library():
    from napari_automat.templates.library import load_library

    return load_library()


def _relaxed(atoms, calc):
    from napari_automat.energy.relax import relax_atoms

    res = relax_atoms(atoms, calc, fmax_eV_A=0.02, max_steps=100)
    return res.atoms, res.energy_per_atom_eV


def _hull(atoms, calc, library, **kw):
    from pymatgen.io.ase import AseAtomsAdaptor

    relaxed, energy = _relaxed(atoms, calc)
    return props.hull_energy(AseAtomsAdaptor.get_structure(relaxed), energy, calc, "chgnet-0.3.0", library, **kw)


def test_hull_zero_for_fcc_cu_and_above_for_bcc(calc, library):
    from ase.build import bulk

    fcc = _hull(bulk("Cu", "fcc", a=3.62), calc, library)
    assert abs(fcc["e_above_hull_meV"]) < 3.0
    assert list(fcc["decomposition"]) == fcc["hull"]["stable_phases"] and fcc["hull"]["stable_phases"][0].startswith("Cu Fm-3m")
    assert fcc["hull"]["missing_subsystems"] == [] and fcc["hull"]["phases"] == 1
    bcc = _hull(bulk("Cu", "bcc", a=2.88), calc, library)
    assert bcc["e_above_hull_meV"] > 10.0  # bcc Cu is a known metastable polymorph (~40 meV/atom in DFT)
    assert props.hull_path("chgnet-0.3.0", "Cu").is_file()


def test_hull_zero_for_lif_naming_the_missing_subsystem_and_its_elemental_reference(calc, library):
    from ase.build import bulk
    from napari_automat.energy.references import elemental_references

    out = _hull(bulk("LiF", "rocksalt", a=4.03), calc, library, max_steps=5,  # few steps: Li I-43d is slow
                references=lambda els: elemental_references(els, "chgnet"))
    assert out["hull"]["missing_subsystems"] == ["F"]
    assert "F (elemental reference)" in out["hull"]["stable_phases"]
    assert any("no phase of F" in w for w in out["warnings"])
    assert abs(out["e_above_hull_meV"]) < 3.0 and next(iter(out["decomposition"])).startswith("LiF Fm-3m")


def _pressures_GPa(atoms, calc, factors) -> np.ndarray:
    """Pressure [GPa] from the potential's stress at volumes ``factors`` × that of ``atoms`` (positions scaled)."""
    from ase.units import GPa

    out = []
    for factor in factors:
        scaled = atoms.copy()
        scaled.set_cell(np.array(atoms.cell) * factor ** (1 / 3), scale_atoms=True)
        scaled.calc = calc
        out.append(-np.mean(scaled.get_stress()[:3]) / GPa)
    return np.array(out)


def _stress_bulk_modulus(atoms, calc, volume_range: float) -> float:
    """B = -dP/dlnV [GPa] at the volume of ``atoms`` from a quadratic fit of the stresses' pressure over
    ``1 ± volume_range``: the potential's own reference, from its stresses, not the energies the EOS fits."""
    factors = np.linspace(1 - volume_range, 1 + volume_range, 7)
    return float(-np.polyfit(np.log(factors), _pressures_GPa(atoms, calc, factors), 2)[1])


@pytest.mark.parametrize("name, kind, a, experiment_GPa", [
    ("Cu", "fcc", 3.62, 140.0), ("Si", "diamond", 5.43, 98.0), ("NaCl", "rocksalt", 5.64, 25.0),
])
def test_bulk_modulus_matches_the_potentials_stress_derivative(calc, name, kind, a, experiment_GPa):
    from ase.build import bulk

    atoms, _ = _relaxed(bulk(name, kind, a=a), calc)
    out = props.bulk_modulus(atoms, calc, steps=5)
    reference = _stress_bulk_modulus(atoms, calc, props.EOS_VOLUME_RANGE)
    assert out["bulk_modulus_GPa"] == pytest.approx(reference, rel=0.15)
    assert out["bulk_modulus_GPa"] == pytest.approx(experiment_GPa, rel=0.35)  # a loose check on the potential
    assert 0 <= out["eos_residual"] < 1.0 and len(out["eos"]["volumes_A3_per_atom"]) == props.EOS_POINTS


def test_phonons_imaginary_for_cubic_batio3_not_for_si(calc):
    from ase.build import bulk
    from ase import Atoms

    batio3 = Atoms("BaTiO3", cell=np.eye(3) * 4.0, pbc=True,
                   scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    unstable = props.phonons(_relaxed(batio3, calc)[0], calc)
    assert unstable["imaginary"] and unstable["min_frequency_THz"] < -1.0
    assert any(not np.allclose(q["q"], 0) for q in unstable["qpoints"])  # away from Γ too
    assert unstable["supercell"] == [2, 2, 2] and unstable["displacements"] > 0
    stable = props.phonons(_relaxed(bulk("Si", "diamond", a=5.43), calc)[0], calc)
    assert not stable["imaginary"] and stable["qpoints"] == [] and stable["min_frequency_THz"] > -props.IMAGINARY_THZ


def test_supercell_is_about_100_atoms_at_most():
    assert props.supercell_diagonal([3.9, 3.9, 3.9], 5) == [2, 2, 2]
    assert props.supercell_diagonal([5.5, 5.5, 7.8], 20) == [2, 2, 1]
    assert props.supercell_diagonal([20.0, 20.0, 20.0], 200) == [1, 1, 1]


def test_elastic_tensor_of_cu_agrees_with_its_stress_derivative(calc):
    from ase.build import bulk

    atoms, _ = _relaxed(bulk("Cu", "fcc", a=3.62), calc)
    out = props.elastic(atoms, calc, steps=0)
    c = np.array(out["C_GPa"])
    assert c[0, 0] > c[0, 1] > 0 and c[3, 3] > 0 and out["mechanically_stable"]
    # the same strain scale (±1 %): CHGNet's E(V) of small cells is not smooth, so the ±6 % EOS of Cu
    # gives ~150 GPa against ~185 GPa from small strains (docs/benchmarks.md, Properties)
    assert out["bulk_modulus_vrh_GPa"] == pytest.approx(_stress_bulk_modulus(atoms, calc, 0.01), rel=0.1)
    assert 0 < out["shear_modulus_vrh_GPa"] < out["bulk_modulus_vrh_GPa"]


def test_levels_and_cancel(calc, library):
    from ase.build import bulk

    atoms, energy = _relaxed(bulk("Cu", "fcc", a=3.62), calc)
    assert props.compute_properties(atoms, "none") is None
    with pytest.raises(AutomatError, match="unknown properties level"):
        props.compute_properties(atoms, "most")

    def stop(fraction, message):
        if "volume" in message:
            raise Cancelled("user")

    with pytest.raises(Cancelled):
        props.compute_properties(atoms, "fast", model="chgnet", energy_per_atom_eV=energy, library=library,
                                 progress=stop)


def test_result_json_properties_block(calc, library):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    from napari_automat.config import PipelineConfig
    from napari_automat.model import EnergyReport, Micrograph
    from napari_automat.pipeline import PipelineResult, run_stage

    atoms, energy = _relaxed(bulk("Cu", "fcc", a=3.62), calc)
    result = PipelineResult(Micrograph(np.zeros((8, 8)), (0.1, 0.1), True), PipelineConfig(properties="fast"))
    result.energy = EnergyReport("chgnet", energy, 0.0, True, 0.01,
                                 relaxed_structure=AseAtomsAdaptor.get_structure(atoms))
    run_stage(result, "properties")
    block = result.to_dict()["properties"]
    assert {"e_above_hull_meV", "decomposition", "bulk_modulus_GPa", "eos_residual", "phonon",
            "elastic"} <= set(block)
    assert abs(block["e_above_hull_meV"]) < 3.0 and block["bulk_modulus_GPa"] > 50
    assert block["phonon"] is None and block["elastic"] is None and block["level"] == "fast"
    assert set(block["timings_s"]) == {"hull", "eos"} and "properties" in result.timings_s
    result.config = PipelineConfig()
    run_stage(result, "properties")
    assert result.to_dict()["properties"] is None


def test_hull_cache_keeps_only_this_librarys_phases(library):
    from napari_automat.energy.references import save_table

    (cu,) = props.library_phases(library, ["Cu"])
    fingerprint = library.entries[cu]["fingerprint"]
    phase = {"id": "x", "formula": "Cu", "spacegroup": "Fm-3m", "energy_per_atom_eV": -4.0, "converged": True}
    save_table(props.hull_path("test-model", "Cu"), {
        "recipe": props.HULL_RECIPE, "settings": {"fmax_eV_A": 0.05, "max_steps": props.HULL_MAX_STEPS},
        "chemsys": "Cu", "phases": {fingerprint: phase, "from-an-older-library": phase}})
    table = props.hull_phases(library, ["Cu"], calculator=None, model_key="test-model")  # all cached: no model
    assert list(table["phases"]) == [fingerprint]
