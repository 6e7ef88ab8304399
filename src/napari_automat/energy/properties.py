"""Physical properties of a relaxed structure, each from the potential that relaxed it.

* :func:`hull_energy`: energy above the convex hull [meV/atom] of the structure's chemical system,
  built (``pymatgen`` ``PhaseDiagram``) from every 3D phase of that system in the template library,
  each relaxed with the same potential and settings as the main relaxation (step-capped at
  :data:`HULL_MAX_STEPS`) and cached per model and chemical system next to the elemental references.
  An element without a library phase falls back to its elemental reference (``references``).
* :func:`bulk_modulus`: Birch–Murnaghan fit [GPa] to a ±6 % volume scan (isotropic, positions
  relaxed at each volume) with the fit's RMS residual [meV/atom].
* :func:`phonons`: phonopy finite displacements on a supercell of at most :data:`PHONON_MAX_ATOMS`;
  the lowest frequency [THz] on a Γ-centred mesh and the q-points with imaginary modes, with a band
  structure along the high-symmetry path and a density of states, small enough for ``result.json``.
* :func:`elastic`: elastic tensor [GPa] from ±0.5 and ±1 % strains and the stresses (positions
  relaxed), with the Voigt–Reuss–Hill bulk and shear moduli.

``compute_properties`` runs them by level: ``fast`` = hull and bulk modulus, ``all`` adds phonons
and the elastic tensor. Progress callbacks may raise ``model.Cancelled``, which propagates.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Callable, Optional

import numpy as np

from ..model import AutomatError, Progress, no_progress
from .compute import to_atoms

LEVELS = ("none", "fast", "all")
#: Bump when the hull recipe changes: older cache files are then ignored.
HULL_RECIPE = 1
#: Step cap of a library phase's relaxation (the main relaxation's ``fmax`` is kept).
HULL_MAX_STEPS = 40
#: Volume range of the equation-of-state scan (relative) and its number of points.
EOS_VOLUME_RANGE = 0.06
EOS_POINTS = 7
#: Position-relaxation steps at each scanned volume or applied strain.
INNER_STEPS = 20
#: Largest phonon supercell [atoms], Γ-centred mesh, displacement [Å].
PHONON_MAX_ATOMS = 100
PHONON_MESH = (4, 4, 4)
PHONON_DISPLACEMENT_A = 0.01
#: Positions are relaxed to this force [eV/Å] before the displacements (residual forces of the main
#: relaxation, 0.05 eV/Å, show up as spurious imaginary modes of ~1 THz in CHGNet's CaTiO3 Pnma).
PHONON_FMAX_EV_A = 0.005
#: Frequencies below minus this count as imaginary [THz] (numerical noise stays above it).
IMAGINARY_THZ = 0.1
#: Plot data kept in ``result.json``: at most this many q-points on the band path (fewer for many
#: bands: at most ``PHONON_BAND_VALUES`` frequencies in all), DOS bins on a Γ-centred ``PHONON_DOS_MESH``.
PHONON_BAND_QPOINTS = 200
PHONON_BAND_VALUES = 6000
PHONON_DOS_BINS = 150
PHONON_DOS_MESH = (8, 8, 8)
#: Hull phases listed for the plot (lowest above the hull first).
HULL_PLOT_MAX_ENTRIES = 100
#: eV/Å³ per GPa.
EV_A3_PER_GPA = 1.0 / 160.21766208
#: Strains applied for the elastic tensor (each Voigt component in turn).
ELASTIC_STRAINS = (-0.01, -0.005, 0.005, 0.01)
#: Relative share of the progress bar per property.
_COST = {"hull": 3.0, "eos": 1.0, "phonon": 1.0, "elastic": 2.0}


def _scaled(progress: Progress, start: float, stop: float, prefix: str = "") -> Progress:
    return lambda fraction, message="": progress(start + (stop - start) * fraction, prefix + message)


# --- energy above the hull ------------------------------------------------------------------------

def hull_path(model_key: str, chemsys: str):
    """The cache file of the hull phases of ``chemsys`` (``"O-Sr-Ti"``) under model ``model_key``."""
    from .references import cache_dir

    return cache_dir() / "hull" / f"{model_key}-{chemsys}-r{HULL_RECIPE}.json"


def library_phases(library, elements) -> list[int]:
    """Indices of the library's 3D entries whose elements all lie in ``elements``."""
    allowed = set(elements)
    return [i for i, e in enumerate(library.entries) if not e["is_2d"] and set(e["elements"]) <= allowed]


