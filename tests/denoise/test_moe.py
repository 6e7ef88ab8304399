"""The learned mixture-of-experts denoiser: the shipped weights on small images, its defect and
no-hallucination properties, the tiling, the missing-extra message, and a few training steps."""

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_automat.bench.metrics import psnr_dB
from napari_automat.denoise import denoise, spectrum
from napari_automat.denoise import moe
from napari_automat.extras import MissingExtra
from napari_automat.model import Micrograph
from napari_automat.simulate.incoherent import gaussian_columns

pytest.importorskip("torch")

#: Pixel size of the test lattices [Å]: 26 px per 3.9 Å cell, 7 cells across 192 px.
PIXEL_A = 0.15


def _lattice(n=192, pixel_A=PIXEL_A, a_A=3.9, sigma_A=0.34, defects=()):
    """Square lattice of columns (weight 1), with ``defects`` ``(index, factor)``; returns (clean, positions, weights)."""
    a = a_A / pixel_A
    g = np.arange(a / 2, n, a)
    pos = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    w = np.ones(len(pos))
    for i, f in defects:
        w[i] *= f
    return gaussian_columns((n, n), pos, w, sigma_A / pixel_A) + 0.05, pos, w


def _counts(clean, dose, pixel_A, seed):
    lam = clean / clean.mean() * dose * pixel_A ** 2
    return np.random.default_rng(seed).poisson(lam).astype(np.float32), lam


def _site(img, pos, r=2.5):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return float(img[(yy - pos[0]) ** 2 + (xx - pos[1]) ** 2 <= r * r].mean())


def _run(img, method, pixel_A=PIXEL_A):
    out, info = denoise(Micrograph(img, (pixel_A, pixel_A), True), method)
    return np.asarray(out.data, float), info


def test_shipped_weights_and_card_are_in_the_package():
    assert moe.weights_path().exists()
    assert moe.weights_path().stat().st_size < 20e6
    card = moe.model_card()
    assert card["architecture"]["n_experts"] >= 2 and card["training"]["steps"] > 0


def test_moe_denoises_a_noisy_lattice_better_than_the_classical_filters():
    clean, _, _ = _lattice()
    noisy, lam = _counts(clean, 1e3, PIXEL_A, seed=1)
    out, info = _run(noisy, "moe")
    assert info["method"] == "moe" and out.shape == noisy.shape and np.all(np.isfinite(out))
    assert psnr_dB(out, lam) > psnr_dB(noisy, lam) + 6
    for method in ("gaussian", "nlm", "fourier"):
        assert psnr_dB(out, lam) > psnr_dB(_run(noisy, method)[0], lam) + 2, method


def test_vacancy_and_substitution_are_kept_where_the_bragg_filter_fills_them_in():
    # a vacancy and a brighter (substituted) column in the middle of a 7x7 lattice
    n = 192
    _, pos, _ = _lattice(n)
    centre = np.argsort(np.linalg.norm(pos - n / 2, axis=1))
    vac, sub = centre[0], centre[5]
    clean, _, _ = _lattice(n, defects=[(vac, 0.0), (sub, 1.8)])
    noisy, lam = _counts(clean, 3e3, PIXEL_A, seed=3)
    column = _site(lam, pos[centre[2]]) - _site(lam, pos[vac])  # contrast of a perfect column
    outs = {m: _run(noisy, m)[0] for m in ("moe", "fourier")}
    for site in (vac, sub):
        truth = _site(lam, pos[site])
        assert abs(_site(outs["moe"], pos[site]) - truth) < 0.2 * column
        assert abs(_site(outs["fourier"], pos[site]) - truth) > 0.2 * column


def _amorphous(n=192, pixel_A=0.1, seed=0):
    """Random columns at least 1.4 Å apart (a hard-core point process): no lattice."""
    rng = np.random.default_rng(seed)
    pts = []
    for p in rng.uniform(0, n, (3000, 2)):
        if not pts or np.min(np.linalg.norm(np.asarray(pts) - p, axis=1)) > 1.4 / pixel_A:
            pts.append(p)
    return gaussian_columns((n, n), np.array(pts), rng.uniform(0.3, 1, len(pts)), 0.34 / pixel_A) + 0.05


