"""Elemental reference energies [eV/atom] for formation energies, computed with the same potential.

Each element gets offline-built ground-state candidates; each is relaxed with the model and the
lowest energy per atom is kept:

* solids from ASE's reference states (``ase.data.reference_states`` through ``ase.build.bulk``:
  fcc, bcc, hcp, diamond, rhombohedral, bct, ...), cell relaxed with symmetry kept;
* hand-built crystals where ASE's entry lacks its atomic basis or is too crude: alpha-B, black P,
  alpha-Ga, trigonal Se and Te, alpha-Mn, alpha-U (space group + Wyckoff positions from the
  literature), plus graphite next to diamond for C and alpha- next to beta-Sn (all candidates are
  relaxed, the lowest wins, so a crude ASE entry next to a better one does no harm);
* molecules in a periodic ``MOLECULE_BOX_A`` cube, positions relaxed only: H2, N2, O2, F2, Cl2,
  Br2, I2, At2 and the S8 crown ring; fcc solids for the noble gases; simple proxies for Pm
  (hcp), Fr and Ra (bcc), Pa (bct), Pu (fcc delta phase).

Known limitation: Materials Project does not use the O2 molecule as its O reference but a value
fitted to oxide formation enthalpies (and similar fits for N, F, Cl, H), so formation energies of
oxides from MatterSim (trained on uncorrected PBE energies) are off by up to ~0.7 eV per O atom
from MP's; CHGNet is trained on MP2020-corrected energies, which largely absorbs this.

Results are cached per model in ``<cache>/energy_references/<model-key>.json``; ``<cache>`` is
``$AUTOMAT_CACHE_DIR`` or the user cache dir of ``napari-automat``. Only requested elements are
computed. ``automat references build --energy-model chgnet`` fills the whole table.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from ..model import AutomatError, Progress, no_progress

#: Bump when the recipes change: older cache files are then ignored.
RECIPE_VERSION = 1
MAX_Z = 94
REFERENCE_FMAX_EV_A = 0.02
REFERENCE_MAX_STEPS = 300
MOLECULE_BOX_A = 12.0

#: Bond lengths [Å] of the diatomic references.
_DIATOMIC_BOND_A = {"H": 0.74, "N": 1.10, "O": 1.21, "F": 1.42, "Cl": 1.99, "Br": 2.28, "I": 2.67, "At": 2.9}
#: Crystals from space group, cell parameters (a, b, c [Å], alpha, beta, gamma [°]) and Wyckoff sites.
_CRYSTALS = {
    "B": [("alpha-B", 166, (4.908, 4.908, 12.567, 90, 90, 120), [(0.1187, -0.1187, 0.8911), (0.1965, -0.1965, 0.0243)])],
    "P": [("black P", 64, (3.314, 10.478, 4.376, 90, 90, 90), [(0, 0.10168, 0.08056)])],
    "Ga": [("alpha-Ga", 64, (4.5192, 7.6586, 4.5258, 90, 90, 90), [(0, 0.1549, 0.0810)])],
    "Se": [("trigonal Se", 152, (4.366, 4.366, 4.954, 90, 90, 120), [(0.2254, 0, 1 / 3)])],
    "Te": [("trigonal Te", 152, (4.457, 4.457, 5.929, 90, 90, 120), [(0.2636, 0, 1 / 3)])],
    "Mn": [("alpha-Mn", 217, (8.911, 8.911, 8.911, 90, 90, 90),
            [(0, 0, 0), (0.3179, 0.3179, 0.3179), (0.3571, 0.3571, 0.0347), (0.0896, 0.0896, 0.2819)])],
    "U": [("alpha-U", 63, (2.854, 5.870, 4.955, 90, 90, 90), [(0, 0.1025, 0.25)])],
    "C": [("graphite", 194, (2.464, 2.464, 6.711, 90, 90, 120), [(0, 0, 0.25), (1 / 3, 2 / 3, 0.25)])],
}
#: ``ase.build.bulk`` arguments where ASE has no usable reference state, or as extra candidates.
_BULK = {
    "He": [("fcc", dict(a=4.2))], "Rn": [("fcc", dict(a=6.4))], "Pm": [("hcp", dict(a=3.65, c=5.88))],
    "Fr": [("bcc", dict(a=6.2))], "Ra": [("bcc", dict(a=5.15))], "Pa": [("bct", dict(a=3.92, c=3.23))],
    "Pu": [("fcc", dict(a=4.64))], "Sn": [("diamond", dict(a=6.49))],
}


@dataclass
class Candidate:
    """One reference structure: ``atoms`` (ASE), a label, and whether its cell relaxes."""

    label: str
    atoms: Any
    relax_cell: bool


def _s8_ring():
    """The S8 crown (D4d): alternate atoms 0.99 Å apart in height on a 2.35 Å circle."""
    angles = np.arange(8) * np.pi / 4
    return np.column_stack([2.345 * np.cos(angles), 2.345 * np.sin(angles), 0.495 * (-1.0) ** np.arange(8)])


def _molecule(symbol: str, positions):
    from ase import Atoms

    atoms = Atoms([symbol] * len(positions), positions=positions, cell=np.eye(3) * MOLECULE_BOX_A, pbc=True)
    atoms.center()
    return atoms


def reference_candidates(symbol: str) -> list[Candidate]:
    """Unrelaxed ground-state candidates for element ``symbol`` (see the module docstring)."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states
    from ase.spacegroup import crystal

    z = atomic_numbers.get(symbol, 0)
    if not 1 <= z <= MAX_Z:
        raise AutomatError(f"no elemental reference for {symbol!r}: the potentials cover H to Pu (Z <= {MAX_Z})")
    if symbol in _DIATOMIC_BOND_A:
        return [Candidate(f"{symbol}2 molecule in {MOLECULE_BOX_A:g} Å box",
                          _molecule(symbol, [(0, 0, 0), (0, 0, _DIATOMIC_BOND_A[symbol])]), False)]
    if symbol == "S":
        return [Candidate(f"S8 ring in {MOLECULE_BOX_A:g} Å box", _molecule("S", _s8_ring()), False)]
    out = [Candidate(label, crystal([symbol] * len(sites), sites, spacegroup=sg, cellpar=cellpar,
                                    primitive_cell=True), True)
           for label, sg, cellpar, sites in _CRYSTALS.get(symbol, [])]
    out += [Candidate(structure, bulk(symbol, structure, **kw), True) for structure, kw in _BULK.get(symbol, [])]
    state = reference_states[z] or {}
    if state.get("symmetry") not in (None, "atom", "diatom"):
        try:
            out.append(Candidate(f"{state['symmetry']} (ASE reference state)", bulk(symbol), True))
        except (ValueError, RuntimeError):
            pass  # an entry without its atomic basis (B, P, Ga, Mn, ...): the candidates above stand in
    if not out:
        raise AutomatError(f"no reference structure recipe for {symbol}")
    return out


