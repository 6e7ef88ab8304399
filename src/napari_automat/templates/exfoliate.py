"""Monolayers exfoliated from the layered crystals of the library.

A crystal counts as layered when it has a non-metal and every bonded component of it (bonds from
covalent radii, pymatgen's JmolNN) is a sheet of the crystal's composition in the ab plane of its
conventional cell, with c normal to that plane: 2H and 1T dichalcogenides, CdI2, PbI2, BiI3, GaS,
InSe, Bi2Se3, hBN, graphite, PbO-type FeSe. One layer, with :data:`~.sources.MONOLAYER_VACUUM_A`
of vacuum on each side along c, becomes a 2D template when its own symmetry keeps c as the unique
axis (hexagonal, trigonal or tetragonal: the library and the reconstruction take c as the vacuum
axis), so that a plan-view image of a monolayer finds a monolayer, also for chemistries the library
knows only as bulk (a 1T TiS2 sheet through the CdI2 prototype).
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np

from .sources import MONOLAYER_VACUUM_A, SYMPREC, TemplateSource

#: Tolerance of right angles [deg].
ANGLE_TOL = 0.1
#: Crystal systems of monolayers whose conventional cell keeps c (the vacuum) as the unique axis.
UNIAXIAL = ("hexagonal", "trigonal", "tetragonal")


def _c_normal(lattice) -> bool:
    """Whether c is normal to the ab plane."""
    return all(abs(x - 90) <= ANGLE_TOL for x in lattice.angles[:2])


def layer_components(structure) -> Optional[list[tuple[int, ...]]]:
    """Site indices of each layer of ``structure`` (a conventional cell), or None when it is not made
    only of layers parallel to its ab plane, each of the crystal's composition, with c normal to them."""
    import warnings

    from pymatgen.analysis.dimensionality import get_structure_components
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.analysis.local_env import JmolNN
    from pymatgen.core import Composition

    if not _c_normal(structure.lattice):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = StructureGraph.from_local_env_strategy(structure, JmolNN())
        components = get_structure_components(graph, inc_orientation=True, inc_site_ids=True)
    if not components or any(c["dimensionality"] != 2 or tuple(int(x) for x in c["orientation"]) != (0, 0, 1)
                             for c in components):
        return None
    layers = [tuple(int(i) for i in c["site_ids"]) for c in components]
    formula = structure.composition.reduced_formula
    if any(Composition(Counter(structure[i].species_string for i in layer)).reduced_formula != formula for layer in layers):
        return None  # sheets of different kinds: intercalated ions (Rb between ScO2 sheets), not a vdW stack
    return layers


def monolayer(structure, sites: tuple[int, ...], vacuum_A: float = MONOLAYER_VACUUM_A):
    """The layer made of ``sites`` of ``structure`` (c normal to the layer) in a cell of the same a
    and b whose c is the layer's thickness plus ``vacuum_A`` [Å] on each side."""
    from pymatgen.core import Lattice, Structure

    frac = structure.frac_coords[list(sites)]
    c = structure.lattice.c
    z = np.sort(frac[:, 2] % 1.0)
    gaps = np.diff(np.append(z, z[0] + 1.0))
    bottom = z[(int(np.argmax(gaps)) + 1) % len(z)]  # the layer starts after the widest gap
    height = ((frac[:, 2] - bottom) % 1.0) * c  # [Å] above the bottom atom
    new_c = float(height.max()) + 2 * vacuum_A
    a, b, _, _, _, gamma = structure.lattice.parameters
    lattice = Lattice.from_parameters(a, b, new_c, 90, 90, gamma)
    coords = np.column_stack([frac[:, :2] % 1.0, (height + vacuum_A) / new_c])
    return Structure(lattice, [structure[i].specie for i in sites], coords)


def _uniaxial(layer) -> bool:
    """Whether the monolayer's conventional standard cell is hexagonal, trigonal or tetragonal with
    c, the vacuum axis, unchanged."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(layer, symprec=SYMPREC)
    if sga.get_crystal_system() not in UNIAXIAL:
        return False
    conv = sga.get_conventional_standard_structure()
    return abs(conv.lattice.c - layer.lattice.c) < SYMPREC and _c_normal(conv.lattice)


def exfoliated_source(args: tuple) -> Optional[TemplateSource]:
    """The monolayer template of a library entry, ``args = (id, structure, decorate)``, or None
    when the entry is not a layered crystal."""
    entry_id, structure, decorate = args
    if all(el.is_metal for el in structure.composition):  # close-packed metals with a long c, not sheets
        return None
    layers = layer_components(structure)
    if layers is None:
        return None
    layer = monolayer(structure, layers[0])
    if not _uniaxial(layer):
        return None
    formula = layer.composition.reduced_formula
    return TemplateSource(f"2d:{entry_id}", layer, "exfoliated",
                          f"{formula} monolayer exfoliated from {entry_id}, {2 * MONOLAYER_VACUUM_A:.0f} Å vacuum",
                          is_2d=True, decorate=decorate)