@pytest.mark.parametrize("kind", ["noise", "amorphous"])
def test_no_lattice_is_hallucinated(kind):
    rng = np.random.default_rng(7)
    if kind == "noise":
        noisy = rng.poisson(20.0, (192, 192)).astype(np.float32)
    else:
        noisy, _ = _counts(_amorphous(), 3e3, 0.1, seed=8)
    out, _ = _run(noisy, "moe")
    before, after = spectrum.analyse(noisy), spectrum.analyse(out)
    # a lattice image scores near 1 (the decision threshold is 0.3); pure noise ~0
    assert after.periodicity_score < 0.15, (before.periodicity_score, after.periodicity_score)
    assert not (after.two_dimensional and after.periodicity_score >= 0.3)


def test_any_size_no_seams_and_units_kept():
    # not a multiple of the tile, smaller than one tile along y; fraction units (not counts)
    clean = _lattice(300)[0][:90, :300] / 10.0
    noisy = (clean + np.random.default_rng(2).normal(0, 0.01, clean.shape)).astype(np.float32)
    out = moe.denoise_moe(noisy)
    assert out.shape == noisy.shape
    assert abs(out.mean() - clean.mean()) < 0.05 * clean.std() + 0.01
    assert psnr_dB(out, clean) > psnr_dB(noisy, clean) + 5
    # seams: the error along tile boundaries (x = 112..128, where tiles overlap) is no worse than elsewhere
    err = np.abs(out - clean).mean(axis=0)
    assert err[108:132].mean() < 1.5 * err.mean()


def test_stack_is_denoised_frame_by_frame():
    clean, _, _ = _lattice(128)
    stack = np.stack([_counts(clean, 1e4, PIXEL_A, seed=s)[0] for s in (1, 2)])
    out, info = denoise(Micrograph(stack, (PIXEL_A, PIXEL_A), True), "moe")
    assert out.data.shape == stack.shape and len(info["frames"]) == 2


def test_strength_zero_returns_the_input_units():
    noisy, _ = _counts(_lattice(128)[0], 1e4, PIXEL_A, seed=4)
    out = moe.denoise_moe(noisy, strength=0.0)
    np.testing.assert_allclose(out, noisy, atol=0.02 * noisy.std() + 1e-3)


def test_missing_torch_is_a_one_line_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr(moe, "_CACHE", {})
    with pytest.raises(MissingExtra) as info:
        denoise(Micrograph(np.ones((32, 32), np.float32), (0.1, 0.1), True), "moe")
    assert "\n" not in str(info.value) and "[denoise]" in str(info.value)


def test_importing_the_denoiser_does_not_import_torch():
    code = "import sys, napari_automat.denoise, napari_automat.denoise.moe; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_runs_a_few_steps_and_the_weights_load(tmp_path):
    from napari_automat.denoise.train import train

    out = tmp_path / "tiny.pt"
    card = train(out, minutes=5, seed=1, n_experts=2, channels=4, batch=2, n_column=6, n_abtem=0,
                 max_steps=3, progress=lambda m: None)
    assert card["training"]["steps"] == 3 and np.isfinite(card["training"]["final_mse_normalised"])
    assert json.loads(out.with_suffix(".json").read_text())["architecture"]["channels"] == 4
    noisy, _ = _counts(_lattice(64)[0], 1e4, PIXEL_A, seed=5)
    result, gate = moe.denoise_moe(noisy, weights=out, return_gate=True)
    assert result.shape == noisy.shape and np.all(np.isfinite(result))
    assert gate.shape == (2,) and abs(gate.sum() - 1) < 1e-5


def test_cli_train_refuses_a_bad_time_budget(capsys):
    from napari_automat.cli import main

    assert main(["denoise", "train", "--out", "x.pt", "--minutes", "0"]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err
