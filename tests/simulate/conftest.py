"""Structures shared by the simulation tests."""

import pytest


@pytest.fixture(scope="session")
def srtio3():
    """Cubic perovskite SrTiO3, a = 3.905 Å."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


@pytest.fixture(scope="session")
def gan():
    """Wurtzite GaN, a = 3.19 Å, c = 5.19 Å."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.19, 5.19), ["Ga", "N"],
                                     [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]])
