"""Column detection on synthetic images with known column positions."""

import numpy as np
import pytest
from detect_synth import match, perovskite, synthetic

from napari_automat.detect import detect_columns
from napari_automat.model import AutomatError, Micrograph

PIXEL_A = 0.1


def _inner(points, shape, margin):
    return np.all((points >= margin) & (points <= np.array(shape) - 1 - margin), axis=1)


def _scores(columns, micrograph, truth, max_px=3.0):
    """Recall (truth away from the border), precision (detections away from the border), RMSE [px]."""
    found = columns.positions_px
    recall, _, dist, *_ = match(found, truth[_inner(truth, micrograph.shape, 12)], max_px)
    _, precision, *_ = match(found[_inner(found, micrograph.shape, 10)], truth, max_px)
    return recall, precision, float(np.sqrt(np.mean(dist ** 2))) if len(dist) else np.inf


@pytest.mark.parametrize("signal", ["HAADF", "ABF"])
def test_perovskite_all_columns_found_with_picometre_precision(signal):
    micrograph, truth, _ = perovskite(dose=200.0, signal=signal)
    columns = detect_columns(micrograph)
    recall, precision, rmse_px = _scores(columns, micrograph, truth)
    assert recall == 1.0 and precision == 1.0
    assert rmse_px * PIXEL_A * 100 < 2.0  # pm, at 200 counts per unit column amplitude
    assert set(columns.provenance) == {"detected"}
    # the fitted width is the rendered one (0.45 Å)
    assert np.nanmedian(columns.sigma_px) * PIXEL_A == pytest.approx(0.45, rel=0.05)


def test_noise_free_positions_are_exact():
    micrograph, truth, _ = perovskite(dose=None)
    recall, precision, rmse_px = _scores(detect_columns(micrograph), micrograph, truth)
    assert recall == precision == 1.0
    assert rmse_px < 0.01


def test_dark_columns_recognised_without_metadata():
    """With no signal in the metadata, the contrast decides that ABF columns are dark."""
    micrograph, truth, _ = perovskite(dose=200.0, signal="ABF", seed=3)
    micrograph.metadata.pop("signal")
    recall, precision, _ = _scores(detect_columns(micrograph), micrograph, truth)
    assert recall == precision == 1.0


def test_wrong_polarity_finds_the_gaps_not_the_columns():
    micrograph, truth, _ = perovskite(dose=None)
    columns = detect_columns(micrograph, signal="ABF")
    recall, _, _ = _scores(columns, micrograph, truth)
    assert recall < 0.2


def test_intensity_follows_column_brightness():
    micrograph, truth, site = perovskite(dose=500.0, ratio=0.4)
    columns = detect_columns(micrograph)
    _, _, _, rows, cols = match(columns.positions_px, truth, 3.0)
    bright = np.median(columns.intensity[cols][site[rows] == 0])
    dim = np.median(columns.intensity[cols][site[rows] == 1])
    assert dim / bright == pytest.approx(0.4, abs=0.05)


def test_threshold_scale_controls_weak_columns():
    """Oxygen-like columns at 8% of the brightest are kept only when the threshold is lowered."""
    a = np.array([0.0, 3.905]), np.array([3.905, 0.0])
    micrograph, truth, site = synthetic((260, 260), PIXEL_A, *a, [(0, 0), (0.5, 0.5), (0.5, 0.0)],
                                        [1.0, 0.5, 0.08], dose=None)
    default = detect_columns(micrograph)
    low = detect_columns(micrograph, threshold_scale=0.3)
    weak = truth[site == 2]
    weak = weak[_inner(weak, micrograph.shape, 12)]
    found_default, *_ = match(default.positions_px, weak, 3.0)
    found_low, *_ = match(low.positions_px, weak, 3.0)
    assert found_default < 0.1 and found_low == 1.0


