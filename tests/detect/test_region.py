"""Where the crystal is: the periodicity map (detect.region), the user ROI and the automatic
restriction to the crystalline region in the pipeline."""

import argparse

import numpy as np
import pytest
from detect_synth import lattice_points, match, perovskite, render
from scipy import ndimage

from napari_automat.config import PipelineConfig
from napari_automat.detect.region import crystalline_region
from napari_automat.model import AutomatError, Micrograph
from napari_automat.pipeline import run

A_A = 4.0  # square cell, bright (0, 0) and dim (½, ½) columns: primitive period a/√2


def nanoparticle(shape=(512, 512), pixel_A=0.2, radius_A=15.0, centre=(0.45, 0.55), dose=200, seed=0):
    """A 3 nm disc of Gaussian columns on a thick field of smoothed-noise amorphous support;
    returns the micrograph, the true disc mask and the true column positions [px]."""
    rng = np.random.default_rng(seed)
    pos, site = lattice_points(shape, pixel_A, (A_A, 0), (0, A_A), [(0, 0), (0.5, 0.5)], origin_px=(3.3, 5.7))
    c = np.array(centre) * np.array(shape)
    inside = np.hypot(*(pos - c).T) <= radius_A / pixel_A
    img = render(shape, pos[inside], np.array([1.0, 0.5])[site[inside]], 0.45 / pixel_A, background=0.0)
    amorphous = ndimage.gaussian_filter(rng.standard_normal(shape), 0.8 / pixel_A)
    img = rng.poisson(np.clip(img + 0.3 + 0.25 * amorphous / amorphous.std(), 0, None) * dose) / dose
    disc = np.hypot(*(np.mgrid[:shape[0], :shape[1]] - c[:, None, None])) <= radius_A / pixel_A
    return Micrograph(img, (pixel_A, pixel_A), True, path="nanoparticle"), disc, pos[inside]


def test_mask_covers_the_nanoparticle():
    mg, disc, _ = nanoparticle()
    region = crystalline_region(mg.data)
    iou = (region.mask & disc).sum() / (region.mask | disc).sum()
    assert iou > 0.7
    assert region.fraction == pytest.approx(disc.mean(), abs=0.03)
    y0, y1, x0, x1 = region.bbox
    ys, xs = np.nonzero(disc)
    assert y0 <= ys.min() + 10 and y1 >= ys.max() - 10 and x0 <= xs.min() + 10 and x1 >= xs.max() - 10


def test_whole_field_lattice_and_pure_noise():
    mg, _, _ = perovskite(shape=(384, 384))
    assert crystalline_region(mg.data).fraction > 0.98
    noise = ndimage.gaussian_filter(np.random.default_rng(2).standard_normal((384, 384)), 3)
    assert crystalline_region(noise).fraction < 0.05


def test_pipeline_finds_the_lattice_only_in_the_crystal(tmp_path):
    mg, disc, truth = nanoparticle()
    with pytest.raises(AutomatError, match="no lattice"):
        run(mg, PipelineConfig(crystal_region=False), stop_after="lattice")
    result = run(mg, PipelineConfig(), stop_after="lattice")
    assert min(abs(result.lattice.a_A - A_A / np.sqrt(2)), abs(result.lattice.a_A - A_A)) < 0.05
    assert any("the crystal covers 8% of the field; analysed that region only" in w for w in result.warnings)
    d = result.to_dict()
    assert d["input"]["roi_source"] == "crystal" and d["input"]["crystalline_fraction"] < 0.15
    assert d["input"]["full_shape"] == [512, 512] and "crystal_mask" not in d["input"]["metadata"]
    found = np.loadtxt(result.save(tmp_path)["columns"], delimiter=",", skiprows=1, usecols=(0, 1))
    assert np.allclose(found, result.columns.positions_px + d["input"]["roi"][::2])  # full-image frame
    assert np.allclose(d["lattice2d"]["origin_px"], np.asarray(result.lattice.origin_px) + d["input"]["roi"][::2])
    recall, precision, dist, _, _ = match(found, truth, 2.0)
    assert recall > 0.95 and np.median(dist) < 1.0
    assert precision > 0.75  # the extras are support maxima in the mask's rim, ~10 px outside the disc


def test_user_roi_crops_and_reports_full_image_positions(tmp_path):
    mg, truth, _ = perovskite(shape=(256, 256))
    roi = (120, 250, 30, 160)
    result = run(mg, PipelineConfig(roi=roi), stop_after="detect")
    assert result.micrograph.shape == (130, 130) and result.micrograph.pixel_size_A == mg.pixel_size_A
    paths = result.save(tmp_path)
    d = result.to_dict()
    assert d["input"]["roi"] == list(roi) and d["input"]["roi_source"] == "user"
    assert "crystalline_fraction" not in d["input"]
    found = np.loadtxt(paths["columns"], delimiter=",", skiprows=1, usecols=(0, 1))
    assert np.allclose(found, result.columns.positions_px + (roi[0], roi[2]))
    inside = truth[(truth[:, 0] > roi[0] + 3) & (truth[:, 0] < roi[1] - 4)
                   & (truth[:, 1] > roi[2] + 3) & (truth[:, 1] < roi[3] - 4)]
    recall, _, dist, _, _ = match(found, inside, 1.5)
    assert recall > 0.95 and np.median(dist) < 0.5


@pytest.mark.parametrize("roi, message", [((0, 300, 0, 100), "outside"), ((50, 50, 0, 100), "empty"),
                                          ((0, 10.5, 0, 100), "whole pixel"), ((0, 10), "whole pixel")])
def test_bad_roi_is_a_clear_error(roi, message):
    mg, _, _ = perovskite(shape=(128, 128))
    with pytest.raises(AutomatError, match=message):
        run(mg, PipelineConfig(roi=roi), stop_after="denoise")


def test_cli_roi_option():
    from napari_automat.cli import _config, _parser, _roi

    args = _parser().parse_args(["run", "x.tif", "-o", "out", "--roi", "10:200,20:220"])
    assert _config(args).roi == (10, 200, 20, 220)
    assert _config(_parser().parse_args(["batch", "in", "-o", "out", "--roi", "0:5,1:6"])).roi == (0, 5, 1, 6)
    with pytest.raises(argparse.ArgumentTypeError):
        _roi("10-200,20-220")


def test_cli_run_with_roi(tmp_path, capsys):
    import json

    from napari_automat.cli import main
    from napari_automat.io.datasets import sample_path

    if not sample_path("srtio3").exists():
        pytest.skip("bundled sample not generated yet")
    out = tmp_path / "roi"
    assert main(["run", "--sample", "srtio3", "-o", str(out), "--elements", "Sr,Ti,O", "--energy-model", "none",
                 "--roi", "64:256,32:224", "-q"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["input"]["roi"] == [64, 256, 32, 224] and result["input"]["shape"] == [192, 192]
    assert result["structure"]["reduced_formula"] == "SrTiO3"
    yx = np.loadtxt(out / "columns.csv", delimiter=",", skiprows=1, usecols=(0, 1))
    assert yx[:, 0].min() >= 64 and yx[:, 1].min() >= 32 and yx[:, 0].max() < 256 and yx[:, 1].max() < 224
    assert main(["run", "--sample", "srtio3", "-o", str(tmp_path / "bad"), "--roi", "0:300,0:100", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("automat: error: the ROI") and len(err.splitlines()) == 1
