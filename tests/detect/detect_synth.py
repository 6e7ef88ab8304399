"""Synthetic atomic-resolution images for the detection tests: Gaussian columns at known positions."""

from __future__ import annotations

import numpy as np

from napari_automat.model import Micrograph


def lattice_points(shape, pixel_A, a_vec_A, b_vec_A, motif, origin_px=(0.0, 0.0), margin_px=0.0):
    """Positions ``(n, 2)`` [px] of every motif site inside the image and each one's site index.

    ``motif`` is a list of fractional ``(u, v)`` along ``(a, b)``; vectors are ``(y, x)`` in Å.
    """
    basis = np.stack([a_vec_A, b_vec_A]) / np.broadcast_to(pixel_A, (2,))  # rows a, b in px
    extent = np.hypot(*shape)
    n = int(np.ceil(extent / min(np.linalg.norm(basis, axis=1)))) + 2
    ij = np.stack(np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij"), -1).reshape(-1, 2)
    pos, site = [], []
    for s, uv in enumerate(motif):
        p = np.asarray(origin_px) + (ij + np.asarray(uv)) @ basis
        inside = np.all((p >= margin_px) & (p <= np.array(shape) - 1 - margin_px), axis=1)
        pos.append(p[inside])
        site.append(np.full(int(inside.sum()), s))
    return np.concatenate(pos), np.concatenate(site)


def render(shape, positions_px, amplitudes, sigma_px, background=0.1, dose=None, seed=0):
    """Sum of Gaussian columns on a flat background; Poisson noise at ``dose`` counts per unit signal.

    ``sigma_px`` is one width or ``(sigma_y, sigma_x)`` for anisotropic pixels.
    """
    rng = np.random.default_rng(seed)
    img = np.full(shape, float(background))
    sy, sx = np.broadcast_to(np.asarray(sigma_px, float), (2,))
    hy, hx = int(np.ceil(5 * sy)), int(np.ceil(5 * sx))
    for (y, x), amp in zip(positions_px, amplitudes):
        cy, cx = int(round(y)), int(round(x))
        y0, y1, x0, x1 = max(cy - hy, 0), min(cy + hy + 1, shape[0]), max(cx - hx, 0), min(cx + hx + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1] += amp * np.exp(-0.5 * ((yy - y) / sy) ** 2 - 0.5 * ((xx - x) / sx) ** 2)
    if dose is not None:
        img = rng.poisson(img * dose).astype(float) / dose
    return img


def synthetic(shape, pixel_A, a_vec_A, b_vec_A, motif, amplitudes, sigma_A=0.45, dose=None, seed=0,
              origin_px=(3.3, 5.7), signal="HAADF", background=0.1):
    """A ``Micrograph`` of a decorated lattice, its true positions [px] and their site indices.

    ``pixel_A`` is one pixel size [Å] or ``(y, x)``; ``amplitudes`` one per motif site.
    """
    pos, site = lattice_points(shape, pixel_A, a_vec_A, b_vec_A, motif, origin_px)
    amp = np.asarray(amplitudes, float)[site]
    pixel = tuple(float(p) for p in np.broadcast_to(pixel_A, (2,)))
    img = render(shape, pos, amp, sigma_A / np.array(pixel), background=background, dose=dose, seed=seed)
    if signal.upper() in ("ABF", "BF"):
        img = img.max() + background - img
    return Micrograph(img, pixel, True, metadata={"signal": signal}), pos, site


def perovskite(shape=(256, 256), pixel_A=0.1, a_A=3.905, angle_deg=7.0, ratio=0.5, dose=200.0, seed=0,
               signal="HAADF"):
    """SrTiO3 [001]-like image: bright A columns at (0, 0), dimmer B columns (``ratio``) at (½, ½)."""
    t = np.radians(angle_deg)
    a = a_A * np.array([np.sin(t), np.cos(t)])
    b = a_A * np.array([np.cos(t), -np.sin(t)])
    return synthetic(shape, pixel_A, a, b, [(0, 0), (0.5, 0.5)], [1.0, ratio], dose=dose, seed=seed, signal=signal)


def match(found_px, true_px, max_distance_px):
    """Recall, precision and the distances of matched pairs (one-to-one, nearest first)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    d = cdist(true_px, found_px)
    rows, cols = linear_sum_assignment(np.where(d < max_distance_px, d, 1e6))
    ok = d[rows, cols] < max_distance_px
    return ok.sum() / len(true_px), ok.sum() / max(len(found_px), 1), d[rows[ok], cols[ok]], rows[ok], cols[ok]