def test_given_separation_and_anisotropic_pixels():
    micrograph, truth, _ = synthetic((260, 300), (0.12, 0.09), np.array([0.3, 3.905]), np.array([3.905, -0.3]),
                                     [(0, 0), (0.5, 0.5)], [1.0, 0.45], dose=200.0)
    columns = detect_columns(micrograph, min_separation_A=1.2)
    recall, precision, rmse_px = _scores(columns, micrograph, truth)
    assert recall == precision == 1.0 and rmse_px < 0.2
    assert columns.pixel_size_A == (0.12, 0.09)
    assert columns.mean_sigma_A == pytest.approx(0.45, rel=0.05)


def test_hexagonal_honeycomb():
    t = np.radians(20)
    a = 2.46 * np.array([np.sin(t), np.cos(t)])
    b = 2.46 * np.array([np.sin(t - 2 * np.pi / 3), np.cos(t - 2 * np.pi / 3)])
    micrograph, truth, _ = synthetic((300, 300), 0.08, a, b, [(1 / 3, 2 / 3), (2 / 3, 1 / 3)], [1, 1],
                                     sigma_A=0.3, dose=50.0)
    recall, precision, rmse_px = _scores(detect_columns(micrograph), micrograph, truth)
    assert recall == precision == 1.0 and rmse_px < 0.3


def test_bad_input_raises_user_errors():
    micrograph, *_ = perovskite(shape=(64, 64), dose=None)
    with pytest.raises(AutomatError, match="2D"):
        detect_columns(Micrograph(np.stack([micrograph.data] * 2), micrograph.pixel_size_A))
    with pytest.raises(AutomatError, match="signal"):
        detect_columns(micrograph, signal="EELS")
    with pytest.raises(AutomatError, match="pixels"):
        detect_columns(micrograph, min_separation_A=0.05)
    with pytest.raises(AutomatError, match="constant"):
        detect_columns(Micrograph(np.ones((64, 64)), (0.1, 0.1)))
    noise = np.random.default_rng(0).normal(size=(128, 128))
    with pytest.raises(AutomatError, match="periodicity"):
        detect_columns(Micrograph(noise, (0.1, 0.1)))


def test_progress_reported_and_cancellable():
    from napari_automat.model import Cancelled

    micrograph, *_ = perovskite(shape=(128, 128), dose=None)
    seen = []
    detect_columns(micrograph, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)

    def cancel(fraction, message):
        if fraction > 0.3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        detect_columns(micrograph, progress=cancel)


@pytest.mark.parametrize("signal,polarity", [("HAADF", 1), ("ADF", 1), ("iDPC", None), ("DPC", None),
                                             ("annular dark field", 1),
                                             ("ABF", -1), ("BF", -1), ("Bright field", -1), ("auto", None),
                                             ("STEM", None), (None, None)])
def test_signal_names(signal, polarity):
    from napari_automat.detect.signal import column_polarity

    assert column_polarity(signal) == polarity


def test_thousands_of_columns_in_a_large_image():
    """Detection and refinement of ~3000 columns in a 1024² image find every column (the speed,
    seconds per 1000 columns, is a benchmark figure: metrics.json ``detection``)."""
    micrograph, truth, _ = perovskite(shape=(1024, 1024), pixel_A=0.15, dose=100.0)
    columns = detect_columns(micrograph)
    recall, precision, rmse_px = _scores(columns, micrograph, truth)
    assert recall == precision == 1.0 and rmse_px * 15 < 3.0  # pm

@pytest.mark.parametrize("signal, metadata, light", [
    ("ABF", None, True), ("BF", None, True), ("iDPC", None, True), ("HAADF", None, False),
    ("auto", "ABF", True), ("auto", "HAADF", False), ("auto", None, None), (None, "LAABF", True)])
def test_light_column_signals(signal, metadata, light):
    from napari_automat.detect.signal import shows_light_columns

    micrograph, _, _ = perovskite(dose=None)
    micrograph.metadata["signal"] = metadata
    assert shows_light_columns(signal, micrograph) is light