def missing_subsystems(library, indices: list[int], elements) -> list[str]:
    """The sub-systems of ``elements`` (``"Sr-Ti"``) with no phase among ``indices``."""
    present = {frozenset(library.entries[i]["elements"]) for i in indices}
    subsystems = (frozenset(c) for n in range(1, len(elements) + 1) for c in itertools.combinations(sorted(elements), n))
    return ["-".join(sorted(s)) for s in subsystems if s not in present]


def _relax_phase(structure, calculator, fmax_eV_A: float, max_steps: int, progress: Progress) -> dict:
    """One library phase relaxed (primitive cell) as a JSON-ready dict."""
    from .relax import relax_atoms

    t0 = time.perf_counter()
    res = relax_atoms(to_atoms(structure.get_primitive_structure()), calculator, fmax_eV_A, max_steps, progress=progress)
    return {"energy_per_atom_eV": res.energy_per_atom_eV, "n_atoms": len(res.atoms), "steps": res.steps,
            "converged": res.converged, "max_force_eV_A": res.max_force_eV_A,
            "seconds": round(time.perf_counter() - t0, 2)}


def hull_phases(library, elements, calculator, model_key: str, fmax_eV_A: float = 0.05,
                max_steps: int = HULL_MAX_STEPS, progress: Progress = no_progress) -> dict:
    """The relaxed library phases of the chemical system of ``elements`` (cached): the cache table
    with this library's phases, ``{"phases": {fingerprint: {id, formula, spacegroup, energy_per_atom_eV, ...}}, ...}``.

    A phase is computed once per model, settings and library fingerprint; ``progress`` may cancel
    between and inside relaxations (phases done so far stay cached).
    """
    from .references import load_table, save_table

    chemsys = "-".join(sorted(set(elements)))
    path = hull_path(model_key, chemsys)
    settings = {"fmax_eV_A": fmax_eV_A, "max_steps": max_steps}
    fresh = {"recipe": HULL_RECIPE, "model_key": model_key, "chemsys": chemsys, "settings": settings, "phases": {}}
    table = load_table(path, HULL_RECIPE)
    table = table if table.get("settings") == settings else fresh
    indices = library_phases(library, elements)
    todo = [i for i in indices if library.entries[i]["fingerprint"] not in table["phases"]]
    for k, i in enumerate(todo):
        e = library.entries[i]
        label = f"{e['reduced_formula']} ({e['spacegroup_symbol']})"
        entry = _relax_phase(library.structure(i), calculator, fmax_eV_A, max_steps,
                             _scaled(progress, k / len(todo), (k + 1) / len(todo), f"hull phase {label}: "))
        entry.update(id=e["id"], formula=e["reduced_formula"], spacegroup=e["spacegroup_symbol"])
        table = load_table(path, HULL_RECIPE) or table  # another process may have added phases
        table = table if table.get("settings") == settings else fresh
        table["phases"][e["fingerprint"]] = entry
        save_table(path, table)
    progress(1.0, "hull phases ready")
    current = {library.entries[i]["fingerprint"] for i in indices}  # phases of an older library left out
    return dict(table, phases={fp: p for fp, p in table["phases"].items() if fp in current})


