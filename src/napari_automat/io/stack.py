"""Frame stacks ``(frame, y, x)``: register the frames and average them into one image.

Each frame is first registered rigidly against a running reference (the average of the frames
accepted so far) by cross-correlation of the lightly smoothed, edge-tapered frames, refined to a
fraction of a pixel. Slow-scan drift, a shift that changes from row to row as the frame is
scanned, is then measured in horizontal bands against the rigid average and followed by a line
(a parabola from 5 bands on) through the band shifts along y. A frame whose correlation with the
average of the others falls below ``REJECT_FRACTION`` of the median (a blanked beam, a scan
glitch, another area) is left out. The used frames are resampled onto the reference, averaged
and cropped to the area every one of them covers.

On a perfect crystal shifts are only defined modulo a lattice vector: a drift of more than half
a lattice period between frames is registered onto the neighbouring column, which keeps the
columns sharp but blurs non-periodic features (edges, defects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..model import AutomatError, Micrograph, Progress, no_progress

#: Gaussian smoothing of the frames before correlation [px] (damps shot noise).
SMOOTH_PX = 1.0
#: Fraction of each side tapered to zero before correlation (Tukey window).
TAPER = 0.25
#: Slow-scan bands: one per BAND_PX rows [px], at most MAX_BANDS.
BAND_PX = 64
MAX_BANDS = 8
#: Largest shift of a band from its frame's rigid registration [px] (a bound that keeps noisy bands
#: from jumping to a neighbouring column).
MAX_SLOW_SCAN_PX = 5
#: A frame is left out when its correlation with the average of the others is below this
#: fraction of the median frame's, or below MIN_CORRELATION (what pure noise reaches at its best
#: shift in a frame of some 200 x 200 px).
REJECT_FRACTION = 0.5
MIN_CORRELATION = 0.1


@dataclass
class StackRegistration:
    """How the frames of a stack map onto the reference.

    ``shifts_px`` ``(frame, y, 2)``: the shift ``(dy, dx)`` [px] that moves row ``y`` of each frame
    onto the reference; ``used`` ``(frame,)``: frames that go into the average; ``correlation``
    ``(frame,)``: Pearson correlation of each aligned frame with the average of the other used
    frames; ``residual_drift_px``: RMS band shift [px] still measured between the used aligned
    frames and the average of the others.
    """

    shifts_px: np.ndarray
    used: np.ndarray
    correlation: np.ndarray
    residual_drift_px: float


def register_frames(frames: np.ndarray, bands: Optional[int] = None,
                    progress: Progress = no_progress) -> StackRegistration:
    """Register the frames of ``frames`` ``(frame, y, x)`` (see the module docstring).

    ``bands``: slow-scan bands (1 = rigid only); ``None`` = one per ``BAND_PX`` rows.
    """
    from scipy.ndimage import gaussian_filter

    stack = np.asarray(frames, dtype=float)
    if stack.ndim != 3 or len(stack) < 2:
        raise AutomatError(f"registration needs a stack of at least 2 frames, got data of shape {stack.shape}")
    n, h, _ = stack.shape
    bands = int(np.clip(h // BAND_PX, 1, MAX_BANDS)) if bands is None else max(1, int(bands))
    smooth = np.stack([gaussian_filter(f, SMOOTH_PX) for f in stack])

    first = _first_reference(smooth)
    fields = np.zeros((n, h, 2))
    used = np.arange(n) == first
    total, accepted = smooth[first].copy(), []
    for step, k in enumerate(sorted(range(n), key=lambda i: (abs(i - first), i))[1:]):
        progress(0.6 * (step + 1) / n, f"registering frame {k + 1} of {n}")
        reference = total / used.sum()
        fields[k] = _shift(reference, smooth[k])
        aligned = _warp(smooth[k], fields[k])
        r = _correlation(reference, aligned, fields[k])
        if r >= max(MIN_CORRELATION, REJECT_FRACTION * float(np.median(accepted)) if accepted else 0.0):
            total, used[k] = total + aligned, True
            accepted.append(r)
    _require_two(used)

    if bands > 1:
        reference = total / used.sum()
        for k in range(n):
            progress(0.6 + 0.2 * (k + 1) / n, f"slow-scan drift of frame {k + 1} of {n}")
            fields[k] += _band_field(reference, _warp(smooth[k], fields[k]), bands)

    aligned = np.stack([_warp(smooth[k], fields[k]) for k in range(n)])
    correlation = _leave_one_out(aligned, used, fields, _correlation)
    used = correlation >= max(MIN_CORRELATION, REJECT_FRACTION * float(np.median(correlation)))
    _require_two(used)
    progress(0.9, "residual drift")
    residual = _leave_one_out(aligned, used, fields, lambda ref, mov, field: _band_rms(ref, mov, bands))
    progress(1.0, f"{int(used.sum())} of {n} frames registered")
    return StackRegistration(fields, used, correlation, float(np.sqrt(np.mean(residual[used] ** 2))))


def average_registered(frames: np.ndarray, registration: StackRegistration) -> tuple[np.ndarray, tuple[int, int]]:
    """The average of the used frames moved onto the reference, cropped to the area they all cover,
    and the position ``(y, x)`` [px] of its first pixel in the reference frame."""
    used = np.flatnonzero(registration.used)
    fields = registration.shifts_px[used]
    total = sum(_warp(np.asarray(frames[k], dtype=float), fields[i], order=3) for i, k in enumerate(used))
    top, left = (math.ceil(max(0.0, fields[..., a].max())) for a in (0, 1))
    bottom, right = (math.ceil(max(0.0, -fields[..., a].min())) for a in (0, 1))
    h, w = total.shape
    return total[top:h - bottom, left:w - right] / len(used), (top, left)


def average_frames(micrograph: Micrograph, progress: Progress = no_progress) -> Micrograph:
    """One image from a ``(frame, y, x)`` micrograph: its frames registered and averaged.

    The metadata record ``frames_total``, ``frames_used``, ``frames_left_out`` (indices),
    ``residual_drift_px``, ``drift_px`` (largest shift of a used frame) and ``average_origin_px``
    (where the cropped average starts in the reference frame); ``frame`` is None.
    """
    if not micrograph.is_stack:
        return micrograph
    frames = np.asarray(micrograph.data)
    registration = register_frames(frames, progress=lambda f, m="": progress(0.9 * f, m))
    image, origin = average_registered(frames, registration)
    progress(1.0, f"averaged {int(registration.used.sum())} of {len(frames)} frames")
    used = registration.used
    drift = np.hypot(*np.moveaxis(registration.shifts_px[used], -1, 0))
    return Micrograph(image.astype(np.float32), micrograph.pixel_size_A, micrograph.calibrated, micrograph.path,
                      dict(micrograph.metadata, frame=None, frames_total=len(frames), frames_used=int(used.sum()),
                           frames_left_out=[int(k) for k in np.flatnonzero(~used)],
                           residual_drift_px=round(registration.residual_drift_px, 3),
                           drift_px=round(float(drift.max()), 2), average_origin_px=list(origin)))


# ---------------------------------------------------------------------------------------------
# helpers: ``field`` is a per-row shift (y, 2) [px]; frames are the smoothed ones


def _require_two(used: np.ndarray) -> None:
    if used.sum() < 2:
        raise AutomatError(f"the {len(used)} frames of the stack do not correlate with each other: "
                           "analyse one frame (--frame N)")


def _first_reference(smooth: np.ndarray) -> int:
    """Of the first three frames, the one that correlates best with the other two."""
    candidates = range(min(3, len(smooth)))
    score = np.zeros(len(candidates))
    for i in candidates:
        for j in candidates:
            if i < j:
                field = _shift(smooth[i], smooth[j])
                score[[i, j]] += _correlation(smooth[i], _warp(smooth[j], field), field)
    return int(np.argmax(score))


def _shift(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """The rigid shift (dy, dx) [px] that registers ``moving`` onto ``reference``, as a field."""
    return np.broadcast_to(_register(reference, moving), (len(reference), 2)).copy()


def _register(reference: np.ndarray, moving: np.ndarray, limit: Optional[float] = None) -> np.ndarray:
    """The shift (dy, dx) [px] that moves ``moving`` onto ``reference``: the cross-correlation peak of the
    tapered images (within ``limit`` px of zero when given), refined by a Gaussian through it and its
    neighbours on each axis."""
    a, b = _tapered(reference), _tapered(moving)
    cc = np.fft.fftshift(np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), s=a.shape))
    centre = np.array(cc.shape) // 2
    search = cc
    if limit is not None:
        offsets = [np.abs(np.arange(n) - c) for n, c in zip(cc.shape, centre)]
        search = np.where((offsets[0][:, None] <= limit) & (offsets[1][None, :] <= limit), cc, -np.inf)
    peak = np.array(np.unravel_index(np.argmax(search), cc.shape))
    shift = (peak - centre).astype(float)
    for axis in (0, 1):
        step = np.eye(2, dtype=int)[axis]
        if 0 < peak[axis] < cc.shape[axis] - 1:
            lo, mid, hi = (cc[tuple(peak + d * step)] for d in (-1, 0, 1))
            shift[axis] += _vertex(lo, mid, hi)
    return shift


def _vertex(lo: float, mid: float, hi: float) -> float:
    """Sub-pixel offset of a peak from three samples: of a Gaussian when all are positive, else of a parabola."""
    if min(lo, mid, hi) > 0:
        lo, mid, hi = np.log([lo, mid, hi])
    curvature = lo - 2 * mid + hi
    return float(np.clip(0.5 * (lo - hi) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def _band_shifts(reference: np.ndarray, moving: np.ndarray, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Band centres [px] and the shift (dy, dx) [px], within ``MAX_SLOW_SCAN_PX``, of each band of
    ``moving`` onto ``reference``."""
    edges = np.linspace(0, len(reference), bands + 1).round().astype(int)
    shifts = [_register(reference[a:b], moving[a:b], MAX_SLOW_SCAN_PX) for a, b in zip(edges[:-1], edges[1:])]
    return (edges[:-1] + edges[1:] - 1) / 2.0, np.asarray(shifts)


