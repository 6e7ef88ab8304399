"""Per-column features from the lattice: displacement from the ideal lattice and sublattice outliers,
and the fitted Z-contrast exponent of the species labels."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from napari_automat.detect import detect_columns, find_lattice
from napari_automat.simulate import incoherent_image


def _srtio3(cells=8, substitute=None, shift_A=None):
    s = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    s.make_supercell([cells, cells, 1])
    centre = min((i for i, site in enumerate(s) if site.specie.symbol == "Sr"),
                 key=lambda i: np.linalg.norm(s[i].frac_coords[:2] - 0.5))
    if substitute:
        s.replace(centre, substitute, coords=s[centre].frac_coords)
    if shift_A is not None:
        s.translate_sites([centre], [shift_A / s.lattice.a, 0, 0], frac_coords=True)
    return s, s[centre].coords[:2]


def _columns(structure, z_exponent=1.7, dose=None):
    mg = incoherent_image(structure, (0, 0, 1), pixel_size_A=0.1, field_of_view_A=structure.lattice.a,
                          z_exponent=z_exponent, dose=dose, seed=1)
    lattice, cols = find_lattice(detect_columns(mg), image=mg)
    return mg, lattice, cols




def test_substituted_column_is_flagged_bright_and_the_rest_are_not():
    structure, _ = _srtio3(substitute="Ba")
    mg, lattice, cols = _columns(structure, dose=2e5)
    flagged = [i for i, f in enumerate(cols.flag) if f]
    assert [cols.flag[i] for i in flagged] == ["bright"]
    i = flagged[0]
    assert cols.sublattice[i] == 0  # Ba sits on the (bright) Sr sublattice
    bright_px = np.unravel_index(np.argmax(_smooth(mg.data)), mg.data.shape)
    assert np.hypot(*(cols.positions_px[i] - bright_px)) < 3


def test_lighter_substitution_is_flagged_dim():
    structure, _ = _srtio3(substitute="Ca")
    _, _, cols = _columns(structure)
    assert sorted(cols.flag).count("dim") == 1 and "bright" not in cols.flag


def test_displaced_column_stands_out_and_the_lattice_does_not_move():
    structure, _ = _srtio3(shift_A=0.25)
    _, _, cols = _columns(structure)
    d = np.linalg.norm(cols.displacement_pm, axis=1)
    assert np.all(np.isfinite(d[cols.sublattice >= 0]))
    worst = int(np.nanargmax(d))
    assert d[worst] == pytest.approx(25.0, abs=3.0)  # 0.25 Å along a
    assert np.nanmedian(d) < 1.0  # the others sit on the ideal lattice
    assert not any(cols.flag)


@pytest.mark.parametrize("n", [1.3, 1.7, 2.0])
def test_z_exponent_is_recovered_from_a_ternary_image(n):
    from napari_automat.reconstruct.labels import fit_z_exponent

    structure, _ = _srtio3(cells=6)
    _, lattice, cols = _columns(structure, z_exponent=n)
    sites = sorted({int(s) for s in cols.sublattice if s >= 0})
    means = [np.median(cols.intensity[cols.sublattice == s]) for s in sites]
    comps = [{"Sr": 1.0}, {"Ti": 1.0, "O": 1.0}]  # brightest site first
    fit = fit_z_exponent(means, comps)
    assert fit["exponent"] == pytest.approx(n, abs=0.1)
    assert fit_z_exponent(means[:1], comps[:1]) is None  # one column type: nothing to fit


def _smooth(data):
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(data, float), 3)