def hull_energy(structure, energy_per_atom_eV: float, calculator, model_key: str, library,
                fmax_eV_A: float = 0.05, max_steps: int = HULL_MAX_STEPS,
                references: Optional[Callable[[list[str]], dict]] = None, progress: Progress = no_progress) -> dict:
    """Energy above the hull [meV/atom] of ``structure`` (energy per atom ``energy_per_atom_eV`` [eV]
    from the same model) and the hull phases at its composition ``{phase name: atom fraction}``.

    ``references(elements)``: element → elemental reference energy [eV/atom] of the same model, for
    elements without a library phase. Negative values mean the structure lies below the library's hull.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    elements = sorted({site.specie.symbol for site in structure})
    t0 = time.perf_counter()
    table = hull_phases(library, elements, calculator, model_key, fmax_eV_A, max_steps, progress)
    seconds = time.perf_counter() - t0
    entries = [PDEntry(Composition(p["formula"]), p["energy_per_atom_eV"] * Composition(p["formula"]).num_atoms,
                       name=f"{p['formula']} {p['spacegroup']} ({p['id']})") for p in table["phases"].values()]
    covered = {el.symbol for entry in entries if entry.composition.is_element for el in entry.composition}
    uncovered, warnings = sorted(set(elements) - covered), []
    if uncovered and references is None:
        raise AutomatError(f"no phase of {', '.join(uncovered)} in the library and no elemental references")
    for el, energy in (references(uncovered) if uncovered else {}).items():
        entries.append(PDEntry(Composition(el), energy, name=f"{el} (elemental reference)"))
        warnings.append(f"the library has no phase of {el}: its elemental reference stands in")
    diagram = PhaseDiagram(entries)
    decomposition = diagram.get_decomposition(structure.composition)
    e_hull = energy_per_atom_eV - diagram.get_hull_energy_per_atom(structure.composition)
    missing = missing_subsystems(library, library_phases(library, elements), elements)
    own = PDEntry(structure.composition, energy_per_atom_eV * structure.composition.num_atoms, name="structure")
    return {"e_above_hull_meV": round(1000.0 * e_hull, 2),
            "decomposition": {e.name: round(float(x), 4) for e, x in sorted(decomposition.items(), key=lambda kv: -kv[1])},
            "hull": {"chemsys": table["chemsys"], "phases": len(table["phases"]),
                     "stable_phases": sorted(e.name for e in diagram.stable_entries),
                     "missing_subsystems": missing, "max_steps": max_steps,
                     "unconverged_phases": sum(not p["converged"] for p in table["phases"].values()),
                     "build_seconds": round(seconds, 2), "elements": elements,
                     "entries": hull_entries(diagram),
                     "structure": {"fractions": _fractions(structure.composition, elements),
                                   "formation_energy_eV_per_atom":
                                       round(float(diagram.get_form_energy_per_atom(own)), 4)}},
            "warnings": warnings}


def _fractions(composition, elements) -> dict:
    return {el: round(float(composition.get_atomic_fraction(el)), 4) for el in elements}


def hull_entries(diagram, max_entries: int = HULL_PLOT_MAX_ENTRIES) -> list[dict]:
    """The phases of ``diagram`` for a plot: name, atom fractions, formation energy [eV/atom] against
    the diagram's elemental phases, energy above the hull [meV/atom] and whether on it (lowest above
    the hull first, at most ``max_entries``)."""
    elements = sorted(el.symbol for el in diagram.elements)
    stable = set(diagram.stable_entries)
    rows = [{"name": e.name, "fractions": _fractions(e.composition, elements),
             "formation_energy_eV_per_atom": round(float(diagram.get_form_energy_per_atom(e)), 4),
             "e_above_hull_meV": round(1000.0 * float(diagram.get_e_above_hull(e)), 2), "stable": e in stable}
            for e in diagram.all_entries]
    return sorted(rows, key=lambda r: (r["e_above_hull_meV"], r["name"]))[:max_entries]


# --- equation of state ----------------------------------------------------------------------------

def bulk_modulus(atoms, calculator, fmax_eV_A: float = 0.05, steps: int = INNER_STEPS,
                 volume_range: float = EOS_VOLUME_RANGE, points: int = EOS_POINTS,
                 progress: Progress = no_progress) -> dict:
    """Birch–Murnaghan bulk modulus [GPa] of ``atoms`` (relaxed) from an isotropic scan of the volume
    over ``1 ± volume_range``, positions relaxed (``steps``) at each volume, with the fit's RMS
    residual [meV/atom] and the scan (Å³/atom, eV/atom) for plotting."""
    from pymatgen.analysis.eos import EOS

    from .relax import relax_atoms

    cell = np.array(atoms.get_cell())
    volumes, energies = [], []
    for k, factor in enumerate(np.linspace(1 - volume_range, 1 + volume_range, points)):
        scaled = atoms.copy()
        scaled.set_cell(cell * factor ** (1 / 3), scale_atoms=True)
        res = relax_atoms(scaled, calculator, fmax_eV_A, steps, relax_cell=False,
                          progress=_scaled(progress, k / points, (k + 1) / points, f"volume {factor:.3f}: "))
        volumes.append(scaled.get_volume() / len(scaled))
        energies.append(res.energy_per_atom_eV)
    try:
        fit = EOS("birch_murnaghan").fit(volumes, energies)
    except Exception as exc:  # pymatgen raises a bare EOSError or a scipy error on a bad scan
        raise AutomatError(f"the equation-of-state fit failed: {exc}") from exc
    residual = np.asarray(energies) - fit.func(np.asarray(volumes))
    return {"bulk_modulus_GPa": round(float(fit.b0_GPa), 2),
            "eos_residual": round(1000.0 * float(np.sqrt(np.mean(residual ** 2))), 4),
            "eos": {"v0_A3_per_atom": round(float(fit.v0), 4), "b_prime": round(float(fit.b1), 3),
                    "e0_eV_per_atom": round(float(fit.e0), 6),
                    "volumes_A3_per_atom": [round(float(v), 4) for v in volumes],
                    "energies_eV_per_atom": [round(float(e), 6) for e in energies],
                    "residual_unit": "meV/atom RMS"}}


def birch_murnaghan(volumes, e0: float, v0: float, b0_GPa: float, b_prime: float) -> np.ndarray:
    """Birch–Murnaghan energy [eV/atom] at ``volumes`` [Å³/atom] (the curve :func:`bulk_modulus` fits;
    its ``eos`` block holds the parameters)."""
    e0, v0, b0, b_prime = float(e0), float(v0), float(b0_GPa) * EV_A3_PER_GPA, float(b_prime)
    eta2 = (v0 / np.asarray(volumes, float)) ** (2.0 / 3.0)
    return e0 + 9.0 / 16.0 * b0 * v0 * ((eta2 - 1) ** 3 * b_prime + (eta2 - 1) ** 2 * (6 - 4 * eta2))


# --- phonons --------------------------------------------------------------------------------------

def supercell_diagonal(lengths_A, n_atoms: int, max_atoms: int = PHONON_MAX_ATOMS) -> list[int]:
    """Repeats along a, b, c that make the shortest supercell edge longest with at most ``max_atoms``."""
    lengths = np.asarray(lengths_A, float)
    best = [1, 1, 1]
    for target in sorted({float(n * a) for a in lengths for n in range(1, 8)}):
        reps = [max(1, math.ceil(target / a - 1e-6)) for a in lengths]
        if n_atoms * int(np.prod(reps)) <= max_atoms:
            best = reps
    return best


def phonons(atoms, calculator, mesh=PHONON_MESH, max_atoms: int = PHONON_MAX_ATOMS,
            progress: Progress = no_progress) -> dict:
    """Harmonic phonons of ``atoms`` (relaxed; its primitive cell is used, positions relaxed further to
    ``PHONON_FMAX_EV_A``) from the potential's forces.

    Returns the lowest frequency [THz] over the mesh (the three acoustic modes at Γ left out; negative
    = imaginary), ``imaginary`` (any mode below ``-IMAGINARY_THZ``) and ``qpoints``: the irreducible
    mesh points with imaginary modes (reduced coordinates of the primitive cell used) and their
    lowest frequency.
    """
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    from .relax import _quiet, relax_atoms

    prim = relax_atoms(_primitive(atoms), calculator, PHONON_FMAX_EV_A, 100, relax_cell=False).atoms
    reps = supercell_diagonal(prim.cell.lengths(), len(prim), max_atoms)
    unit = PhonopyAtoms(symbols=prim.get_chemical_symbols(), cell=np.array(prim.cell),
                        scaled_positions=prim.get_scaled_positions())
    ph = Phonopy(unit, supercell_matrix=np.diag(reps), primitive_matrix="P")  # the unit cell is primitive already
    ph.generate_displacements(distance=PHONON_DISPLACEMENT_A)
    displaced = ph.supercells_with_displacements
    forces = []
    for k, cell in enumerate(displaced):
        progress(k / len(displaced), f"phonons: displacement {k + 1}/{len(displaced)}")
        forces.append(_forces(cell, calculator, _quiet))
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.run_mesh(list(mesh), is_gamma_center=True)
    result = ph.get_mesh_dict()
    summary = _phonon_summary(result["qpoints"], result["frequencies"], reps, len(displaced), mesh)
    summary["band"] = _band_structure(ph, prim)
    summary["dos"] = _dos(ph)
    progress(1.0, "phonons done")
    return summary


def band_path(structure, max_qpoints: int = PHONON_BAND_QPOINTS) -> Optional[dict]:
    """The high-symmetry path (Setyawan–Curtarolo, of the standard primitive cell) in reduced
    coordinates of the reciprocal lattice of ``structure`` (a pymatgen Structure, any setting):
    ``{"segments": [[q, …], …], "labels": [[start, end], …]}`` with at most ``max_qpoints`` q-points,
    spread by length. None when the standard cell cannot be mapped onto ``structure``'s."""
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from pymatgen.symmetry.bandstructure import HighSymmKpath

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        std = SpacegroupAnalyzer(structure).get_primitive_standard_structure(international_monoclinic=False)
        kpath = HighSymmKpath(std, path_type="setyawan_curtarolo").kpath
        mapping = structure.lattice.find_mapping(std.lattice, ltol=1e-3, atol=0.5)
    if mapping is None or not kpath or not kpath.get("path"):
        return None
    to_ours = np.linalg.inv(np.asarray(mapping[2], float))  # aligned std = scale @ ours: q_ours = scale⁻¹ q_std
    points = {name: to_ours @ np.asarray(q, float) for name, q in kpath["kpoints"].items()}
    pairs = [(a, b) for branch in kpath["path"] for a, b in zip(branch[:-1], branch[1:])]
    recip = structure.lattice.reciprocal_lattice.matrix
    lengths = np.array([np.linalg.norm((points[b] - points[a]) @ recip) for a, b in pairs])
    counts = np.maximum(3, np.round(max_qpoints * lengths / lengths.sum()).astype(int))
    while counts.sum() > max_qpoints and counts.max() > 3:
        counts[np.argmax(counts)] -= 1
    segments = [[points[a] + (points[b] - points[a]) * t for t in np.linspace(0.0, 1.0, n)]
                for (a, b), n in zip(pairs, counts)]
    return {"segments": segments, "labels": [[_label(a), _label(b)] for a, b in pairs]}


