"""Monolayers the benchmark does not contain, simulated with abTEM (HAADF and ABF, 2e5 e/Å²) and run
through the chain as the benchmark runs it (``pipeline.start`` + the rules planner, no energy),
with and without the element hint. Prints one line per image: structure match, structure type
match, lattice RMSD [Å] and the top template::

    python scripts/monolayer_check.py            # all sheets, about a minute on 2 cores
    python scripts/monolayer_check.py FeSe GaSe  # some of them
"""

from __future__ import annotations

import sys
import time
import warnings

#: Vacuum on each side of a sheet [Å].
VACUUM_A = 7.5


def _mx2(formula: str, kind: str, a: float, thickness: float):
    from ase.build import mx2
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = mx2(formula=formula, kind=kind, a=a, thickness=thickness, vacuum=VACUUM_A)
    atoms.pbc = True
    return AseAtomsAdaptor.get_structure(atoms)


def _sheet(lattice_of, sites):
    """A sheet from ``(element, u, v, height [Å])`` sites in a cell from ``lattice_of(c)``."""
    from pymatgen.core import Structure

    low = min(s[3] for s in sites)
    c = max(s[3] for s in sites) - low + 2 * VACUUM_A
    return Structure(lattice_of(c), [s[0] for s in sites], [[u, v, (z - low + VACUUM_A) / c] for _, u, v, z in sites])


def sheets() -> dict:
    from pymatgen.core import Lattice

    def hexagonal(a):
        return lambda c: Lattice.hexagonal(a, c)

    return {
        "NbSe2-2H": lambda: _mx2("NbSe2", "2H", 3.45, 3.36),
        "SnSe2-1T": lambda: _mx2("SnSe2", "1T", 3.81, 3.07),
        "VSe2-1T": lambda: _mx2("VSe2", "1T", 3.35, 3.10),
        "TaS2-1T": lambda: _mx2("TaS2", "1T", 3.36, 2.95),
        "PbI2-1T": lambda: _mx2("PbI2", "1T", 4.56, 3.70),
        "GaSe": lambda: _sheet(hexagonal(3.75), [("Se", 2 / 3, 1 / 3, 0.0), ("Ga", 1 / 3, 2 / 3, 1.2),
                                                 ("Ga", 1 / 3, 2 / 3, 3.6), ("Se", 2 / 3, 1 / 3, 4.8)]),
        "InSe": lambda: _sheet(hexagonal(4.02), [("Se", 2 / 3, 1 / 3, 0.0), ("In", 1 / 3, 2 / 3, 1.37),
                                                 ("In", 1 / 3, 2 / 3, 4.15), ("Se", 2 / 3, 1 / 3, 5.52)]),
        "FeSe": lambda: _sheet(lambda c: Lattice.tetragonal(3.77, c),
                               [("Se", 0, 0.5, 0.0), ("Fe", 0, 0, 1.47), ("Fe", 0.5, 0.5, 1.47), ("Se", 0.5, 0, 2.94)]),
    }


def main(names) -> None:
    from napari_automat.agent.planner import plan
    from napari_automat.bench import metrics as M
    from napari_automat.config import PipelineConfig
    from napari_automat.pipeline import start
    from napari_automat.simulate.abtem_sim import simulate_stem

    warnings.filterwarnings("ignore")
    for name, make in sheets().items():
        if names and name not in names:
            continue
        truth = make()
        for detector in ("HAADF", "ABF"):
            image = simulate_stem(truth, (0, 0, 1), thickness_A=truth.lattice.c, detector=detector,
                                  pixel_size_A=0.1, field_of_view_A=30, dose_e_per_A2=2e5, seed=1)
            for hint in (True, False):
                elements = tuple(sorted(el.symbol for el in truth.composition)) if hint else ()
                start_s = time.perf_counter()
                try:
                    result = start(image, PipelineConfig(elements=elements, energy_model="none"))
                    plan(result, lambda *args: None)
                    pred, top = result.reconstruction.structure, result.hits[0]
                    match, kind = M.structures_match(pred, truth), M.structure_types_match(pred, truth)
                    rmsd = M.lattice_rmsd_A(pred, truth)
                    text = f"{top.formula} {top.template_id} ({top.score:.2f})"
                except Exception as exc:  # a failed image is a result here
                    match = kind = False
                    rmsd, text = None, f"{type(exc).__name__}: {exc}"
                rmsd_text = "-" if rmsd is None else f"{rmsd:.3f}"
                print(f"{name:9s} {detector:5s} hint={'yes' if hint else 'no ':3s} match={int(match)} type={int(kind)} "
                      f"rmsd={rmsd_text:6s} {text} [{time.perf_counter() - start_s:.1f} s]", flush=True)


if __name__ == "__main__":
    main(set(sys.argv[1:]))
