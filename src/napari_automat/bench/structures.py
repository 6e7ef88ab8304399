"""Benchmark structures: real compounds built from the template library's prototypes, ASE elemental
reference states and ASE monolayers, with the zone axes along which each is resolvable.

Decorated prototypes take the atom positions of a library entry (an AFLOW/pymatgen prototype),
substitute its species and set experimental lattice constants [Å] (room-temperature values;
cubic settings for pseudo-cubic perovskites). A compound whose reduced formula is absent from the
library while its structure type is there belongs to the generalisation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Vacuum on each side of a monolayer [Å].
VACUUM_A = 7.5
#: Visible projected columns must be at least this far apart [Å].
MIN_SPACING_A = 1.0
#: The projected cell must be no longer than this [Å].
MAX_CELL_A = 12.0
#: Columns fainter than this fraction of the heaviest (Σ Z^1.7) count as invisible in HAADF.
VISIBLE_FRACTION = 0.1

CUBIC_AXES = ((0, 0, 1), (0, 1, 1), (1, 1, 1))
HEX_AXES = ((0, 0, 1), (1, 0, 0), (1, 1, 0))
TETRA_AXES = ((0, 0, 1), (1, 0, 0), (1, 1, 0))

#: Decorated prototypes: name -> (library reduced formula, space group, prototype species in
#: substitution order, zone axes, [(new species..., a, c or None)]).
PROTOTYPES = {
    "rocksalt": ("NaCl", 225, ("Na", "Cl"), CUBIC_AXES, [
        ("Na", "Cl", 5.64), ("Mg", "O", 4.21), ("K", "Cl", 6.29), ("Ca", "O", 4.81), ("Ni", "O", 4.18),
        ("Li", "F", 4.03), ("Pb", "S", 5.94), ("Pb", "Te", 6.46), ("Ti", "N", 4.24), ("Ti", "C", 4.33),
        ("Zr", "C", 4.70), ("Nb", "C", 4.47), ("Ba", "O", 5.52), ("Sr", "O", 5.16), ("Co", "O", 4.26),
        ("Mn", "O", 4.44), ("Ag", "Cl", 5.55), ("K", "Br", 6.60), ("Hf", "C", 4.64), ("V", "N", 4.14),
        ("Sc", "N", 4.50), ("Eu", "O", 5.14), ("Cd", "O", 4.70), ("Pb", "Se", 6.12), ("Sn", "Te", 6.32)]),
    "zincblende": ("ZnS", 216, ("Zn", "S"), CUBIC_AXES[:2], [
        ("Zn", "S", 5.41), ("Ga", "As", 5.65), ("In", "P", 5.87), ("Ga", "P", 5.45), ("Al", "As", 5.66),
        ("In", "As", 6.06), ("Ga", "Sb", 6.10), ("In", "Sb", 6.48), ("Zn", "Se", 5.67), ("Zn", "Te", 6.10),
        ("Cd", "Te", 6.48), ("Si", "C", 4.36), ("B", "N", 3.62), ("Cu", "Cl", 5.41), ("Al", "P", 5.46),
        ("Cd", "Se", 6.05), ("Hg", "Te", 6.46)]),
    "wurtzite": ("ZnS", 186, ("Zn", "S"), HEX_AXES, [
        ("Zn", "O", 3.25, 5.21), ("Ga", "N", 3.19, 5.19), ("Al", "N", 3.11, 4.98), ("Cd", "S", 4.14, 6.71),
        ("Cd", "Se", 4.30, 7.01), ("In", "N", 3.54, 5.70), ("Be", "O", 2.70, 4.38), ("Zn", "S", 3.82, 6.26),
        ("Ag", "I", 4.59, 7.51)]),
    "fluorite": ("CaF2", 225, ("Ca", "F"), CUBIC_AXES[:2], [
        ("Ca", "F", 5.46), ("Ce", "O", 5.41), ("Zr", "O", 5.07), ("U", "O", 5.47), ("Th", "O", 5.60),
        ("Sr", "F", 5.80), ("Ba", "F", 6.20), ("Pb", "F", 5.94), ("Hf", "O", 5.08), ("Cd", "F", 5.39)]),
    "antifluorite": ("Li2O", 225, ("Li", "O"), CUBIC_AXES[:2], [
        ("Li", "O", 4.61), ("Na", "O", 5.55), ("K", "O", 6.44), ("Mg", "Si", 6.35), ("Li", "S", 5.71)]),
    "rutile": ("TiO2", 136, ("Ti", "O"), TETRA_AXES, [
        ("Ti", "O", 4.594, 2.959), ("Sn", "O", 4.737, 3.186), ("Ge", "O", 4.396, 2.863), ("Ru", "O", 4.492, 3.106),
        ("Ir", "O", 4.505, 3.159), ("Mn", "O", 4.398, 2.873), ("V", "O", 4.554, 2.856), ("Pb", "O", 4.946, 3.379),
        ("Cr", "O", 4.421, 2.917), ("Mg", "F", 4.623, 3.052), ("Zn", "F", 4.70, 3.13)]),
    "CsCl": ("CsCl", 221, ("Cs", "Cl"), CUBIC_AXES, [
        ("Cs", "Cl", 4.12), ("Cs", "Br", 4.29), ("Cs", "I", 4.57), ("Ni", "Al", 2.88), ("Cu", "Zn", 2.95),
        ("Fe", "Al", 2.91), ("Tl", "Cl", 3.84), ("Ag", "Mg", 3.28), ("Co", "Al", 2.86)]),
    "L1_2": ("Cu3Au", 221, ("Cu", "Au"), CUBIC_AXES, [
        ("Cu", "Au", 3.75), ("Ni", "Al", 3.57), ("Ni", "Fe", 3.55), ("Pt", "Sn", 4.00), ("Ni", "Ga", 3.58),
        ("Pd", "Fe", 3.85)]),
    "NiAs": ("NiAs", 194, ("Ni", "As"), HEX_AXES, [
        ("Ni", "As", 3.62, 5.03), ("Ni", "Sb", 3.94, 5.14), ("Cr", "Sb", 4.12, 5.47), ("Mn", "Te", 4.14, 6.71),
        ("Co", "Sb", 3.87, 5.19)]),
    "CdI2": ("CdI2", 164, ("Cd", "I"), HEX_AXES, [
        ("Cd", "I", 4.24, 6.84), ("Ti", "S", 3.41, 5.70), ("Sn", "S", 3.65, 5.90), ("Zr", "S", 3.66, 5.83),
        ("Hf", "S", 3.63, 5.84), ("Pt", "Se", 3.73, 5.08), ("Ti", "Se", 3.54, 6.01), ("Pb", "I", 4.56, 6.98)]),
    "AlB2": ("AlB2", 191, ("Al", "B"), HEX_AXES, [
        ("Al", "B", 3.01, 3.26), ("Mg", "B", 3.086, 3.524), ("Ti", "B", 3.03, 3.23), ("Zr", "B", 3.17, 3.53),
        ("Hf", "B", 3.14, 3.47), ("Cr", "B", 2.97, 3.07)]),
    "pyrite": ("FeS2", 205, ("Fe", "S"), CUBIC_AXES[:2], [
        ("Fe", "S", 5.42), ("Ni", "S", 5.69), ("Co", "S", 5.54), ("Mn", "S", 6.10), ("Ru", "S", 5.61),
        ("Pt", "P", 5.70)]),
    "corundum": ("Al2O3", 167, ("Al", "O"), HEX_AXES, [
        ("Al", "O", 4.76, 12.99), ("Cr", "O", 4.96, 13.59), ("Fe", "O", 5.04, 13.75), ("V", "O", 4.95, 14.00),
        ("Ti", "O", 5.16, 13.61), ("Ga", "O", 4.98, 13.43)]),
    "cuprite": ("Cu2O", 224, ("Cu", "O"), CUBIC_AXES[:2], [("Cu", "O", 4.27), ("Ag", "O", 4.72)]),
    "2H-MX2": ("MoS2", 194, ("Mo", "S"), HEX_AXES, [
        ("Mo", "S", 3.16, 12.29), ("W", "S", 3.15, 12.32), ("Mo", "Se", 3.29, 12.93), ("W", "Se", 3.28, 12.96),
        ("Mo", "Te", 3.52, 13.97), ("Nb", "Se", 3.44, 12.55)]),
    "spinel": ("MgAl2O4", 227, ("Mg", "Al", "O"), CUBIC_AXES[:2], [
        ("Mg", "Al", "O", 8.08), ("Zn", "Fe", "O", 8.44), ("Co", "Fe", "O", 8.39), ("Ni", "Fe", "O", 8.34),
        ("Zn", "Al", "O", 8.09), ("Mn", "Fe", "O", 8.50), ("Mg", "Cr", "O", 8.33), ("Zn", "Cr", "O", 8.33),
        ("Fe", "Cr", "O", 8.38), ("Co", "Al", "O", 8.10), ("Mg", "Fe", "O", 8.38), ("Ni", "Al", "O", 8.05),
        ("Fe", "Fe", "O", 8.40), ("Co", "Co", "O", 8.08)]),
    "perovskite": ("SrTiO3", 221, ("Sr", "Ti", "O"), CUBIC_AXES, [
        ("Sr", "Ti", "O", 3.905), ("Ba", "Ti", "O", 4.00), ("K", "Nb", "O", 4.02), ("La", "Al", "O", 3.79),
        ("Sr", "Ru", "O", 3.93), ("K", "Ta", "O", 3.99), ("Ba", "Zr", "O", 4.19), ("Sr", "Zr", "O", 4.10),
        ("Pb", "Ti", "O", 3.97), ("Na", "Ta", "O", 3.93), ("Ca", "Ti", "O", 3.84), ("Ba", "Sn", "O", 4.12),
        ("Sr", "V", "O", 3.84), ("La", "Ni", "O", 3.84), ("Eu", "Ti", "O", 3.90), ("K", "Mg", "F", 3.99),
        ("Cs", "Pb", "Br", 5.87), ("Cs", "Pb", "Cl", 5.61), ("K", "Zn", "F", 4.05), ("Sr", "Hf", "O", 4.07),
        ("La", "Cr", "O", 3.88), ("La", "Fe", "O", 3.93), ("Ba", "Hf", "O", 4.17), ("Sr", "Sn", "O", 4.03),
        ("La", "Mn", "O", 3.95), ("K", "Ni", "F", 4.01)]),
    "Ruddlesden-Popper": ("La2CuO4", 139, ("La", "Cu", "O"), TETRA_AXES[:2], [
        ("La", "Cu", "O", 3.78, 13.2), ("Sr", "Ti", "O", 3.88, 12.60), ("Sr", "Ru", "O", 3.87, 12.74),
        ("La", "Ni", "O", 3.86, 12.65), ("Ca", "Mn", "O", 3.67, 12.0), ("Sr", "Ir", "O", 3.88, 12.9),
        ("Ba", "Sn", "O", 4.14, 13.3)]),
    "chalcopyrite": ("FeCuS2", 122, ("Cu", "Fe", "S"), TETRA_AXES, [
        ("Cu", "Fe", "S", 5.29, 10.42), ("Cu", "In", "Se", 5.78, 11.62), ("Cu", "Ga", "Se", 5.61, 11.02),
        ("Cu", "In", "S", 5.52, 11.12), ("Ag", "Ga", "S", 5.76, 10.30), ("Cu", "Ga", "S", 5.35, 10.47),
        ("Zn", "Ge", "P", 5.46, 10.71), ("Cd", "Ge", "As", 5.94, 11.22), ("Ag", "In", "Se", 6.10, 11.69)]),
    "Heusler": ("MnAlCu2", 225, ("Cu", "Mn", "Al"), CUBIC_AXES[:2], [
        ("Cu", "Mn", "Al", 5.95), ("Ni", "Mn", "Ga", 5.82), ("Co", "Mn", "Si", 5.65), ("Co", "Fe", "Si", 5.64),
        ("Ni", "Mn", "In", 6.07), ("Cu", "Mn", "Sn", 6.17), ("Co", "Ti", "Sn", 6.07), ("Fe", "V", "Al", 5.76)]),
    # XYZ half-Heuslers (NiTiSn): the late transition metal X on the tetrahedral 4c site (As in MgAgAs).
    "half-Heusler": ("MgAgAs", 216, ("As", "Mg", "Ag"), CUBIC_AXES[:2], [
        ("Ni", "Ti", "Sn", 5.92), ("Ni", "Zr", "Sn", 6.11), ("Ni", "Hf", "Sn", 6.08), ("Fe", "Nb", "Sb", 5.95),
        ("Co", "Ti", "Sb", 5.88), ("Co", "Zr", "Sb", 6.07), ("Ni", "Mn", "Sb", 5.92)]),
    "MAX": ("AlCr2C", 194, ("Cr", "Al", "C"), HEX_AXES, [
        ("Cr", "Al", "C", 2.86, 12.82), ("Ti", "Al", "C", 3.04, 13.60), ("V", "Al", "C", 2.91, 13.11),
        ("Nb", "Al", "C", 3.11, 13.89), ("Ti", "Sn", "C", 3.16, 13.68), ("Ti", "Al", "N", 2.99, 13.61),
        ("Ti", "Ge", "C", 3.08, 12.93), ("Zr", "Sn", "C", 3.36, 14.57)]),
    "ilmenite": ("TiFeO3", 148, ("Ti", "Fe", "O"), HEX_AXES, [
        ("Ti", "Fe", "O", 5.09, 14.09), ("Ti", "Mg", "O", 5.05, 13.90), ("Ti", "Ni", "O", 5.03, 13.79),
        ("Ti", "Mn", "O", 5.14, 14.28), ("Ti", "Co", "O", 5.07, 13.92), ("Ti", "Zn", "O", 5.08, 13.93)]),
    "LiNbO3": ("LiNbO3", 161, ("Li", "Nb", "O"), HEX_AXES, [
        ("Li", "Nb", "O", 5.15, 13.86), ("Li", "Ta", "O", 5.15, 13.78)]),
}

#: Elements in their ASE reference state (fcc, bcc, hcp, diamond), by structure type.
ELEMENTS = {
    "fcc": ("Cu", "Ag", "Au", "Al", "Ni", "Pd", "Pt", "Ir", "Rh", "Pb"),
    "bcc": ("Fe", "W", "Mo", "Nb", "Ta", "Cr", "V"),
    "hcp": ("Mg", "Ti", "Zr", "Co", "Zn", "Ru", "Re", "Hf", "Os", "Sc", "Y"),
    "diamond": ("Si", "Ge", "C"),
}
ELEMENT_AXES = {"fcc": CUBIC_AXES, "bcc": CUBIC_AXES, "diamond": CUBIC_AXES[:2], "hcp": HEX_AXES}

#: Monolayers: (formula, ase.build builder, keyword arguments [Å], structure type). Janus MoSSe/WSSe
#: replace the bottom chalcogen layer of the 2H monolayer.
MONOLAYERS = (
    ("C2", "graphene", {"a": 2.46}, "graphene"),
    ("BN", "graphene", {"a": 2.50}, "graphene"),
    ("MoS2", "mx2", {"kind": "2H", "a": 3.16, "thickness": 3.17}, "2H-MX2"),
    ("WS2", "mx2", {"kind": "2H", "a": 3.15, "thickness": 3.14}, "2H-MX2"),
    ("MoSe2", "mx2", {"kind": "2H", "a": 3.29, "thickness": 3.34}, "2H-MX2"),
    ("WSe2", "mx2", {"kind": "2H", "a": 3.28, "thickness": 3.36}, "2H-MX2"),
    ("MoTe2", "mx2", {"kind": "2H", "a": 3.52, "thickness": 3.60}, "2H-MX2"),
    ("NbSe2", "mx2", {"kind": "2H", "a": 3.44, "thickness": 3.36}, "2H-MX2"),
    ("TiS2", "mx2", {"kind": "1T", "a": 3.41, "thickness": 2.85}, "CdI2"),
    ("SnS2", "mx2", {"kind": "1T", "a": 3.65, "thickness": 2.95}, "CdI2"),
    ("ZrS2", "mx2", {"kind": "1T", "a": 3.66, "thickness": 2.92}, "CdI2"),
    ("HfS2", "mx2", {"kind": "1T", "a": 3.63, "thickness": 2.90}, "CdI2"),
    ("PtSe2", "mx2", {"kind": "1T", "a": 3.73, "thickness": 2.58}, "CdI2"),
    ("PtS2", "mx2", {"kind": "1T", "a": 3.54, "thickness": 2.46}, "CdI2"),
    ("CdI2", "mx2", {"kind": "1T", "a": 4.24, "thickness": 3.42}, "CdI2"),
    ("MoSSe", "mx2", {"kind": "2H", "a": 3.22, "thickness": 3.23, "janus": ("Mo", "S", "Se")}, "2H-MX2"),
    ("WSSe", "mx2", {"kind": "2H", "a": 3.22, "thickness": 3.25, "janus": ("W", "S", "Se")}, "2H-MX2"),
)
#: Library entries that stand for each monolayer structure type.
MONOLAYER_TYPES = {"graphene": ("C", 191), "2H-MX2": ("MoS2", 187), "CdI2": ("CdI2", 164)}
TIERS = ("unary", "binary", "ternary")


@dataclass
class Candidate:
    """One benchmark structure with the zone axes along which it is resolvable.

    ``structure``: pymatgen Structure (conventional cell; monolayers: hexagonal cell with vacuum
    along c); ``axes``: resolvable zone axes; ``thickness_A``: monolayer thickness (0 for bulk).
    """

    key: str
    tier: str
    formula: str
    elements: list
    structure_type: str
    source: str
    structure: object = field(repr=False)
    axes: list
    is_2d: bool = False
    thickness_A: float = 0.0
    generalisation: bool = False


def tier_of(structure) -> str:
    """``unary``, ``binary`` or ``ternary`` by the number of elements (more than three: ``ternary``)."""
    return TIERS[min(len(structure.composition.elements), 3) - 1]


def resolvable_axes(structure, axes, is_2d: bool = False) -> list:
    """The zone axes along which the visible columns (Σ Z^1.7 >= 10% of the heaviest) are at least
    :data:`MIN_SPACING_A` apart and the projected cell is at most :data:`MAX_CELL_A` long."""
    from ..simulate.geometry import projected_cell

    out = []
    for axis in [(0, 0, 1)] if is_2d else axes:
        cell = projected_cell(structure, axis)
        if np.max(np.linalg.norm(cell.basis_A, axis=1)) > MAX_CELL_A:
            continue
        w = cell.column_weights()
        xy = cell.columns_A[w >= VISIBLE_FRACTION * w.max()]
        shifts = np.array([[i, j] for i in (-1, 0, 1) for j in (-1, 0, 1)]) @ cell.basis_A
        d = np.linalg.norm(xy[:, None, None] - xy[None, :, None] - shifts[None, None], axis=-1)
        d[np.arange(len(xy)), np.arange(len(xy)), 4] = np.inf
        if d.min() >= MIN_SPACING_A:
            out.append(list(axis))
    return out


def library_formulas() -> set:
    """Reduced formulas of the template library's entries."""
    from ..templates import load_library

    library = load_library()
    if "reduced_formulas" not in library.cache:
        library.cache["reduced_formulas"] = {e["reduced_formula"] for e in library.entries}
    return library.cache["reduced_formulas"]


