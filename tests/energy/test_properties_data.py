"""The plot data the properties keep in result.json: the E–V fit's curve, the hull phases with
their compositions and formation energies, the phonon band path and DOS. No machine-learned
potential: a cached hull table with set energies, ASE's EMT for phonons."""

import json

import numpy as np
import pytest

from napari_automat.energy import properties as props


def test_birch_murnaghan_is_the_curve_pymatgen_fits():
    from pymatgen.analysis.eos import EOS

    volumes = np.linspace(10.0, 13.0, 7)
    energies = -5.0 + 0.02 * (volumes - 11.6) ** 2 + 0.004 * (volumes - 11.6) ** 3
    fit = EOS("birch_murnaghan").fit(volumes, energies)
    v = np.linspace(9.5, 13.5, 30)
    mine = props.birch_murnaghan(v, fit.e0, fit.v0, fit.b0_GPa, fit.b1)
    assert np.allclose(mine, fit.func(v), atol=1e-9)
    assert mine.argmin() == np.abs(v - fit.v0).argmin()


def test_band_path_is_the_standard_one_in_the_cells_own_setting():
    from ase.build import bulk
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    a = 5.43
    si = AseAtomsAdaptor.get_structure(bulk("Si", "diamond", a=a))  # fcc primitive, ASE's setting
    path = props.band_path(si, 120)
    assert path["labels"][0] == ["Γ", "X"] and ["Γ", "L"] in path["labels"]
    assert sum(len(s) for s in path["segments"]) <= 120
    recip = si.lattice.reciprocal_lattice.matrix / (2 * np.pi)  # 1/Å
    ends = {b: path["segments"][i][-1] for i, (_, b) in enumerate(path["labels"])}
    assert np.allclose(sorted(np.abs(ends["X"] @ recip)), [0, 0, 1 / a], atol=1e-6)
    assert np.allclose(np.abs(ends["L"] @ recip), [0.5 / a] * 3, atol=1e-6)
    assert np.allclose(sorted(np.abs(ends["W"] @ recip)), [0, 0.5 / a, 1 / a], atol=1e-6)
    # the same crystal in another setting (rotated basis order): the same Cartesian points
    other = Structure(Lattice(np.array(si.lattice.matrix)[[2, 0, 1]]), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    ends2 = {b: props.band_path(other, 120)["segments"][i][-1] for i, (_, b) in enumerate(path["labels"])}
    recip2 = other.lattice.reciprocal_lattice.matrix / (2 * np.pi)
    assert np.allclose(sorted(np.abs(ends2["X"] @ recip2)), [0, 0, 1 / a], atol=1e-6)


def test_hull_keeps_phases_and_the_structures_point_for_the_plot(tmp_path, monkeypatch):
    """Ni–O with set phase energies (cached: no potential runs): NiO on the hull, the structure above."""
    from pymatgen.core import Composition, Lattice, Structure

    from napari_automat.energy.references import save_table
    from napari_automat.templates.library import load_library

    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(tmp_path))
    library = load_library()
    energies = {"Ni": -5.0, "O2": -4.0, "NiO": -6.5}  # eV/atom: NiO forms at -2.0 eV/atom
    phases = {}
    for i in props.library_phases(library, ["Ni", "O"]):
        e = library.entries[i]
        bump = 0.0 if e["spacegroup_symbol"] in ("Fm-3m", "R-3m") else 0.3  # one phase of each formula lowest
        phases[e["fingerprint"]] = {"id": e["id"], "formula": e["reduced_formula"], "spacegroup": e["spacegroup_symbol"],
                                    "energy_per_atom_eV": energies[e["reduced_formula"]] + bump, "converged": True}
    save_table(props.hull_path("test-model", "Ni-O"), {
        "recipe": props.HULL_RECIPE, "settings": {"fmax_eV_A": 0.05, "max_steps": props.HULL_MAX_STEPS},
        "chemsys": "Ni-O", "phases": phases})
    nio = Structure(Lattice.cubic(4.18), ["Ni"] * 4 + ["O"] * 4,
                    [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    out = props.hull_energy(nio, -6.2, None, "test-model", library)
    assert out["e_above_hull_meV"] == pytest.approx(300.0)
    hull = out["hull"]
    assert hull["elements"] == ["Ni", "O"]
    assert hull["structure"] == {"fractions": {"Ni": 0.5, "O": 0.5}, "formation_energy_eV_per_atom": -1.7}
    rows = {r["name"]: r for r in hull["entries"]}
    assert len(rows) == len(phases)
    stable = sorted(r["name"].split()[0] for r in hull["entries"] if r["stable"])
    assert stable == ["Ni", "NiO", "O2"] and all(r["e_above_hull_meV"] == 0 for r in hull["entries"] if r["stable"])
    (nio_row,) = [r for r in hull["entries"] if r["stable"] and r["name"].startswith("NiO")]
    assert nio_row["fractions"] == {"Ni": 0.5, "O": 0.5} and nio_row["formation_energy_eV_per_atom"] == -2.0
    assert all(r["e_above_hull_meV"] == pytest.approx(300.0) for r in hull["entries"] if not r["stable"])
    assert sum(Composition(r["name"].split()[0]).is_element for r in hull["entries"]) >= 2
    json.dumps(out, allow_nan=False)


def test_phonon_band_structure_and_dos_of_copper():
    """Copper with EMT (fast): no imaginary mode; the band path and DOS stay small; the DOS holds
    3 modes per atom of the primitive cell."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    out = props.phonons(bulk("Cu", "fcc", a=3.61), EMT())
    assert not out["imaginary"]
    band, dos = out["band"], out["dos"]
    n = len(band["distances"])
    assert 20 <= n <= props.PHONON_BAND_QPOINTS and len(band["frequencies_THz"]) == n
    assert all(len(f) == 3 for f in band["frequencies_THz"])
    assert band["segments"][0][0] == 0 and band["segments"][-1][1] == n and len(band["segments"]) == len(band["labels"])
    assert band["labels"][0][0] == "Γ" and np.allclose(band["frequencies_THz"][0], 0, atol=0.05)  # acoustic at Γ
    assert np.all(np.diff(band["distances"]) >= -1e-9)
    assert 0 < max(max(f) for f in band["frequencies_THz"]) < 12  # Cu's top is ~7 THz
    assert len(dos["frequencies_THz"]) == len(dos["dos"]) <= props.PHONON_DOS_BINS
    assert np.trapezoid(dos["dos"], dos["frequencies_THz"]) == pytest.approx(3.0, rel=0.05)
    assert len(json.dumps(out, allow_nan=False)) < 40_000
