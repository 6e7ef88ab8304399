"""Denoising: Bragg filter on lattices, NLM otherwise; PSNR gain, no column shifts, automatic choice."""


import numpy as np
import pytest
from scipy import ndimage

from napari_automat.denoise import choose_method, denoise
from napari_automat.model import AutomatError, Micrograph


@pytest.fixture(scope="module")
def srtio3():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


@pytest.fixture(scope="module")
def pair(srtio3):
    """(clean, noisy) incoherent SrTiO3 [001], rotated 7°, 0.15 Å/px, low dose; clean scaled to counts."""
    from napari_automat.simulate import incoherent_image

    kw = dict(pixel_size_A=0.15, field_of_view_A=40.0, rotation_deg=7.0)
    clean = incoherent_image(srtio3, **kw)
    noisy = incoherent_image(srtio3, dose=1000.0, seed=4, **kw)
    return clean.with_data(clean.data * (noisy.data.mean() / clean.data.mean())), noisy


def psnr(image, reference):
    return 10 * np.log10(np.ptp(reference) ** 2 / np.mean((image - reference) ** 2))


def blobs(seed=0, shape=(256, 256)):
    rng = np.random.default_rng(seed)
    field = np.zeros(shape)
    field[tuple(rng.integers(0, shape[0], (2, 120)))] = 1.0
    field = ndimage.gaussian_filter(field, 3) * 3000
    return rng.poisson(field + 5).astype(float)


def maxima(image, min_distance=5, rel=0.3):
    """Sub-pixel local maxima (3-point log parabolas), away from the edges."""
    img = np.asarray(image, float)
    peaks = (img == ndimage.maximum_filter(img, size=2 * min_distance + 1)) & (img > rel * img.max())
    peaks[:8] = peaks[-8:] = False
    peaks[:, :8] = peaks[:, -8:] = False
    log = np.log(np.maximum(img - img.min(), 1e-9) + 1e-3 * np.ptp(img))
    out = []
    for y, x in np.argwhere(peaks):
        fy, fx = log[y - 1:y + 2, x], log[y, x - 1:x + 2]
        out.append([y + 0.5 * (fy[0] - fy[2]) / (fy[0] - 2 * fy[1] + fy[2]),
                    x + 0.5 * (fx[0] - fx[2]) / (fx[0] - 2 * fx[1] + fx[2])])
    return np.array(out)


def test_fourier_filter_improves_psnr(pair):
    clean, noisy = pair
    out, info = denoise(noisy, "fourier")
    before, after = psnr(noisy.data, clean.data), psnr(out.data, clean.data)
    print(f"Bragg filter PSNR {before:.1f} -> {after:.1f} dB ({info['n_bragg_peaks']} peaks)")
    assert after > before + 5
    assert info["method"] == "fourier" and info["n_bragg_peaks"] >= 8
    assert out.pixel_size_A == noisy.pixel_size_A and out.calibrated and out.data.dtype == np.float32
    assert out.metadata["denoised"] == "fourier"
    # Poisson noise: RMS = sqrt(mean count)
    assert info["sigma_noise_estimate"] == pytest.approx(np.sqrt(noisy.data.mean()), rel=0.2)


def test_nlm_and_gaussian_improve_psnr_on_blobs():
    rng = np.random.default_rng(2)
    field = np.zeros((256, 256))
    field[tuple(rng.integers(0, 256, (2, 120)))] = 1.0
    clean = ndimage.gaussian_filter(field, 3) * 3000 + 5
    noisy = Micrograph(rng.poisson(clean).astype(np.float32), (0.15, 0.15), True)
    before = psnr(noisy.data, clean)
    for method, gain in (("nlm", 4.0), ("gaussian", 1.0)):
        out, info = denoise(noisy, method)
        assert info["method"] == method
        print(f"{method} PSNR {before:.1f} -> {psnr(out.data, clean):.1f} dB")
        assert psnr(out.data, clean) > before + gain, method


def test_denoising_does_not_move_columns(pair):
    clean, noisy = pair
    truth = maxima(clean.data)
    assert len(truth) > 50
    out, _ = denoise(noisy, "fourier")
    found = maxima(out.data)
    d = found[:, None, :] - truth[None]
    nearest = np.argmin(np.sum(d ** 2, axis=2), axis=1)
    err = found - truth[nearest]
    ok = np.sum(err ** 2, axis=1) < 1.0
    assert ok.sum() > 0.9 * len(truth)
    assert np.all(np.abs(err[ok].mean(axis=0)) < 0.03)  # no systematic shift [px]
    assert np.sqrt(np.mean(np.sum(err[ok] ** 2, axis=1))) < 0.15


def test_auto_choice(pair):
    _, noisy = pair
    method, score = choose_method(noisy.data)
    assert method == "fourier" and score > 0.5
    method, score = choose_method(blobs())
    assert method == "nlm" and score < 0.1
    method, _ = choose_method(np.random.default_rng(1).normal(size=(128, 128)))
    assert method == "nlm"
    out, info = denoise(Micrograph(blobs(1)), "auto")
    assert info["method"] == "nlm" and info["n_bragg_peaks"] < 4


def test_strength_scales_the_filtering(pair):
    _, noisy = pair
    smoothness = []
    for strength in (0.5, 1.0, 3.0):
        out, _ = denoise(noisy, "fourier", strength=strength)
        smoothness.append(np.abs(np.diff(out.data, axis=1)).mean())
    assert smoothness[0] > smoothness[1] > smoothness[2]


def test_none_stacks_and_errors(pair):
    _, noisy = pair
    out, info = denoise(noisy, "none")
    assert np.array_equal(out.data, noisy.data) and info["method"] == "none"
    stack = Micrograph(np.stack([noisy.data, noisy.data[::-1]]), (0.15, 0.15), True)
    out, info = denoise(stack, "gaussian")
    assert out.shape == stack.shape and len(info["frames"]) == 2
    assert np.allclose(out.data[1], out.data[0][::-1], atol=1e-3 * noisy.data.max())
    with pytest.raises(AutomatError):
        denoise(noisy, "median")
    with pytest.raises(AutomatError):
        denoise(noisy, "auto", strength=0)
    with pytest.raises(AutomatError):
        denoise(Micrograph(np.full((16, 16), np.nan)), "gaussian")
    out, info = denoise(Micrograph(blobs()), "fourier")  # no lattice: falls back, and says so
    assert info["method"] == "nlm" and "warning" in info


def test_1024_lattice_image_gets_the_bragg_filter(srtio3):
    from napari_automat.simulate import incoherent_image

    big = incoherent_image(srtio3, pixel_size_A=0.1, field_of_view_A=102.4, rotation_deg=3, dose=2e3, seed=0)
    assert big.shape == (1024, 1024)
    _, info = denoise(big, "auto")
    assert info["method"] == "fourier"