def _label(name: str) -> str:
    for tex, letter in (("\\Gamma", "Γ"), ("\\Sigma", "Σ"), ("\\Lambda", "Λ"), ("\\Delta", "Δ")):
        name = name.replace(tex, letter)
    return name.replace("_", "")


def _band_structure(ph, prim) -> Optional[dict]:
    """Frequencies [THz] along :func:`band_path` (negative = imaginary), flat over q-points with the
    segments' index ranges and end labels; None without a path."""
    from pymatgen.io.ase import AseAtomsAdaptor

    n_bands = 3 * len(prim)
    most = max(20, min(PHONON_BAND_QPOINTS, PHONON_BAND_VALUES // n_bands))
    path = band_path(AseAtomsAdaptor.get_structure(prim), most)
    if path is None:
        return None
    ph.run_band_structure([np.array(seg) for seg in path["segments"]], with_eigenvectors=False)
    bands = ph.get_band_structure_dict()
    distances, frequencies, ranges, start = [], [], [], 0
    for d, f in zip(bands["distances"], bands["frequencies"]):
        distances += [round(float(v), 4) for v in d]
        frequencies += np.round(np.asarray(f, float), 3).tolist()
        ranges.append([start, start + len(d)])
        start += len(d)
    return {"distances": distances, "frequencies_THz": frequencies, "segments": ranges, "labels": path["labels"]}


def _dos(ph, bins: int = PHONON_DOS_BINS, mesh=PHONON_DOS_MESH) -> dict:
    """Total density of states [states/THz per cell] on ``bins`` frequencies [THz] (a Γ-centred mesh)."""
    ph.run_mesh(list(mesh), is_gamma_center=True)
    freqs = ph.get_mesh_dict()["frequencies"]
    low, high = float(np.min(freqs)) - 0.5, float(np.max(freqs)) + 0.5
    ph.run_total_dos(freq_min=low, freq_max=high, freq_pitch=(high - low) / (bins - 1))
    dos = ph.get_total_dos_dict()
    return {"frequencies_THz": [round(float(v), 3) for v in dos["frequency_points"]][:bins],
            "dos": [round(float(v), 4) for v in dos["total_dos"]][:bins], "mesh": list(mesh)}


def _primitive(atoms):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(AseAtomsAdaptor.get_structure(atoms).get_primitive_structure())


def _forces(cell, calculator, quiet) -> np.ndarray:
    from ase import Atoms

    atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
    atoms.calc = calculator
    with quiet():
        return np.array(atoms.get_forces())


def _phonon_summary(qpoints, frequencies, reps, displacements: int, mesh) -> dict:
    """The lowest frequency [THz] and the q-points with imaginary modes (Γ's acoustic modes left out)."""
    lowest, unstable = math.inf, []
    for q, freqs in zip(np.asarray(qpoints), np.asarray(frequencies)):
        freqs = np.sort(freqs)[3:] if np.allclose(q, 0.0) else np.sort(freqs)
        if not freqs.size:  # one atom per cell: Γ has only the acoustic modes
            continue
        lowest = min(lowest, float(freqs[0]))
        if freqs[0] < -IMAGINARY_THZ:
            unstable.append({"q": [round(float(v), 4) for v in q], "min_frequency_THz": round(float(freqs[0]), 3)})
    return {"min_frequency_THz": round(lowest, 3), "imaginary": bool(unstable), "qpoints": unstable,
            "supercell": list(reps), "displacements": displacements, "mesh": list(mesh),
            "imaginary_threshold_THz": IMAGINARY_THZ}


# --- elastic tensor -------------------------------------------------------------------------------

def _voigt_strain(component: int, value: float) -> np.ndarray:
    """The symmetric strain tensor of Voigt ``component`` (xx, yy, zz, yz, xz, xy; engineering shear)."""
    i, j = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)][component]
    eps = np.zeros((3, 3))
    eps[i, j] = eps[j, i] = value if i == j else value / 2
    return eps


