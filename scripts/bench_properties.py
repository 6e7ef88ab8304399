"""Time each physical property (``energy.properties``) with CHGNet for a few structures.

    AUTOMAT_CACHE_DIR=/tmp/props-cache OMP_NUM_THREADS=2 python scripts/bench_properties.py [--level all]

Each structure is relaxed as the energy stage does (fmax 0.05 eV/Å, 200 steps), then its
properties are computed (with a fresh ``AUTOMAT_CACHE_DIR`` the hull phases of its system are
relaxed into an empty cache) and the hull once more from the cache. Prints one JSON line each.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# Library entries: SrTiO3 Pm-3m (5 atoms), CaTiO3 Pnma (20 atoms).
STRUCTURES = {"SrTiO3 Pm-3m": ("SrTiO3", "Pm-3m"), "CaTiO3 Pnma": ("CaTiO3", "Pnma")}


def _entry(library, formula: str, spacegroup: str) -> int:
    return next(i for i, e in enumerate(library.entries)
                if e["reduced_formula"] == formula and e["spacegroup_symbol"] == spacegroup and not e["is_2d"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", default="all", choices=["fast", "all"])
    args = parser.parse_args()

    from pymatgen.io.ase import AseAtomsAdaptor

    from napari_automat.energy.backends import get_calculator
    from napari_automat.energy.compute import to_atoms
    from napari_automat.energy.properties import compute_properties, hull_energy, hull_path
    from napari_automat.energy.relax import relax_atoms
    from napari_automat.templates.library import load_library

    library, calc = load_library(), get_calculator("chgnet")
    for label, (formula, spacegroup) in STRUCTURES.items():
        t0 = time.perf_counter()
        res = relax_atoms(to_atoms(library.structure(_entry(library, formula, spacegroup))), calc, 0.05, 200)
        relax_s = time.perf_counter() - t0
        structure = AseAtomsAdaptor.get_structure(res.atoms)
        out = compute_properties(structure, args.level, model="chgnet", energy_per_atom_eV=res.energy_per_atom_eV,
                                 library=library)
        t0 = time.perf_counter()
        hull_energy(structure, res.energy_per_atom_eV, calc, "chgnet-0.3.0", library)
        warm_s = time.perf_counter() - t0
        cache = hull_path("chgnet-0.3.0", out["hull"]["chemsys"])
        print(json.dumps({
            "structure": label, "atoms": len(res.atoms), "relax_s": round(relax_s, 1),
            "threads": os.environ.get("OMP_NUM_THREADS"), "load_average_1min": round(os.getloadavg()[0], 2),
            "seconds": out["timings_s"], "hull_from_cache_s": round(warm_s, 2), "hull_cache_bytes": cache.stat().st_size,
            **{k: out[k] for k in ("e_above_hull_meV", "decomposition", "hull", "bulk_modulus_GPa", "eos_residual",
                                   "phonon", "warnings")},
            "elastic": {k: v for k, v in (out["elastic"] or {}).items() if k != "C_GPa"}}), flush=True)

if __name__ == "__main__":
    main()
