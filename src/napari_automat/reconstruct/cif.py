"""The reconstructed structure as the ``structure`` block of result.json (CIF text included)."""

from __future__ import annotations


def structure_summary(structure, symprec: float = 0.1) -> dict:
    """Formula, space group (at ``symprec`` [Å]), cell parameters [Å, degrees] and the
    symmetrised CIF text of a pymatgen Structure."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=symprec)
    a, b, c, alpha, beta, gamma = (float(x) for x in structure.lattice.parameters)
    return {
        "formula": structure.composition.formula.replace(" ", ""),
        "reduced_formula": structure.composition.reduced_formula,
        "spacegroup_symbol": sga.get_space_group_symbol(),
        "spacegroup_number": int(sga.get_space_group_number()),
        "a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma,
        "cif": str(CifWriter(structure, symprec=symprec)),
    }