def elastic(atoms, calculator, fmax_eV_A: float = 0.05, steps: int = INNER_STEPS,
            strains=ELASTIC_STRAINS, progress: Progress = no_progress) -> dict:
    """Elastic tensor ``C_GPa`` (Voigt 6×6) of ``atoms`` (relaxed): the slope of each stress component
    against each applied strain, positions relaxed (``steps``); Voigt–Reuss–Hill bulk and shear
    moduli [GPa] and ``mechanically_stable`` (all eigenvalues of C positive)."""
    from pymatgen.analysis.elasticity import ElasticTensor

    from .relax import relax_atoms

    cell = np.array(atoms.get_cell())
    c = np.zeros((6, 6))
    for comp in range(6):
        stresses = []
        for k, value in enumerate(strains):
            strained = atoms.copy()
            strained.set_cell(cell @ (np.eye(3) + _voigt_strain(comp, value)), scale_atoms=True)
            step = comp * len(strains) + k
            res = relax_atoms(strained, calculator, fmax_eV_A, steps, relax_cell=False,
                              progress=_scaled(progress, step / (6 * len(strains)), (step + 1) / (6 * len(strains)),
                                               f"strain {comp + 1}/6: "))
            stresses.append(res.stress_GPa)
        c[:, comp] = np.polyfit(np.asarray(strains), np.asarray(stresses), 1)[0]
    c = (c + c.T) / 2
    tensor = ElasticTensor.from_voigt(c)
    return {"C_GPa": np.round(c, 1).tolist(), "bulk_modulus_vrh_GPa": round(float(tensor.k_vrh), 2),
            "shear_modulus_vrh_GPa": round(float(tensor.g_vrh), 2),
            "mechanically_stable": bool(np.all(np.linalg.eigvalsh(c) > 0)), "strains": list(strains)}


