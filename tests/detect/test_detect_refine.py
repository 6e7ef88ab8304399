"""Sub-pixel refinement by batched Gaussian fits."""

import numpy as np
import pytest
from detect_synth import perovskite, render, synthetic

from napari_automat.detect import refine_columns
from napari_automat.detect.refine import fit_gaussians
from napari_automat.model import Columns


def _columns_near_truth(truth, pixel_A, shift_px=1.2, seed=0):
    rng = np.random.default_rng(seed)
    return Columns.from_positions(truth + rng.uniform(-shift_px, shift_px, truth.shape), (pixel_A, pixel_A),
                                  provenance=["moved"] * len(truth))


def test_refine_selected_columns_only():
    micrograph, truth, _ = perovskite(dose=None)
    start = _columns_near_truth(truth, 0.1)
    chosen = [3, 10, 11]
    out = refine_columns(micrograph, start, indices=chosen)
    moved = np.linalg.norm(out.positions_px - truth, axis=1)
    assert np.all(moved[chosen] < 0.01)
    others = np.setdiff1d(np.arange(len(truth)), chosen)
    assert np.array_equal(out.positions_px[others], start.positions_px[others])
    assert np.all(np.isnan(out.intensity[others]))
    assert out.provenance == start.provenance  # provenance is kept
    assert np.array_equal(start.positions_px, _columns_near_truth(truth, 0.1).positions_px)  # input untouched


def test_refine_all_on_dark_column_array_image():
    """A plain array of an ABF image: the polarity is decided from the contrast."""
    micrograph, truth, site = perovskite(dose=300.0, signal="ABF", ratio=0.5)
    inner = np.all((truth > 8) & (truth < 248), axis=1)
    out = refine_columns(micrograph.data, _columns_near_truth(truth[inner], 0.1))
    err = np.linalg.norm(out.positions_px - truth[inner], axis=1)
    assert np.sqrt(np.mean(err ** 2)) < 0.15
    ratio = np.median(out.intensity[site[inner] == 1]) / np.median(out.intensity[site[inner] == 0])
    assert ratio == pytest.approx(0.5, abs=0.05)


def test_dim_column_next_to_bright_ones_is_not_pulled(monkeypatch):
    """A dim column 1.9 Å from bright ones: subtracting the fitted neighbours removes most of the pull."""
    import napari_automat.detect.refine as refine

    a, b = np.array([0.0, 3.8]), np.array([3.8, 0.0])
    micrograph, truth, site = synthetic((200, 200), 0.1, a, b, [(0, 0), (0.5, 0.0)], [1.0, 0.2],
                                        sigma_A=0.55, dose=None)
    start = _columns_near_truth(truth, 0.1, shift_px=0.8)
    dim = (site == 1) & np.all((truth > 30) & (truth < 170), axis=1)
    errors = {}
    for rounds in (1, 2):
        monkeypatch.setattr(refine, "ROUNDS", rounds)
        out = refine_columns(micrograph, start)
        errors[rounds] = np.linalg.norm(out.positions_px - truth, axis=1)[dim]
    assert errors[2].max() < 0.3 and np.sqrt(np.mean(errors[2] ** 2)) < 0.12
    assert np.sqrt(np.mean(errors[1] ** 2)) > 4 * np.sqrt(np.mean(errors[2] ** 2))


def test_fit_recovers_width_amplitude_and_background():
    truth = np.array([[20.3, 20.7], [20.1, 45.4], [44.6, 21.2], [45.5, 44.9]])
    image = render((66, 66), truth, [2.0, 1.0, 1.5, 0.5], 3.0, background=0.3)
    pos, intensity, sigma, _, _ = fit_gaussians(image, np.rint(truth), np.full(4, 11.0))
    assert np.abs(pos - truth).max() < 1e-3
    assert sigma == pytest.approx(3.0, rel=1e-3)
    assert intensity == pytest.approx(2 * np.pi * 9.0 * np.array([2.0, 1.0, 1.5, 0.5]), rel=1e-3)


def test_failed_fit_falls_back_to_centre_of_mass_and_is_flagged():
    image = np.zeros((40, 40))
    image[18:23, 18:23] = 1.0  # a flat-topped square: no Gaussian width fits inside a 3 px patch
    pos, intensity, sigma, _, _ = fit_gaussians(image, np.array([[19.0, 21.0]]), np.array([2.2]))
    assert np.isnan(sigma[0])
    assert np.all(np.abs(pos[0] - 20.0) < 1.01)
    assert intensity[0] > 0


@pytest.mark.parametrize("dose", [50.0, 500.0])
def test_position_uncertainty_matches_the_actual_error(dose):
    """The fit's 1σ position uncertainty predicts the real scatter (Poisson noise at two doses)."""
    micrograph, truth, _ = perovskite(dose=dose)
    inner = np.all((truth > 12) & (truth < micrograph.data.shape[0] - 12), axis=1)
    out = refine_columns(micrograph, _columns_near_truth(truth[inner], 0.1, shift_px=0.6))
    err = out.positions_px - truth[inner]
    actual = np.sqrt(np.mean(err ** 2))  # per axis [px]
    predicted = np.sqrt(np.mean(out.position_sigma_px ** 2))
    assert predicted == pytest.approx(actual, rel=0.35), (predicted, actual)
    assert np.all((out.fit_r2 > 0.5) & (out.fit_r2 <= 1.0))
