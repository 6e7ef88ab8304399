"""Detection and lattice on real STEM images (third-party data, see the data folder's README).

atomap_test_*_cropped.hdf5 (atomap-dev/atomap, GPL-3.0): SrTiO3 seen along [110], 9.33 pm/px. Its
projected cell is rectangular, a0/√2 x a0 = 2.761 x 3.905 Å, with SrO columns at (0, 0), Ti at
(0, ½) and O at (½, ½) (O is visible in ABF only).
temul_* (PinkShnack/TEMUL, GPL-3.0): PbTiO3/SrRuO3 HAADF with 465 A-site positions found by Atomap.
"""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_automat.detect import detect_columns, find_lattice

read = pytest.importorskip("napari_automat.io.read", reason="the micrograph reader is not available")

A0 = 3.905  # SrTiO3, Å


def _read(data_dir, name):
    path = data_dir / "real" / name
    if not path.exists():
        pytest.skip(f"{name} not in the data folder")
    return read.read_micrograph(path)


def _fracs(lattice):
    return [tuple(np.round(np.mod(np.asarray(m.frac) + 0.02, 1.0) - 0.02, 1)) for m in lattice.motif]


def test_srtio3_110_adf(data_dir):
    micrograph = _read(data_dir, "atomap_test_ADF_cropped.hdf5")
    columns = detect_columns(micrograph)
    lattice, out = find_lattice(columns, micrograph)
    assert lattice.a_A == pytest.approx(A0 / np.sqrt(2), rel=0.01)
    assert lattice.b_A == pytest.approx(A0, rel=0.01)
    assert lattice.gamma_deg == pytest.approx(90.0, abs=1.0)
    assert lattice.fft_mismatch < 0.02
    assert _fracs(lattice) == [(0.0, 0.0), (0.0, 0.5)]  # SrO, then the dimmer Ti
    assert lattice.motif[0].intensity > 1.5 * lattice.motif[1].intensity
    assert np.all(out.sublattice >= 0) and np.all(np.isfinite(columns.sigma_px))
    assert 200 < len(columns) < 240  # 14 x 9 SrO and 14 x 8 Ti columns in the field


def test_srtio3_110_abf_shows_oxygen(data_dir):
    micrograph = _read(data_dir, "atomap_test_ABF_cropped.hdf5")
    lattice, _ = find_lattice(detect_columns(micrograph), micrograph)
    assert lattice.a_A == pytest.approx(A0 / np.sqrt(2), rel=0.01)
    assert lattice.b_A == pytest.approx(A0, rel=0.01)
    assert len(lattice.motif) == 3
    fracs = np.array([m.frac for m in lattice.motif])
    assert np.min(np.linalg.norm(np.mod(fracs - [0.5, 0.5] + 0.5, 1) - 0.5, axis=1)) < 0.06  # the O column


def test_pbtio3_srruo3_against_atomap_positions(data_dir):
    micrograph = _read(data_dir, "temul_Cropped_PTO-SRO_Aligned.hspy")
    reference = np.load(data_dir / "real" / "temul_PTO_atom_positions1.npy")[:, ::-1]  # (x, y) -> (y, x)
    columns = detect_columns(micrograph)
    distance, _ = cKDTree(columns.positions_px).query(reference)
    matched = distance < 5.0  # px; the A-site spacing is about 24 px
    assert matched.mean() >= 0.98
    assert np.median(distance[matched]) < 1.0  # the reference positions are whole pixels
    lattice, _ = find_lattice(columns, micrograph)
    assert lattice.gamma_deg == pytest.approx(90.0, abs=1.5)
    assert abs(lattice.a_A - lattice.b_A) / lattice.b_A < 0.02
    assert len(lattice.motif) == 2  # A and B sites of the perovskite cell
