"""Reconstruction: cell parameters fitted within the crystal system, symmetrised, warnings."""

import math

import numpy as np
import pytest

from napari_automat.model import AutomatError, Lattice2D, MotifSite, TemplateHit
from napari_automat.reconstruct import reconstruct, structure_summary


def rutile():
    from pymatgen.core import Lattice, Structure

    u = 0.305
    return Structure(Lattice.tetragonal(4.594, 2.959), ["Ti", "Ti", "O", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [u, u, 0], [-u, -u, 0], [.5 + u, .5 - u, .5], [.5 - u, .5 + u, .5]])


def perovskite(a=3.905):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


def monolayer():
    from ase.build import mx2
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = mx2("MoS2", "2H", a=3.16, thickness=3.17, vacuum=7.5)
    atoms.pbc = True
    return AseAtomsAdaptor.get_structure(atoms)


def rect(a, b, gamma=90.0, uncertainty=float("nan")) -> Lattice2D:
    g = math.radians(gamma)
    return Lattice2D([a, 0.0], [b * math.cos(g), b * math.sin(g)], motif=[MotifSite((0, 0), 1.0, 0)],
                     uncertainty_A=uncertainty)


def hit(structure, axis, **details) -> TemplateHit:
    return TemplateHit("test", structure.composition.reduced_formula, axis, 1.0, details, structure)


def test_cubic_scales_isotropically():
    rec = reconstruct(hit(perovskite(), (0, 0, 1)), rect(4.0, 4.0))
    s = rec.structure
    assert s.lattice.abc == pytest.approx((4.0, 4.0, 4.0), rel=1e-4)
    assert structure_summary(s)["spacegroup_number"] == 221
    assert rec.warnings == []
    # A rectangular measurement cannot stretch a cubic cell: the mean scale and a warning.
    rec = reconstruct(hit(perovskite(), (0, 0, 1)), rect(3.90, 4.10))
    assert rec.structure.lattice.a == pytest.approx(math.sqrt(3.90 * 4.10), rel=2e-3)
    assert any("misfit" in w for w in rec.warnings)
    assert structure_summary(rec.structure)["spacegroup_number"] == 221


def test_tetragonal_001_keeps_c_over_a():
    rec = reconstruct(hit(rutile(), (0, 0, 1)), rect(4.70, 4.70))
    a, _, c = rec.structure.lattice.abc
    assert a == pytest.approx(4.70, rel=1e-4)
    assert c / a == pytest.approx(2.959 / 4.594, rel=1e-3)
    assert structure_summary(rec.structure)["spacegroup_number"] == 136


def test_tetragonal_100_fits_a_and_c_independently():
    # Along [100] the projection shows a and c: both are measured. The "image" is a strained rutile.
    from napari_automat.templates import project, visible_columns
    from napari_automat.templates.projection import to_lattice2d

    strained = rutile()
    strained.lattice = strained.lattice.__class__.tetragonal(4.594 * 1.02, 2.959 * 0.98)
    lattice = to_lattice2d(visible_columns(project(strained, (1, 0, 0))), uncertainty_A=0.05)
    rec = reconstruct(hit(rutile(), (1, 0, 0)), lattice)
    a, _, c = rec.structure.lattice.abc
    assert a == pytest.approx(4.594 * 1.02, rel=2e-3)
    assert c == pytest.approx(2.959 * 0.98, rel=2e-3)
    assert rec.symprec_A == pytest.approx(0.05)
    assert structure_summary(rec.structure)["spacegroup_number"] == 136


def test_monolayer_keeps_its_vacuum_and_thickness():
    template = monolayer()
    rec = reconstruct(hit(template, (0, 0, 1), is_2d=True), rect(3.40, 3.40, 120.0))
    s = rec.structure
    assert s.lattice.a == pytest.approx(3.40, rel=1e-4) and s.lattice.c == pytest.approx(template.lattice.c)
    z = sorted(site.coords[2] for site in s if site.specie.symbol == "S")
    assert z[-1] - z[0] == pytest.approx(3.17, abs=1e-3)  # S-S thickness unchanged
    assert structure_summary(s)["spacegroup_number"] == 187  # P-6m2
    assert any("strain" in w for w in rec.warnings)  # 7.6% > 5%
    rec = reconstruct(hit(template, (0, 0, 1), is_2d=True), rect(3.20, 3.20, 120.0))
    assert rec.warnings == []  # 1.3%


def test_basis_mapping_from_details_is_used():
    # Explicit mapping: measured a ↔ template [001] (c), measured b ↔ [010] (a) along [100].
    details = {"basis_frac3": [[0, 0, 1], [0, 1, 0]]}
    rec = reconstruct(hit(rutile(), (1, 0, 0), **details), rect(3.0, 4.6))
    a, _, c = rec.structure.lattice.abc
    assert (a, c) == pytest.approx((4.6, 3.0), rel=2e-3)


def test_no_structure_is_an_error():
    with pytest.raises(AutomatError):
        reconstruct(TemplateHit("x", "X", (0, 0, 1), 0.5), rect(3.9, 3.9))


def test_summary_and_cif_roundtrip():
    from pymatgen.io.cif import CifParser

    summary = structure_summary(perovskite())
    assert set(summary) == {"formula", "reduced_formula", "spacegroup_symbol", "spacegroup_number", "a", "b", "c",
                            "alpha", "beta", "gamma", "cif"}
    assert summary["spacegroup_symbol"] == "Pm-3m" and summary["formula"] == "Sr1Ti1O3"
    parsed = CifParser.from_str(summary["cif"]).parse_structures(primitive=False)[0]
    assert parsed.composition.reduced_formula == "SrTiO3"
    assert parsed.lattice.a == pytest.approx(3.905)
    assert np.isclose(summary["alpha"], 90)
