"""Monolayers exfoliated from layered crystals: which crystals are layered, and the layer's cell."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from napari_automat.templates.exfoliate import exfoliated_source, layer_components, monolayer
from napari_automat.templates.sources import MONOLAYER_VACUUM_A


def molybdenite() -> Structure:
    """2H-MoS2 (P6_3/mmc, two layers per cell)."""
    return Structure.from_spacegroup(194, Lattice.hexagonal(3.16, 12.29), ["Mo", "S"],
                                     [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]])


def cadmium_iodide(z_iodine: float = 0.25) -> Structure:
    """1T CdI2 (P-3m1, one layer per cell; z = 0.5 would make it 3D, the omega phase)."""
    return Structure.from_spacegroup(164, Lattice.hexagonal(4.24, 6.84), ["Cd", "I"],
                                     [[0, 0, 0], [1 / 3, 2 / 3, z_iodine]])


def min_distance(structure: Structure) -> float:
    d = structure.distance_matrix
    return float(d[~np.eye(len(structure), dtype=bool)].min()) if len(structure) > 1 else np.inf


@pytest.mark.parametrize("bulk, n_layers, spacegroup", [(molybdenite, 2, 187), (cadmium_iodide, 1, 164)])
def test_layered_crystals_give_one_layer_with_vacuum(bulk, n_layers, spacegroup):
    crystal = bulk()
    layers = layer_components(crystal)
    assert layers is not None and len(layers) == n_layers
    sheet = monolayer(crystal, layers[0])
    assert sheet.composition.reduced_formula == crystal.composition.reduced_formula
    assert len(sheet) == 3
    assert sheet.lattice.a == pytest.approx(crystal.lattice.a)
    z = sheet.cart_coords[:, 2]
    thickness = z.max() - z.min()
    assert 2.5 < thickness < 4.0  # one X-M-X sandwich, not wrapped across the cell
    assert sheet.lattice.c == pytest.approx(thickness + 2 * MONOLAYER_VACUUM_A)
    assert z.min() == pytest.approx(MONOLAYER_VACUUM_A)
    assert min_distance(sheet) == pytest.approx(min_distance(crystal), abs=1e-6)  # bonds kept
    assert SpacegroupAnalyzer(sheet, symprec=0.1).get_space_group_number() == spacegroup


def test_tetragonal_and_orthohexagonal_cells_give_uniaxial_monolayers():
    # PbO-type FeSe (P4/nmm): one square Fe sheet between two Se sheets.
    fese = Structure(Lattice.tetragonal(3.77, 5.52), ["Fe", "Fe", "Se", "Se"],
                     [[0.75, 0.25, 0], [0.25, 0.75, 0], [0.25, 0.25, 0.266], [0.75, 0.75, -0.266]])
    sheet = exfoliated_source(("aflow:FeSe", fese, True)).structure
    assert sheet.composition.reduced_formula == "FeSe" and len(sheet) == 4
    sga = SpacegroupAnalyzer(sheet, symprec=0.1)
    assert sga.get_crystal_system() == "tetragonal" and sheet.lattice.c > 15
    # 1T CdI2 in a C-centred orthohexagonal cell (b = √3 a): the sheet is trigonal again.
    ortho = cadmium_iodide().copy()
    ortho.make_supercell([[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    assert ortho.lattice.angles[2] == pytest.approx(90)
    sheet = exfoliated_source(("mp:CdI2-ortho", ortho, False)).structure
    assert SpacegroupAnalyzer(sheet, symprec=0.1).get_space_group_number() == 164


def test_crystals_that_are_not_layered_give_nothing():
    rocksalt = Structure.from_spacegroup(225, Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    wurtzite = Structure.from_spacegroup(186, Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                                         [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]])
    assert layer_components(rocksalt) is None  # bonded in 3D
    assert layer_components(wurtzite) is None  # bonded in 3D
    assert layer_components(cadmium_iodide(z_iodine=0.5)) is None
    assert exfoliated_source(("aflow:wurtzite", wurtzite, True)) is None
    # Sheets by covalent radii, but a metal: hcp Cs with a long c is no van der Waals crystal.
    long_hcp = Structure.from_spacegroup(194, Lattice.hexagonal(2.6, 8.0), ["Cs"], [[1 / 3, 2 / 3, 0.25]])
    assert layer_components(long_hcp) is not None and exfoliated_source(("mp:Cs", long_hcp, False)) is None
    # Sheets of Rb ions between ScO2 sheets (an intercalation compound).
    rbsco2 = Structure.from_spacegroup(166, Lattice.hexagonal(3.24, 18.3), ["Rb", "Sc", "O"],
                                       [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.2]])
    assert layer_components(rbsco2) is None


def test_exfoliated_source_keeps_provenance_and_decoration():
    src = exfoliated_source(("aflow:AB2_hP3_164_a_d", cadmium_iodide(), True))
    assert src.id == "2d:aflow:AB2_hP3_164_a_d" and src.is_2d and src.decorate
    assert src.source == "exfoliated" and "CdI2 monolayer exfoliated from aflow:AB2_hP3_164_a_d" in src.description
    assert not exfoliated_source(("matbench:1-MoS2", molybdenite(), False)).decorate