# --- all together ---------------------------------------------------------------------------------

def _empty(level: str, model: str) -> dict:
    return {"level": level, "model": model, "e_above_hull_meV": None, "decomposition": None, "hull": None,
            "bulk_modulus_GPa": None, "eos_residual": None, "eos": None, "phonon": None, "elastic": None,
            "timings_s": {}, "warnings": []}


def compute_properties(structure, level: str = "fast", model: str = "auto", energy_per_atom_eV: Optional[float] = None,
                       fmax_eV_A: float = 0.05, hull_max_steps: int = HULL_MAX_STEPS, library=None,
                       checkpoint: Optional[str] = None, device: str = "cpu",
                       progress: Progress = no_progress) -> Optional[dict]:
    """The ``result.json`` ``properties`` block of ``structure`` (relaxed with ``model``) at ``level``
    (``none``: None; ``fast``: hull and bulk modulus; ``all``: also phonons and elastic tensor).

    ``energy_per_atom_eV``: the structure's energy from the main relaxation [eV/atom] (None:
    evaluated here). ``fmax_eV_A``: the main relaxation's force limit, used for the hull phases.
    ``library``: the template library (None: the default one). A property that fails is null with a
    warning; the others still run.
    """
    from .backends import get_calculator, model_key, resolve_model
    from .references import elemental_references
    from .relax import evaluate

    if level not in LEVELS:
        raise AutomatError(f"unknown properties level {level!r}: use {', '.join(LEVELS)}")
    if level == "none":
        return None
    name, _ = resolve_model(model, checkpoint)
    checkpoint = checkpoint if name == "mattersim" else None
    progress(0.0, f"loading {name}")
    calculator = get_calculator(name, checkpoint, device)
    atoms = to_atoms(structure)
    if energy_per_atom_eV is None:
        energy_per_atom_eV = evaluate(atoms, calculator).energy_per_atom_eV
    if library is None:
        from ..templates.library import load_library

        library = load_library()
    from pymatgen.io.ase import AseAtomsAdaptor

    pmg = AseAtomsAdaptor.get_structure(atoms)
    tasks = {
        "hull": lambda p: hull_energy(pmg, energy_per_atom_eV, calculator, model_key(name, checkpoint), library,
                                      fmax_eV_A, hull_max_steps,
                                      lambda els: elemental_references(els, name, checkpoint, device=device), p),
        "eos": lambda p: bulk_modulus(atoms, calculator, fmax_eV_A, progress=p),
        "phonon": lambda p: {"phonon": phonons(atoms, calculator, progress=p)},
        "elastic": lambda p: {"elastic": elastic(atoms, calculator, fmax_eV_A, progress=p)},
    }
    names = ["hull", "eos"] + (["phonon", "elastic"] if level == "all" else [])
    total, done, out = sum(_COST[n] for n in names), 0.0, _empty(level, name)
    for task in names:
        t0 = time.perf_counter()
        try:
            found = tasks[task](_scaled(progress, done / total, (done + _COST[task]) / total, f"{task}: "))
        except AutomatError as exc:
            out["warnings"].append(f"{task} not computed: {exc}")
        else:
            out["warnings"] += found.pop("warnings", [])
            out.update(found)
        out["timings_s"][task] = round(time.perf_counter() - t0, 2)
        done += _COST[task]
    progress(1.0, "properties done")
    return out
