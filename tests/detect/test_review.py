"""Accepting hand-corrected columns: edited points are fitted and the lattice labels redone."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from napari_automat.detect import accept_columns, detect_columns, find_lattice
from napari_automat.model import AutomatError, Columns, FLAT_FEATURES
from napari_automat.simulate import incoherent_image


@pytest.fixture(scope="module")
def srtio3():
    """A noisy SrTiO3 [001] image and its detected, lattice-labelled columns."""
    s = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    s.make_supercell([6, 6, 1])
    mg = incoherent_image(s, (0, 0, 1), pixel_size_A=0.15, field_of_view_A=s.lattice.a, dose=2e4, seed=2)
    _, columns = find_lattice(detect_columns(mg), image=mg)
    return mg, columns


def _hand_edited(columns: Columns, remove: int, click_px) -> Columns:
    """``columns`` without column ``remove`` plus a point added by hand at ``click_px`` (no features)."""
    keep = columns.subset(np.setdiff1d(np.arange(columns.count), [remove]))
    flat = keep.flat_features()
    for name, (_, fill) in FLAT_FEATURES.items():
        flat[name] = list(flat[name]) + ["added" if name == "provenance" else fill]
    return Columns.from_flat(np.vstack([keep.positions_px, click_px]), keep.pixel_size_A, flat)


def test_accept_fits_added_and_moved_points_and_relabels(srtio3):
    mg, columns = srtio3
    centre = int(np.argmin(np.linalg.norm(columns.positions_px - columns.positions_px.mean(0), axis=1)))
    truth = columns.positions_px[centre]
    edited = _hand_edited(columns, centre, truth + [0.8, -0.5])
    moved = 5 if 5 < centre else 6
    edited.positions_px[moved] += [0.6, 0.0]
    edited.provenance[moved] = "moved"
    assert edited.sublattice[-1] == -1 and np.isnan(edited.intensity[-1])

    accepted, summary = accept_columns(edited, mg)
    assert summary["columns"] == columns.count and summary["n_added"] == 1 and summary["n_moved"] == 1
    assert summary["refined"] == 2
    assert np.linalg.norm(accepted.positions_px[-1] - truth) < 0.15  # px
    assert np.linalg.norm(accepted.positions_px[moved] - columns.positions_px[moved]) < 0.15
    assert np.isfinite(accepted.intensity[-1]) and accepted.sublattice[-1] == columns.sublattice[centre] >= 0
    assert accepted.provenance[-1] == "added" and accepted.provenance[moved] == "moved"
    assert summary["lattice"]["a_A"] == pytest.approx(3.905, rel=0.01)
    # points nobody touched keep their positions
    untouched = np.setdiff1d(np.arange(columns.count - 1), [moved])
    np.testing.assert_allclose(accepted.positions_px[untouched], edited.positions_px[untouched])


def test_accept_without_an_image_only_relabels(srtio3):
    _, columns = srtio3
    accepted, summary = accept_columns(columns)
    assert summary["refined"] == 0 and summary["lattice"]["sites"] >= 2
    np.testing.assert_allclose(accepted.positions_px, columns.positions_px)


def test_accept_refuses_an_empty_layer():
    with pytest.raises(AutomatError, match="no columns"):
        accept_columns(Columns.from_positions(np.zeros((0, 2)), (0.2, 0.2)))
