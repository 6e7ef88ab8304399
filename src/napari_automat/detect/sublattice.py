"""Intensity classes of atom columns: 1D k-means, split only where the classes are clearly apart."""

from __future__ import annotations

import numpy as np

from .params import DEFAULT_DETECT, DetectParams


def intensity_classes(intensity, max_classes: int = 3, params: DetectParams = DEFAULT_DETECT) -> np.ndarray:
    """Class of each column by integrated intensity: 0 = brightest, -1 where the intensity is unknown.

    The largest number of classes (up to ``max_classes``) is chosen whose neighbours all differ by
    more than ``params.class_min_ratio`` in mean and ``params.class_min_separation`` in Ashman's D,
    each holding at least ``params.class_min_fraction`` of the columns (and 3); otherwise
    everything is one class.
    """
    values = np.asarray(intensity, dtype=float)
    labels = np.full(len(values), -1, dtype=int)
    ok = np.isfinite(values)
    labels[ok] = 0
    v = values[ok]
    for k in range(max_classes, 1, -1):
        if len(v) < 3 * k:
            continue
        lab, means = _kmeans_1d(v, k)
        if _separated(v, lab, means, params):
            labels[ok] = (k - 1) - lab  # k-means labels ascend with intensity; brightest -> 0
            break
    return labels


def _kmeans_1d(v: np.ndarray, k: int, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm in 1D, started from quantiles; labels ordered by ascending mean."""
    means = np.quantile(v, (np.arange(k) + 0.5) / k)
    lab = np.zeros(len(v), dtype=int)
    for _ in range(iterations):
        edges = 0.5 * (means[1:] + means[:-1])
        new = np.searchsorted(edges, v)
        means = np.array([v[new == j].mean() if np.any(new == j) else means[j] for j in range(k)])
        if np.array_equal(new, lab):
            break
        lab = new
    return lab, means


def _separated(v: np.ndarray, lab: np.ndarray, means: np.ndarray, params: DetectParams) -> bool:
    k = len(means)
    if min(np.sum(lab == j) for j in range(k)) < max(3, params.class_min_fraction * len(v)):
        return False
    for j in range(k - 1):
        lo, hi = v[lab == j], v[lab == j + 1]
        ratio_ok = means[j] <= 0 or means[j + 1] / means[j] > params.class_min_ratio
        pooled = np.sqrt(0.5 * (lo.var() + hi.var()))
        if not (ratio_ok and (means[j + 1] - means[j]) > params.class_min_separation * max(pooled, 1e-12)):
            return False
    return True