def cache_dir() -> Path:
    """Folder of the reference tables: ``$AUTOMAT_CACHE_DIR`` or the user cache dir, ``/energy_references``."""
    root = os.environ.get("AUTOMAT_CACHE_DIR")
    if not root:
        try:
            from platformdirs import user_cache_dir

            root = user_cache_dir("napari-automat")
        except ImportError:
            root = os.path.expanduser("~/.cache/napari-automat")
    return Path(root) / "energy_references"


def cache_path(key: str) -> Path:
    """The cache file of the model with id ``key`` (see ``backends.model_key``)."""
    return cache_dir() / f"{key}-r{RECIPE_VERSION}.json"


def load_table(path: Path, recipe: int = RECIPE_VERSION) -> dict:
    """A cached JSON table, or ``{}`` when missing, unreadable or of another ``recipe`` version."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return table if table.get("recipe") == recipe else {}


def save_table(path: Path, table: dict) -> None:
    """Write ``table`` to ``path`` atomically (safe against concurrent writers and readers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def compute_reference(symbol: str, calculator, progress: Progress = no_progress) -> dict:
    """Relax every candidate of ``symbol``; the lowest one as a JSON-ready dict."""
    from .relax import relax_atoms

    candidates = reference_candidates(symbol)
    best = None
    for i, cand in enumerate(candidates):
        def sub(fraction, message, i=i, label=cand.label):
            progress((i + fraction) / len(candidates), f"{symbol} reference ({label}): {message}")

        res = relax_atoms(cand.atoms, calculator, REFERENCE_FMAX_EV_A, REFERENCE_MAX_STEPS,
                          relax_cell=cand.relax_cell, keep_symmetry=True, progress=sub)
        entry = {"energy_per_atom_eV": res.energy_per_atom_eV, "structure": cand.label, "n_atoms": len(res.atoms),
                 "converged": res.converged, "steps": res.steps, "max_force_eV_A": res.max_force_eV_A,
                 "volume_per_atom_A3": float(res.atoms.get_volume() / len(res.atoms))}
        if best is None or entry["energy_per_atom_eV"] < best["energy_per_atom_eV"]:
            best = entry
    return best


def elemental_references(elements: Iterable[str], model: str, checkpoint: Optional[str] = None,
                         progress: Progress = no_progress, device: str = "cpu") -> dict[str, float]:
    """Energy per atom [eV] of each element's ground state with ``model`` (computed once, then cached).

    ``model`` is ``mattersim``, ``chgnet`` or ``auto``; ``checkpoint`` is MatterSim's (ignored for CHGNet).
    """
    from .backends import get_calculator, model_key, resolve_model

    name, _ = resolve_model(model, checkpoint)
    checkpoint = checkpoint if name == "mattersim" else None
    symbols = sorted(set(elements))
    for symbol in symbols:
        reference_candidates(symbol)  # fail fast on unknown elements, before loading a model
    calculator = get_calculator(name, checkpoint, device)
    key = model_key(name, checkpoint)
    path = cache_path(key)
    table = load_table(path) or {"model": name, "model_key": key, "recipe": RECIPE_VERSION, "elements": {}}
    missing = [s for s in symbols if s not in table["elements"]]
    for i, symbol in enumerate(missing):
        def sub(fraction, message, i=i):
            progress((i + fraction) / len(missing), message)

        entry = compute_reference(symbol, calculator, sub)
        table = load_table(path) or table  # another process may have added elements meanwhile
        table["elements"][symbol] = entry
        save_table(path, table)
    progress(1.0, "elemental references ready")
    return {s: float(table["elements"][s]["energy_per_atom_eV"]) for s in symbols}


def build_reference_cache(model: str, elements: Optional[Iterable[str]] = None, progress: Progress = no_progress,
                          checkpoint: Optional[str] = None, device: str = "cpu") -> dict[str, float]:
    """Compute (or complete) the cached table of ``model`` for ``elements`` (default: H to Pu).

    Returns element -> energy per atom [eV]; the file is ``cache_path(model_key)``.
    """
    from ase.data import chemical_symbols

    elements = list(elements) if elements else chemical_symbols[1:MAX_Z + 1]
    return elemental_references(elements, model, checkpoint, progress, device)


def formation_energy_per_atom(structure, energy_per_atom: float, refs: dict[str, float]) -> float:
    """Formation energy [eV/atom]: ``energy_per_atom`` minus the composition-weighted references.

    ``structure`` is a pymatgen Structure or ASE Atoms (ordered); ``refs`` maps element -> eV/atom.
    """
    symbols = _symbols(structure)
    if not symbols:
        raise AutomatError("the structure has no atoms")
    missing = sorted(set(symbols) - set(refs))
    if missing:
        raise AutomatError(f"no elemental reference energy for {', '.join(missing)}")
    return float(energy_per_atom - sum(refs[s] for s in symbols) / len(symbols))


def _symbols(structure) -> list[str]:
    if hasattr(structure, "get_chemical_symbols"):
        return list(structure.get_chemical_symbols())
    if not structure.is_ordered:
        raise AutomatError("the structure has partially occupied sites: order it before computing energies")
    return [site.specie.symbol for site in structure]
