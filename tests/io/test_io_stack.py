"""Frame stacks: registration (rigid + slow-scan bands), outlier frames, the average, and the pipeline's read stage."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_automat.io.stack import average_frames, average_registered, register_frames
from napari_automat.model import AutomatError, Micrograph

PERIOD_PX = 16.0
GARBAGE = 5


def _lattice(h, w, field, peak=3.0, background=1.0, sigma=2.0):
    """Expected counts of a square lattice (period PERIOD_PX) of Gaussian columns with a weaker column at the
    cell centre; ``field`` (h, 2): displacement (dy, dx) [px] of the content in each row."""
    y, x = np.mgrid[:h, :w].astype(float)
    y, x = y - field[:, :1], x - field[:, 1:]
    image = np.full((h, w), background)
    for cy in np.arange(-2 * PERIOD_PX, h + 2 * PERIOD_PX, PERIOD_PX):
        for cx in np.arange(-2 * PERIOD_PX, w + 2 * PERIOD_PX, PERIOD_PX):
            for dy, dx, height in ((3.3, 5.1, peak), (3.3 + PERIOD_PX / 2, 5.1 + PERIOD_PX / 2, 0.4 * peak)):
                image += height * np.exp(-((y - cy - dy) ** 2 + (x - cx - dx) ** 2) / (2 * sigma ** 2))
    return image


def _series(n=12, h=192, w=224, seed=0):
    """Low-dose (Poisson, ~4 counts at a column) frames, each displaced by a random drift of up to 3 px plus
    a slow-scan drift linear in y (up to 1.5 px over the frame); frame GARBAGE is a blank scan (noise only).
    Returns the frames and the true displacement fields (n, h, 2) [px]."""
    rng = np.random.default_rng(seed)
    rows = np.arange(h)[:, None] / (h - 1) - 0.5
    fields = np.stack([rng.uniform(-3, 3, 2) + rows * rng.uniform(-1.5, 1.5, 2) for _ in range(n)])
    frames = np.stack([rng.poisson(_lattice(h, w, f)).astype(float) for f in fields])
    frames[GARBAGE] = rng.poisson(frames.mean(), (h, w))
    return frames, fields


@pytest.fixture(scope="module")
def series():
    return _series()


def _misalignment(truth, registration):
    """RMS over the used frames and rows of the content displacement left after registration, about its mean [px]."""
    net = (truth + registration.shifts_px)[registration.used]
    return float(np.sqrt(np.mean(np.sum((net - net.mean(axis=0)) ** 2, axis=-1))))


def _lattice_scatter(image):
    """Median distance [px] of the brightest columns (sub-pixel peaks of the smoothed image) from the best affine
    lattice through them: how far from the truth a simple peak finder puts the columns."""
    from skimage.feature import peak_local_max

    smooth = gaussian_filter(image, 1.5)
    peaks = peak_local_max(smooth, min_distance=int(0.75 * PERIOD_PX), exclude_border=int(PERIOD_PX / 2))
    refined = []
    for py, px in peaks:
        patch = smooth[py - 2:py + 3, px - 2:px + 3]
        weight = patch - patch.min()
        yy, xx = np.mgrid[-2:3, -2:3]
        refined.append((py + (weight * yy).sum() / weight.sum(), px + (weight * xx).sum() / weight.sum()))
    refined = np.array(refined)
    centre = refined[np.argmin(np.sum((refined - np.median(refined, axis=0)) ** 2, axis=1))]
    design = np.c_[np.round((refined - centre) / PERIOD_PX), np.ones(len(refined))]
    coef = np.linalg.lstsq(design, refined, rcond=None)[0]
    return float(np.median(np.sqrt(np.sum((refined - design @ coef) ** 2, axis=1))))


def test_registration_aligns_the_frames_and_leaves_out_the_blank_one(series):
    frames, truth = series
    registration = register_frames(frames)
    assert np.flatnonzero(~registration.used).tolist() == [GARBAGE]
    assert registration.correlation[GARBAGE] < 0.1 < 0.5 < np.median(registration.correlation)
    assert _misalignment(truth, registration) < 0.25
    assert registration.residual_drift_px < 0.25


def test_slow_scan_bands_remove_what_rigid_registration_leaves(series):
    frames, truth = series
    rigid = _misalignment(truth, register_frames(frames, bands=1))
    banded = _misalignment(truth, register_frames(frames, bands=3))
    assert banded < 0.5 * rigid and banded < 0.25


def test_average_is_less_noisy_than_one_frame_and_sharper_than_a_plain_mean(series):
    frames, _ = series
    registration = register_frames(frames)
    average, origin = average_registered(frames, registration)
    assert average.shape[0] >= frames.shape[1] - 12 and average.shape[1] >= frames.shape[2] - 12
    assert all(0 <= v <= 6 for v in origin)
    single = np.median([_lattice_scatter(frames[k]) for k in (0, 1, 2)])
    assert _lattice_scatter(average) < 0.5 * single
    plain = frames[registration.used].mean(axis=0)  # the same frames, not registered: drift blurs the columns
    assert gaussian_filter(average, 1.0).std() > 1.2 * gaussian_filter(plain, 1.0).std()  # column contrast


def test_average_frames_records_what_was_done(series):
    frames, _ = series
    progress = []
    m = average_frames(Micrograph(frames, (0.25, 0.25), True, "stack.tif", {"signal": "HAADF"}),
                       lambda f, msg="": progress.append(f))
    assert m.data.ndim == 2 and m.pixel_size_A == (0.25, 0.25) and m.calibrated
    md = m.metadata
    assert md["frames_total"] == 12 and md["frames_used"] == 11 and md["frames_left_out"] == [GARBAGE]
    assert 0 < md["residual_drift_px"] < 0.25 and md["frame"] is None and md["signal"] == "HAADF"
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_frames_that_do_not_correlate_are_an_error():
    rng = np.random.default_rng(3)
    with pytest.raises(AutomatError, match="do not correlate.*--frame"):
        register_frames(rng.poisson(5.0, (4, 192, 224)).astype(float))


def test_pipeline_averages_a_stack_file_and_reports_it(tmp_path, series):
    from napari_automat.config import PipelineConfig
    from napari_automat.io.write import write_tiff_calibrated
    from napari_automat.pipeline import run

    frames, _ = series
    path = write_tiff_calibrated(tmp_path / "stack.tif", frames, 0.25)
    config = PipelineConfig(energy_model="none", denoise_method="none")
    block = run(path, config, stop_after="detect").to_dict()["input"]
    assert block["frames_total"] == 12 and block["frames_used"] == 11 and block["frame"] is None
    assert 0 < block["residual_drift_px"] < 0.25 and len(block["shape"]) == 2
    one = run(path, config.replace(frame=3), stop_after="detect").to_dict()["input"]
    assert one["frame"] == 3 and "frames_used" not in one and one["shape"] == [192, 224]


def test_cli_frame_option():
    from napari_automat.cli import _config, _parser

    def frame(*extra):
        return _config(_parser().parse_args(["run", "x.tif", "-o", "out", *extra])).frame

    assert frame() is None and frame("--frame", "average") is None and frame("--frame", "2") == 2
    with pytest.raises(SystemExit):
        frame("--frame", "first")
