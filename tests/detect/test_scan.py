"""Scan distortion: undone on the image, and the chain run again on it (``--correct-scan``)."""

import numpy as np
import pytest

from napari_automat.bench.generate import sheared
from napari_automat.detect.scan import undistort_scan


def test_undistort_inverts_a_sheared_and_stretched_scan():
    rng = np.random.default_rng(0)
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.random((96, 128)), 2)
    distorted, _ = sheared(image, np.zeros((0, 2)), 0.04)
    back = undistort_scan(distorted, 0.04, 0.0)
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(back - image)[inner].max() < 0.2 * np.abs(distorted - image)[inner].max()
    # a stretch along the slow axis: rows 1.05× apart are brought back together
    stretched = ndimage.affine_transform(image, np.diag([1 / 1.05, 1.0]),
                                         offset=(47.5 - 47.5 / 1.05, 0.0), order=3, mode="nearest")
    assert np.abs(undistort_scan(stretched, 0.0, 0.05) - image)[inner].max() < \
        0.2 * np.abs(stretched - image)[inner].max()
    mask = image > np.median(image)
    assert undistort_scan(mask, 0.04, 0.0, order=0).dtype == bool
    assert undistort_scan(np.stack([image, image]), 0.04, 0.0).shape == (2, 96, 128)


@pytest.mark.slow
def test_a_sheared_scan_is_read_undone_and_analysed_again():
    from napari_automat.config import PipelineConfig
    from napari_automat.io.datasets import sample_path
    from napari_automat.io.read import read_micrograph
    from napari_automat.pipeline import run

    m = read_micrograph(sample_path("srtio3"))
    image, _ = sheared(np.asarray(m.data, float), np.zeros((0, 2)), 0.03)
    config = PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none")
    plain = run(m.with_data(image.astype(np.float32)), config)
    dist = plain.calibration["scan_distortion"]
    assert dist["shear"] == pytest.approx(0.03, abs=0.004) and abs(dist["aspect"]) < 0.005
    assert any("scan appears sheared by +3.0%" in w for w in plain.warnings)
    fixed = run(m.with_data(image.astype(np.float32)), config.replace(correct_scan=True))
    again = fixed.calibration["scan_distortion"]
    assert again["corrected"]["shear"] == pytest.approx(dist["shear"])
    assert abs(again["shear"]) < 0.004 and not any("scan appears" in w for w in fixed.warnings)
    assert any("scan distortion undone" in w for w in fixed.warnings)
    assert fixed.reconstruction.structure.composition.reduced_formula == "SrTiO3"


def test_real_drifting_scan_is_squared_by_the_correction(data_dir):
    # ncempy's SrTiO3 HAADF (ser): measured 4.02 × 4.07 Å at 91.2°, which cubic SrTiO3 cannot be;
    # the scan is read as sheared by about -2% and 1.2% long along y, and undone it gives a square cell.
    from napari_automat.config import PipelineConfig
    from napari_automat.pipeline import run

    image = data_dir / "real" / "ncempy_16_STOimage_1.ser"
    if not image.exists():
        pytest.skip(f"{image.name} not in the data folder")
    config = PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none")
    plain = run(image, config)
    dist = plain.calibration["scan_distortion"]
    assert dist["shear"] < -0.015 and dist["aspect"] > 0.008
    fixed = run(image, config.replace(correct_scan=True))
    lat = fixed.lattice
    assert lat.b_A / lat.a_A == pytest.approx(1.0, abs=0.003) and lat.gamma_deg == pytest.approx(90.0, abs=0.3)
    assert fixed.decision.formula == "SrTiO3" and not any("misfit remains" in w for w in fixed.warnings)
