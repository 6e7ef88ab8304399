"""The learned denoiser: a mixture of experts trained on the project's own simulations.

``K`` small residual U-Nets (the experts) and a gate that gives each 128-pixel tile soft weights from
a learned encoding of the tile and four conditioning features of the whole image (estimated dose,
contrast over noise, lattice period in pixels, periodicity score). Besides the tile, every expert
sees the Bragg-filtered image (:func:`guide`): the periodic average over the whole field, which the
network keeps where the data agree with it and overrides where they do not (vacancies,
substitutions, interfaces, amorphous parts). The image is first normalised so
the network always sees unit noise:

- detector counts (non-negative whole numbers): Anscombe transform, then centred and divided by
  the robust (MAD) noise level of the transformed image;
- anything else (gain-scaled counts, fractions, iDPC with zero mean): centred on the median and
  divided by the robust noise level;
- in both, the scale is at least 1/:data:`MAX_RANGE` of the signal range (nearly noise-free images).

The output is mapped back to the input's units. Tiles overlap by :data:`OVERLAP` pixels and are
blended with raised-cosine ramps, so no seams show; only each tile's :data:`TOP_K` best experts
run. torch is imported here only, inside functions (the ``[denoise]`` extra).

The weights ship in ``napari_automat/data/denoiser/`` with a JSON model card; ``automat denoise
train`` (:mod:`.train`) reproduces them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..model import AutomatError
from . import classical, spectrum

#: Tile size [px] (a multiple of 4) and overlap between neighbouring tiles [px].
TILE = 128
OVERLAP = 16
#: Experts evaluated per tile at inference (the gate's best ones, weights renormalised).
TOP_K = 2
#: Tiles per network call.
BATCH = 16
#: File names of the shipped weights and model card inside ``napari_automat/data/denoiser``.
WEIGHTS_FILE = "moe.pt"
CARD_FILE = "moe.json"
N_COND = 4
#: Largest signal range (0.5–99.5 percentiles) in units of the normalisation scale: images with less
#: noise than that are scaled by their range instead (the network then sees noise below one).
MAX_RANGE = 50.0

_CACHE: dict = {}


@dataclass
class Normalisation:
    """How an image was mapped to unit noise: ``counts`` (Anscombe first), ``offset`` and ``scale``."""

    counts: bool
    offset: float
    scale: float

    def forward(self, image: np.ndarray) -> np.ndarray:
        x = classical.anscombe(image) if self.counts else np.asarray(image, dtype=float)
        return (x - self.offset) / self.scale

    def target(self, clean: np.ndarray) -> np.ndarray:
        """The clean image in the same space (training target): expected counts through the same
        transform, so that :meth:`inverse` is its exact algebraic inverse."""
        return self.forward(clean)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=float) * self.scale + self.offset
        if self.counts:
            return np.maximum(0.25 * np.maximum(x, 0.0) ** 2 - 0.375, 0.0)
        return x


def normalisation(image: np.ndarray, counts: bool | None = None) -> Normalisation:
    """The unit-noise normalisation of ``image`` (``counts`` None: decided by ``looks_like_counts``)."""
    img = np.asarray(image, dtype=float)
    counts = classical.looks_like_counts(img) if counts is None else bool(counts)
    x = classical.anscombe(img) if counts else img
    sigma = classical.estimate_sigma(x)
    lo, hi = np.percentile(x, [0.5, 99.5])
    # nearly noise-free images: the scale is capped so that the signal spans at most MAX_RANGE units
    sigma = max(sigma, float(hi - lo) / MAX_RANGE, 1e-12)
    if counts:  # Anscombe noise is about one; the MAD of mostly-zero counts (< 1 per pixel) is not
        sigma = max(sigma, 0.5)
    return Normalisation(counts, float(np.median(x)), float(sigma))


def conditioning(image: np.ndarray, norm: Normalisation, analysis: spectrum.BraggAnalysis | None = None) -> np.ndarray:
    """The gate's explicit features of a whole image, each of order one.

    ``[dose, contrast, sampling, periodicity]``: ``log10(1 + N)/3`` with ``N = (mean/σ)²`` the counts
    per pixel a Poisson image of that mean and noise would hold (gain-invariant; 0 for zero-mean
    signals); ``log10`` of the 1–99 % range over the noise, halved; ``log2(period/16 px)/2`` for the
    shortest lattice period in the spectrum (0 without Bragg peaks); the periodicity score.
    """
    img = np.asarray(image, dtype=float)
    raw_sigma = max(classical.estimate_sigma(img), 1e-12)
    mean = float(img.mean())
    dose = math.log10(1.0 + (mean / raw_sigma) ** 2) / 3.0 if mean > 0 else 0.0
    lo, hi = np.percentile(norm.forward(img), [1, 99])
    contrast = 0.5 * math.log10(max(float(hi - lo), 1e-3))
    if analysis is None:
        analysis = spectrum.analyse(img)
    sampling = 0.0
    if len(analysis.peaks_k):
        period_px = 1.0 / float(np.min(np.linalg.norm(analysis.peaks_k, axis=1)))
        sampling = 0.5 * math.log2(period_px / 16.0)
    return np.array([dose, contrast, sampling, float(analysis.periodicity_score)], dtype=np.float32)


def guide(x: np.ndarray, analysis: spectrum.BraggAnalysis) -> np.ndarray:
    """The experts' second channel: the Bragg-filtered (normalised) image when the spectrum shows a 2D
    lattice, else the image itself (no periodic information is given to the network)."""
    if len(analysis.peaks_k) and analysis.two_dimensional:
        return spectrum.bragg_filter(x, analysis).astype(np.float32)
    return np.asarray(x, dtype=np.float32)


def weights_path() -> Path:
    """The shipped weights file."""
    return Path(str(resources.files("napari_automat") / "data" / "denoiser" / WEIGHTS_FILE))


def model_card(path: str | Path | None = None) -> dict:
    """The JSON model card next to the weights (``path``: a weights file; default the shipped one)."""
    p = Path(path) if path is not None else weights_path()
    card = p.with_suffix(".json")
    return json.loads(card.read_text()) if card.exists() else {}


def load_model(path: str | Path | None = None):
    """The network (eval mode, CPU) from a weights file (default: the shipped one); cached."""
    from ..extras import require

    torch = require("denoise", "torch")
    p = Path(path) if path is not None else weights_path()
    key = (str(p), p.stat().st_mtime if p.exists() else None)
    if key in _CACHE:
        return _CACHE[key]
    if not p.exists():
        raise AutomatError(f"no denoiser weights at {p}: train them with `automat denoise train`")
    from ._nets import MixtureOfExperts

    state = torch.load(p, map_location="cpu", weights_only=True)
    config = {k: int(v) for k, v in state.pop("_config").items()} if "_config" in state else {}
    model = MixtureOfExperts(**config)
    model.load_state_dict(state)
    model.eval()
    model = model.to(memory_format=torch.channels_last)
    _CACHE.clear()
    _CACHE[key] = model
    return model


def save_model(model, path: str | Path) -> None:
    """Write the network's weights (float32, with its configuration) to ``path``."""
    import torch

    state = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    state["_config"] = {k: torch.tensor(v) for k, v in model.config.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def denoise_moe(image: np.ndarray, analysis: spectrum.BraggAnalysis | None = None, strength: float = 1.0,
                weights: str | Path | None = None, top_k: int = TOP_K, return_gate: bool = False):
    """Denoise one 2D frame with the mixture of experts; returns the image in the input's units.

    ``strength`` blends the network's output with the input in the normalised space (1: the network
    alone; above 1 is clipped to 1; 0.5: half way). With ``return_gate`` also returns the mean gate
    weight of each expert over the tiles.
    """
    from ..extras import require

    torch = require("denoise", "torch")
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise AutomatError(f"the moe denoiser needs a 2D frame, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise AutomatError("the image contains NaN or infinite values")
    model = load_model(weights)
    if analysis is None:
        analysis = spectrum.analyse(img)
    norm = normalisation(img)
    cond = conditioning(img, norm, analysis)
    x = norm.forward(img).astype(np.float32)
    out, gate = _tiled(model, np.stack([x, guide(x, analysis)]), cond, top_k, torch)
    alpha = float(min(max(strength, 0.0), 1.0))
    out = alpha * out + (1.0 - alpha) * x
    result = norm.inverse(out)
    return (result, gate) if return_gate else result


def _ramp(n: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    w = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    if left:
        w[:overlap] = ramp
    if right:
        w[n - overlap:] = ramp[::-1]
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _tiled(model, x: np.ndarray, cond: np.ndarray, top_k: int, torch) -> tuple[np.ndarray, np.ndarray]:
    """Run the network on overlapping tiles of ``x`` ``(channels, ny, nx)``; blend with cosine ramps."""
    _, ny, nx = x.shape
    # small images: mirror-pad up to one tile
    py, px = max(TILE - ny, 0), max(TILE - nx, 0)
    padded = np.pad(x, ((0, 0), (0, py), (0, px)), mode="symmetric") if (py or px) else x
    hy, hx = padded.shape[1:]
    ys, xs = _starts(hy, TILE, OVERLAP), _starts(hx, TILE, OVERLAP)
    corners = [(y, x0) for y in ys for x0 in xs]
    acc = np.zeros((hy, hx))
    wsum = np.zeros((hy, hx))
    gate_sum = np.zeros(len(model.experts))
    c = torch.from_numpy(np.asarray(cond, dtype=np.float32))[None]
    with torch.inference_mode():
        for i in range(0, len(corners), BATCH):
            chunk = corners[i:i + BATCH]
            tiles = np.stack([padded[:, y:y + TILE, x0:x0 + TILE] for y, x0 in chunk])
            t = torch.from_numpy(np.ascontiguousarray(tiles)).to(memory_format=torch.channels_last)
            out, g = model(t, c.expand(len(chunk), -1), top_k=top_k)
            out = out[:, 0].float().numpy()
            gate_sum += g.sum(0).numpy()
            for (y, x0), o in zip(chunk, out):
                w = _ramp(TILE, OVERLAP, y > 0, y + TILE < hy)[:, None] * _ramp(TILE, OVERLAP, x0 > 0, x0 + TILE < hx)[None]
                acc[y:y + TILE, x0:x0 + TILE] += w * o
                wsum[y:y + TILE, x0:x0 + TILE] += w
    result = acc / np.maximum(wsum, 1e-12)
    return result[:ny, :nx], gate_sum / len(corners)
