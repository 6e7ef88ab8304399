"""``denoise``: pick and run a filter for an atomic-resolution image.

Lattice images get the periodic (Bragg) Fourier filter, which averages over unit cells without
moving columns; anything else gets non-local means. The choice comes from the spectrum.
"""

from __future__ import annotations

import numpy as np

from ..config import DENOISE_METHODS as METHODS
from ..model import AutomatError, Micrograph, Progress, no_progress
from . import classical, spectrum

#: Fraction of the structured spectral power in Bragg peaks above which an image counts as a lattice.
PERIODIC_SCORE = 0.3
#: Gaussian filter width at strength 1 [Å] (never below one pixel).
GAUSSIAN_SIGMA_A = 0.15


def choose_method(image: np.ndarray) -> tuple[str, float]:
    """``("fourier", score)`` for a 2D lattice image, else ``("nlm", score)``; score in [0, 1]."""
    analysis = spectrum.analyse(_plane(image))
    return _choice(analysis), analysis.periodicity_score


def denoise(micrograph: Micrograph, method: str = "auto", strength: float = 1.0,
            progress: Progress = no_progress) -> tuple[Micrograph, dict]:
    """Denoise a micrograph (each frame of a stack on its own).

    ``method``: ``auto`` (chosen from the spectrum), ``fourier`` (Bragg-peak filter), ``nlm``
    (non-local means), ``gaussian``, ``moe`` (the learned mixture-of-experts denoiser, :mod:`.moe`;
    needs torch) or ``none``. ``strength`` scales the filtering (narrower Bragg
    masks, larger NLM ``h``, wider Gaussian). Returns the new micrograph (float32, same calibration)
    and ``info``: ``method``, ``periodicity_score``, ``n_bragg_peaks``, ``sigma_noise_estimate``
    (RMS of the white noise in image units, from the high-frequency floor of the spectrum).
    """
    if method not in METHODS:
        raise AutomatError(f"unknown denoise method '{method}': choose one of {', '.join(METHODS)}")
    if not strength > 0:
        raise AutomatError(f"denoise strength must be positive, got {strength}")
    data = np.asarray(micrograph.data)
    if data.ndim not in (2, 3) or min(data.shape[-2:]) < 8:
        raise AutomatError(f"cannot denoise data of shape {data.shape}: need a 2D image (or stack) of 8x8 or more")
    frames = data if data.ndim == 3 else data[None]
    out, infos = [], []
    for k, frame in enumerate(frames):
        progress(k / len(frames), f"denoising frame {k + 1}/{len(frames)}" if len(frames) > 1 else "denoising")
        filtered, info = _denoise_frame(np.asarray(frame, dtype=float), method, strength,
                                        micrograph.mean_pixel_size_A)
        out.append(filtered.astype(np.float32))
        infos.append(info)
    progress(1.0, "denoised")
    info = dict(infos[0])
    if len(infos) > 1:
        info["frames"] = infos
    result = np.stack(out) if data.ndim == 3 else out[0]
    return micrograph.with_data(result, denoised=info["method"], denoise_strength=float(strength)), info


def _denoise_frame(image: np.ndarray, method: str, strength: float, pixel_size_A: float) -> tuple[np.ndarray, dict]:
    if not np.all(np.isfinite(image)):
        raise AutomatError("the image contains NaN or infinite values")
    analysis = spectrum.analyse(image)
    chosen = _choice(analysis) if method == "auto" else method
    sigma = analysis.noise_sigma
    notes = {}
    if chosen == "fourier" and not len(analysis.peaks_k):
        chosen, notes["warning"] = "nlm", "no Bragg peaks in the spectrum: used non-local means instead"
    if chosen == "fourier":
        result = spectrum.bragg_filter(image, analysis, strength)
    elif chosen == "nlm":
        result = classical.nlm(image, strength)
    elif chosen == "moe":
        from .moe import denoise_moe

        result = denoise_moe(image, analysis, strength)
    elif chosen == "gaussian":
        result = classical.gaussian(image, strength * max(1.0, GAUSSIAN_SIGMA_A / pixel_size_A))
    else:
        result = image.copy()
    return result, {"method": chosen, "periodicity_score": float(analysis.periodicity_score),
                    "n_bragg_peaks": analysis.n_peaks, "sigma_noise_estimate": float(sigma), **notes}


def _choice(analysis: spectrum.BraggAnalysis) -> str:
    lattice = analysis.two_dimensional and analysis.periodicity_score >= PERIODIC_SCORE
    return "fourier" if lattice else "nlm"


def _plane(image) -> np.ndarray:
    data = np.asarray(image.data if isinstance(image, Micrograph) else image, dtype=float)
    if data.ndim == 3:
        data = data.mean(axis=0)
    if data.ndim != 2:
        raise AutomatError(f"expected a 2D image, got shape {data.shape}")
    return data
