"""Contrast polarity and background: turn any STEM signal into bright columns on a flat background."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..model import AutomatError

_DARK = ("ABF", "BF", "BRIGHT")
_BRIGHT = ("HAADF", "ADF", "DF", "DARK", "LAADF", "MAADF")


def _words(signal) -> list[str]:
    return str(signal or "").upper().replace("-", " ").replace("_", " ").split()


def is_phase_contrast(signal: str | None) -> bool:
    """Whether ``signal`` names (integrated) differential phase contrast: iDPC, DPC."""
    return any(w.endswith("DPC") for w in _words(signal))


def column_polarity(signal: str | None) -> int | None:
    """+1 for bright-column signals (HAADF, ADF), -1 for dark ones (ABF, BF), None if unknown.

    (i)DPC is None too: its columns are bright for a thin crystal in focus, but the sign turns with
    thickness and defocus (and with a wrong segment-rotation calibration), so it is read from the
    image (:func:`column_image`) as for an unknown signal."""
    words = _words(signal)
    if not words or words == ["AUTO"]:
        return None
    if any(w in _DARK or w.endswith("ABF") for w in words):
        return -1
    if any(w in _BRIGHT or w.endswith("DF") for w in words):
        return 1
    return None


def shows_light_columns(signal: str | None, micrograph=None) -> bool | None:
    """Whether the image shows light columns (O, N, C) beside heavy ones, as annular bright field,
    bright field and iDPC do and HAADF hardly does; None when the signal is unknown. ``signal``
    ``auto`` (or None) reads the micrograph's ``metadata['signal']``."""
    if signal is None or str(signal).strip().lower() == "auto":
        signal = (micrograph.metadata.get("signal") if micrograph is not None else None) or ""
    polarity = column_polarity(signal)
    if polarity == -1 or is_phase_contrast(signal):
        return True
    return False if polarity == 1 else None


def check_signal(signal: str) -> None:
    """Raise ``AutomatError`` for a ``signal`` argument that is neither ``auto`` nor a known signal."""
    if str(signal).strip().lower() != "auto" and column_polarity(signal) is None and not is_phase_contrast(signal):
        raise AutomatError(f"unknown signal {signal!r}: use auto, HAADF, ADF, iDPC, ABF or BF")


def column_image(data: np.ndarray, scale=(1.0, 1.0), spacing_px: float = 10.0, signal: str | None = "auto",
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The image turned so that atom columns are bright, as is and minus its smooth background.

    ``spacing_px`` is the typical column separation [mean px]; ``scale`` the pixel size per axis
    relative to the mean one. The background is a Gaussian blur 2.5 separations wide. With
    ``signal="auto"`` the polarity is the sign of the skewness of the lightly smoothed image
    (isolated bright peaks skew positive, dark ones negative). Returns ``(turned, flat)``.
    """
    img = np.asarray(data, dtype=float)
    if not np.all(np.isfinite(img)):
        img = np.where(np.isfinite(img), img, np.nanmedian(img))
    scale = np.asarray(scale, dtype=float)
    flat = img - smooth_background(img, 2.5 * spacing_px / scale)
    polarity = column_polarity(signal)
    if polarity is None:
        polarity = 1 if skewness(ndi.gaussian_filter(flat, 0.15 * spacing_px / scale)) >= 0 else -1
    return polarity * img, polarity * flat


def smooth_background(img: np.ndarray, sigma_px) -> np.ndarray:
    """Gaussian blur of width ``sigma_px`` (per axis), computed on a binned copy when it is wide."""
    sigma_px = np.broadcast_to(np.asarray(sigma_px, dtype=float), (2,))
    factor = [max(1, min(int(s / 4), n // 8)) for s, n in zip(sigma_px, img.shape)]
    if factor == [1, 1]:
        return ndi.gaussian_filter(img, sigma_px, mode="reflect")
    pad = [(-n) % f for n, f in zip(img.shape, factor)]
    padded = np.pad(img, [(0, pad[0]), (0, pad[1])], mode="reflect")
    binned = padded.reshape(padded.shape[0] // factor[0], factor[0],
                            padded.shape[1] // factor[1], factor[1]).mean((1, 3))
    blurred = ndi.gaussian_filter(binned, sigma_px / np.array(factor), mode="reflect")
    # block centres sit at (f - 1) / 2 in full-resolution pixels
    coords = [(np.arange(n) - (f - 1) / 2) / f for n, f in zip(img.shape, factor)]
    grid = np.meshgrid(*coords, indexing="ij")
    return ndi.map_coordinates(blurred, grid, order=1, mode="nearest")


def skewness(values: np.ndarray) -> float:
    """Sample skewness of all values."""
    v = np.asarray(values, dtype=float).ravel()
    v = v - v.mean()
    sd = v.std()
    return float(np.mean(v ** 3) / sd ** 3) if sd > 0 else 0.0