def _band_field(reference: np.ndarray, moving: np.ndarray, bands: int) -> np.ndarray:
    """The slow-scan correction of ``moving``: a line (a parabola from 5 bands on) through its band shifts."""
    centres, shifts = _band_shifts(reference, moving, bands)
    rows = np.arange(len(reference))
    degree = 1 if bands < 5 else 2
    return np.stack([np.polyval(np.polyfit(centres, shifts[:, a], degree), rows) for a in (0, 1)], axis=1)


def _band_rms(reference: np.ndarray, moving: np.ndarray, bands: int) -> float:
    return float(np.sqrt(np.mean(np.sum(_band_shifts(reference, moving, bands)[1] ** 2, axis=1))))


def _leave_one_out(aligned: np.ndarray, used: np.ndarray, fields: np.ndarray, measure) -> np.ndarray:
    """``measure(average of the other used frames, frame, field)`` for every frame."""
    total, count = aligned[used].sum(axis=0), int(used.sum())
    out = np.zeros(len(aligned))
    for k, frame in enumerate(aligned):
        others = (total - frame) / (count - 1) if used[k] else total / count
        out[k] = measure(others, frame, fields[k])
    return out


def _tapered(image: np.ndarray) -> np.ndarray:
    from scipy.signal.windows import tukey

    h, w = image.shape
    centred = image - image.mean()
    return centred * np.outer(tukey(h, 2 * TAPER), tukey(w, 2 * TAPER))


def _warp(image: np.ndarray, field: np.ndarray, order: int = 1) -> np.ndarray:
    """``image`` with row ``y`` moved by ``field[y]`` = (dy, dx) [px]; edges repeat the border."""
    from scipy.ndimage import map_coordinates

    h, w = image.shape
    y, x = np.mgrid[:h, :w].astype(float)
    return map_coordinates(image, [y - field[:, :1], x - field[:, 1:]], order=order, mode="nearest")


def _correlation(reference: np.ndarray, aligned: np.ndarray, field: np.ndarray) -> float:
    """Pearson correlation of two images away from the border that ``field`` fills in."""
    m = math.ceil(float(np.abs(field).max())) + 1
    a, b = reference[m:-m, m:-m].ravel(), aligned[m:-m, m:-m].ravel()
    if a.size < 16 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
