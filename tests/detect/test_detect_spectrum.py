"""Lattice periodicity from the power spectrum."""

import numpy as np
import pytest
from detect_synth import perovskite, synthetic

from napari_automat.detect import fft_basis, lattice_period_from_fft
from napari_automat.detect.spectrum import fft_mismatch, spectrum_peaks


def test_dominant_spacing_of_perovskite_is_the_110_spacing():
    """Bright and dim columns add up in the (110) spots: the strongest spacing is a/√2."""
    micrograph, *_ = perovskite(dose=200.0)
    period = lattice_period_from_fft(micrograph.data, micrograph.pixel_size_A)
    assert period == pytest.approx(3.905 / np.sqrt(2), rel=2e-3)


def test_basis_is_the_perovskite_cell_and_spots_are_subbin_accurate():
    micrograph, *_ = perovskite(dose=200.0, angle_deg=7.0)
    a, b = fft_basis(micrograph.data, micrograph.pixel_size_A)
    assert np.linalg.norm(a) == pytest.approx(3.905, rel=2e-3)
    assert np.linalg.norm(b) == pytest.approx(3.905, rel=2e-3)
    assert abs(np.dot(a, b)) / 3.905 ** 2 < 5e-3
    # the (100) direction is rotated by 7° from the y axis
    angle = np.degrees(np.arctan2(a[1], a[0])) % 90
    assert min(angle, 90 - angle) == pytest.approx(7.0, abs=0.3)


def test_anisotropic_pixels_give_the_true_spacing():
    micrograph, *_ = synthetic((200, 260), (0.12, 0.09), np.array([0.0, 3.2]), np.array([4.1, 0.0]),
                               [(0, 0)], [1.0], dose=100.0)
    a, b = fft_basis(micrograph.data, micrograph.pixel_size_A)
    assert sorted([np.linalg.norm(a), np.linalg.norm(b)]) == pytest.approx([3.2, 4.1], rel=3e-3)


def test_mismatch_is_zero_for_the_cell_and_large_for_a_wrong_one():
    micrograph, *_ = perovskite(dose=200.0, angle_deg=0.0)
    args = micrograph.data, micrograph.pixel_size_A
    assert fft_mismatch(*args, [0.0, 3.905], [3.905, 0.0]) < 0.005
    # the centred sub-cell (a/√2) cannot index the (100) spots
    assert fft_mismatch(*args, [1.9525, 1.9525], [1.9525, -1.9525]) > 0.9
    assert fft_mismatch(*args, [0.0, 4.2], [4.2, 0.0]) > 0.03


def test_noise_has_no_spots():
    noise = np.random.default_rng(1).poisson(50.0, size=(256, 256)).astype(float)
    g, strength = spectrum_peaks(noise, 0.1)
    assert len(g) == 0
    assert lattice_period_from_fft(noise, 0.1) is None
    assert fft_basis(noise, 0.1) is None