def candidates() -> list[Candidate]:
    """All benchmark structures, every tier (about 230; a few seconds)."""
    from ..templates import load_library

    library = load_library()
    known = {e["reduced_formula"] for e in library.entries}
    types: dict[tuple, int] = {}  # the smallest cell of each formula and space group: 2H, not 6H, wurtzite ZnS
    for i, e in sorted(enumerate(library.entries), key=lambda item: len(item[1]["structure"]["species"])):
        types.setdefault((e["reduced_formula"], e["spacegroup_number"]), i)
    out = list(_elements(known)) + list(_monolayers(known, types)) + list(_decorated(library, types, known))
    return [c for c in out if c.axes]


def _make(key, structure, source, structure_type, axes, known, is_2d=False, thickness_A=0.0) -> Candidate:
    from pymatgen.core import Element

    formula = structure.composition.reduced_formula
    elements = sorted({el.symbol for el in structure.composition.elements}, key=lambda s: Element(s).Z)
    return Candidate(key, tier_of(structure), formula, elements, structure_type, source, structure,
                     resolvable_axes(structure, axes, is_2d), is_2d, thickness_A, formula not in known)


def _elements(known):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    for kind, symbols in ELEMENTS.items():
        for symbol in symbols:
            atoms = bulk(symbol, kind)
            conv = SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(atoms)).get_conventional_standard_structure()
            yield _make(f"{symbol}-{kind}", conv, f"ase.build.bulk {symbol} ({kind}, ASE reference lattice constant)",
                        kind, ELEMENT_AXES[kind], known)


