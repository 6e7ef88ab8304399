"""abTEM (PRISM) simulation: orientation, exact column positions, contrast of HAADF, ABF and iDPC.

The multislice runs here use thin slabs (one or two unit cells) to stay within seconds.
"""

import time

import numpy as np
import pytest

from napari_automat.model import AutomatError
from napari_automat.simulate import incoherent_image, orient_structure, simulate_stem

pytestmark = pytest.mark.slow


def _log_parabola_peaks(image, guesses):
    out = []
    log = np.log(np.maximum(image, 1e-12))
    for y, x in np.round(guesses).astype(int):
        dy, dx = np.unravel_index(np.argmax(image[y - 1:y + 2, x - 1:x + 2]), (3, 3))
        y, x = y + dy - 1, x + dx - 1
        fy, fx = log[y - 1:y + 2, x], log[y, x - 1:x + 2]
        out.append([y + 0.5 * (fy[0] - fy[2]) / (fy[0] - 2 * fy[1] + fy[2]),
                    x + 0.5 * (fx[0] - fx[2]) / (fx[0] - 2 * fx[1] + fx[2])])
    return np.array(out)


def _site_means(m):
    labels = np.array(m.metadata["true_columns_species"])
    idx = np.round(m.true_columns_px).astype(int)
    return {lab: float(m.data[tuple(idx[labels == lab].T)].mean()) for lab in set(labels)}


@pytest.fixture(scope="module")
def haadf(srtio3):
    start = time.perf_counter()
    m = simulate_stem(srtio3, (0, 0, 1), thickness_A=8.0, pixel_size_A=0.2, field_of_view_A=24.0,
                      rotation_deg=10.0)
    m.metadata["test_seconds"] = time.perf_counter() - start
    return m


def test_orient_structure_gives_orthogonal_cells(srtio3, gan):
    atoms, info = orient_structure(srtio3, (1, 1, 0))
    assert np.allclose(atoms.cell, np.diag(np.diag(atoms.cell)))
    assert np.allclose(sorted(info["cell_A"][:2]), [3.905, 3.905 * np.sqrt(2)])
    assert info["cell_A"][2] == pytest.approx(3.905 * np.sqrt(2)) and info["strain"] < 1e-6
    assert len(atoms) == 5 * round(np.prod(info["cell_A"]) / 3.905 ** 3)
    atoms, info = orient_structure(gan, (0, 0, 1))
    assert info["cell_A"][2] == pytest.approx(5.19) and info["strain"] < 1e-6
    assert np.prod(info["cell_A"][:2]) == pytest.approx(2 * 3.19 ** 2 * np.sqrt(3) / 2)


def test_haadf_metadata_and_calibration(haadf):
    assert haadf.calibrated and haadf.pixel_size_A == (0.2, 0.2) and haadf.shape == (120, 120)
    md = haadf.metadata
    assert md["voltage_kV"] == 200 and md["detector"] == "HAADF" and md["signal"] == "HAADF"
    assert md["convergence_angle_mrad"] == 20 and md["detector_angles_mrad"] == [70.0, 200.0]
    assert md["thickness_A"] == pytest.approx(2 * 3.905) and md["dose_e_per_A2"] is None
    assert np.all(haadf.data >= 0) and haadf.data.max() < 0.2  # fractions of the beam
    print(f"abTEM HAADF SrTiO3 [001], 120x120 px: {md['test_seconds']:.1f} s")


def test_haadf_columns_are_where_true_columns_say(haadf):
    labels = np.array(haadf.metadata["true_columns_species"])
    inner = np.all((haadf.true_columns_px > 3) & (haadf.true_columns_px < 116), axis=1)
    for label in ("Sr", "Ti+O"):
        truth = haadf.true_columns_px[inner & (labels == label)]
        found = _log_parabola_peaks(haadf.data, truth)
        assert np.sqrt(np.mean(np.sum((found - truth) ** 2, axis=1))) < 0.1  # pixels of 0.2 Å


def test_haadf_z_contrast_and_incoherent_model_agree(haadf, srtio3):
    means = _site_means(haadf)
    assert means["Sr"] > 1.5 * means["Ti+O"] > 1.5 * means["O"]
    model = incoherent_image(srtio3, (0, 0, 1), pixel_size_A=0.2, field_of_view_A=24.0, rotation_deg=10.0)
    r = np.corrcoef(model.data.ravel(), haadf.data.ravel())[0, 1]
    print(f"correlation incoherent vs abTEM HAADF (SrTiO3 [001], 8 Å): {r:.3f}")
    assert r > 0.9


def test_idpc_shows_all_columns_bright_with_dose(srtio3):
    m = simulate_stem(srtio3, detector="iDPC", thickness_A=4.0, pixel_size_A=0.2, field_of_view_A=20.0,
                      dose_e_per_A2=1e6, seed=1)
    means = _site_means(m)
    background = float(np.median(m.data))
    assert means["Ti+O"] > means["Sr"] * 0.5 and means["O"] > background + 0.2 * (means["Sr"] - background)
    assert m.metadata["detector_angles_mrad"] == [5.0, 20.0]


def test_abf_shows_dark_columns_including_oxygen(srtio3):
    m = simulate_stem(srtio3, detector="ABF", thickness_A=4.0, pixel_size_A=0.2, field_of_view_A=20.0)
    means = _site_means(m)
    assert m.metadata["signal"] == "ABF"
    assert max(means.values()) < np.median(m.data)
    assert means["O"] < np.percentile(m.data, 50)


def test_bad_requests_fail_clearly(srtio3):
    with pytest.raises(AutomatError, match="detector"):
        simulate_stem(srtio3, detector="BF-CTEM")
    with pytest.raises(AutomatError):
        simulate_stem(srtio3, detector="ABF", detector_mrad=(30, 10))
