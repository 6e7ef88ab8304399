"""Acquisition effects: dose noise statistics, scan jitter, drift, background."""

import numpy as np
import pytest

from napari_automat.model import AutomatError
from napari_automat.simulate import add_dose_noise, background, drift, scan_jitter


def test_relative_dose_sets_the_mean_count():
    image = np.linspace(1, 3, 200 * 200).reshape(200, 200)
    counts = add_dose_noise(image, 2500.0, 0.2, rng=0)
    assert counts.dtype == np.float32 and counts.mean() == pytest.approx(100.0, rel=0.01)
    assert np.var(counts - image / image.mean() * 100) == pytest.approx(100.0, rel=0.05)


def test_absolute_dose_uses_beam_fractions():
    image = np.full((100, 100), 0.02)
    counts = add_dose_noise(image, 1e5, (0.1, 0.2), rng=np.random.default_rng(1), absolute=True)
    assert counts.mean() == pytest.approx(0.02 * 1e5 * 0.02, rel=0.02)


def test_dose_errors():
    with pytest.raises(AutomatError):
        add_dose_noise(np.ones((4, 4)), 0.0, 0.1)
    with pytest.raises(AutomatError):
        add_dose_noise(np.zeros((4, 4)), 100.0, 0.1)


def test_scan_jitter_shifts_rows_only():
    x = np.arange(128.0)
    image = np.tile(np.sin(2 * np.pi * x / 16), (64, 1))
    out = scan_jitter(image, 1.5, rng=3)
    # each row is the same sine shifted sideways: its power is kept, rows now differ
    assert np.allclose(np.abs(np.fft.rfft(out[:, 20:108], axis=1))[:, 5].std(), 0, atol=2)
    assert np.abs(out - image)[:, 10:-10].max() > 0.3
    assert np.allclose(scan_jitter(image, 0.0, rng=3), image)


def test_drift_moves_a_feature_where_predicted():
    image = np.zeros((100, 100))
    image[60, 40] = 1.0
    from scipy import ndimage

    image = ndimage.gaussian_filter(image, 2)
    out, pos = drift(image, (0.1, -0.2), positions_px=[[60, 40]])
    found = np.unravel_index(np.argmax(out), out.shape)
    assert np.abs(np.array(found) - pos[0]).max() <= 1.0
    assert pos[0] == pytest.approx([60 / 1.1, 40 + 0.2 * 60 / 1.1])
    assert drift(image, (0, 0))[1] is None


def test_background_is_smooth():
    field = background((128, 128), 5.0, 10.0, rng=0)
    assert field.std() == pytest.approx(5.0) and abs(field.mean()) < 1e-9
    assert np.abs(np.diff(field, axis=1)).mean() < 0.5