def _monolayers(known, types):
    import ase.build
    from pymatgen.io.ase import AseAtomsAdaptor

    for formula, builder, kwargs, stype in MONOLAYERS:
        kwargs = dict(kwargs)
        janus = kwargs.pop("janus", None)
        name = janus[0] + janus[1] * 2 if janus else formula
        atoms = getattr(ase.build, builder)(formula=name, vacuum=VACUUM_A, **kwargs)
        if janus:  # the lower chalcogen layer becomes the second chalcogen
            z = atoms.positions[:, 2]
            low = (np.array(atoms.get_chemical_symbols()) == janus[1]) & (z < z.mean())
            atoms.symbols[np.flatnonzero(low)] = janus[2]
        atoms.pbc = True
        if types.get(MONOLAYER_TYPES[stype]) is None:
            continue
        z = atoms.positions[:, 2]
        yield _make(f"{formula}-2d", AseAtomsAdaptor.get_structure(atoms),
                    f"ase.build.{builder} {formula} monolayer ({stype} type)", stype, [(0, 0, 1)], known,
                    is_2d=True, thickness_A=float(z.max() - z.min()))


def _decorated(library, types, known):
    from pymatgen.core import Lattice, Structure

    for stype, (proto_formula, spg, proto_species, axes, compounds) in PROTOTYPES.items():
        index = types.get((proto_formula, spg))
        if index is None:
            continue
        proto = library.structure(index)
        src = library.entries[index]["id"]
        for row in compounds:
            new = row[:len(proto_species)]
            a, c = (list(row[len(proto_species):]) + [None])[:2]
            mapping = dict(zip(proto_species, new))
            a0, b0, c0 = proto.lattice.abc
            lat = Lattice.from_parameters(a, a * b0 / a0, c if c is not None else c0 * a / a0, *proto.lattice.angles)
            s = Structure(lat, [mapping[site.specie.symbol] for site in proto], proto.frac_coords)
            yield _make(f"{s.composition.reduced_formula}-{stype}", s,
                        f"template prototype {src} ({stype}) decorated with {'/'.join(new)}, "
                        f"experimental lattice constants", stype, axes, known)
