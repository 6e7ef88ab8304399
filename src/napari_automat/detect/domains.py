"""More than one crystal: segment the field into domains by local lattice.

The image's Bragg spots (:func:`napari_automat.detect.spectrum.spectrum_peaks`) cover every
crystal in it. For each spot, the local amplitude of that reflection (a dark-field image: the
spectrum under a Gaussian window around the spot, transformed back) says where it is, so the
vector of spot amplitudes describes the local lattice at every pixel: its orientation and
spacing (which spots light up) and its motif (their relative strengths: in PbTiO3 the A and B
columns differ strongly in Z and the ``(100)`` reflections are strong, in SrRuO3 they nearly
cancel). Points one map width apart are clustered on their log amplitudes (average linkage,
no spot differing by more than a stated factor), every pixel takes the cluster nearest on a
linear scale (so a boundary lies halfway), and domains under a useful size join their
neighbours. The numbers are :class:`~napari_automat.detect.params.DetectParams`' ``domain_*``.
Lengths are in pixels unless the name says ``_A``; the tiles of :mod:`.region` are too coarse
here (a 64-px tile holds 2.5 periods of a 26-px perovskite cell, and the PbTiO3 layer of the
test image is 70 px high).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .params import DEFAULT_DETECT, DetectParams
from .spectrum import basis_from_spots, spectrum_peaks


@dataclass
class Interface:
    """The boundary between two domains: a straight line fitted to their touching pixels.

    ``centre_px``: ``(y, x)`` of its centroid [px]; ``angle_deg``: direction of the line from the
    image's x axis towards +y [deg, -90..90]; ``length_px``: its extent along the line;
    ``rms_px``: RMS distance of the boundary pixels from the line (roughness, steps).
    """

    labels: tuple[int, int]
    centre_px: tuple[float, float]
    angle_deg: float
    length_px: float
    rms_px: float

    def to_dict(self, origin_px=(0.0, 0.0)) -> dict:
        return {"labels": list(self.labels),
                "centre_px": [round(float(c + o), 2) for c, o in zip(self.centre_px, origin_px)],
                "angle_deg": round(self.angle_deg, 2), "length_px": round(self.length_px, 1),
                "rms_px": round(self.rms_px, 2)}


@dataclass
class Domain:
    """One domain: ``label`` in the label image, ``area_fraction`` of the field (0–1), ``bbox``
    ``[y0, y1, x0, x1]`` [px, ends exclusive], its local lattice from the spots that are strong in
    it (``a_A``, ``b_A`` [Å], ``gamma_deg``, ``angle_deg`` of ``a`` from the x axis; None when
    fewer than two independent spots are), ``brightness`` (mean intensity over the field's) and
    ``spot_amplitude`` (mean local amplitude of each spot over the field's median)."""

    label: int
    area_fraction: float
    bbox: list[int]
    a_A: float | None
    b_A: float | None
    gamma_deg: float | None
    angle_deg: float | None
    brightness: float
    spot_amplitude: list[float]

    def to_dict(self, origin_px=(0.0, 0.0)) -> dict:
        """``{label, area_fraction, bbox, local: {a_A, b_A, gamma_deg, angle_deg, brightness,
        spot_amplitude}}``, the bbox shifted by ``origin_px`` ``(y, x)``."""
        y0, x0 = (int(v) for v in origin_px)
        local = {k: getattr(self, k) for k in ("a_A", "b_A", "gamma_deg", "angle_deg", "brightness", "spot_amplitude")}
        return {"label": self.label, "area_fraction": self.area_fraction,
                "bbox": [self.bbox[0] + y0, self.bbox[1] + y0, self.bbox[2] + x0, self.bbox[3] + x0], "local": local}


@dataclass
class DomainMap:
    """``labels``: int ``(y, x)`` image, 0 outside the analysed crystal, domains 1.. by area;
    ``domains`` and ``interfaces`` as above; ``spots_A``: the Bragg spots used ``(m, 2)``
    [Å⁻¹, ``(ky, kx)``]; ``period_px``: the longest lattice spacing; ``sigma_px``: width of the local
    amplitude maps."""

    labels: np.ndarray
    domains: list[Domain] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)
    spots_A: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    period_px: float = 0.0
    sigma_px: float = 0.0

    def core(self, label: int, margin_px: float) -> np.ndarray:
        """The pixels of domain ``label`` farther than ``margin_px`` from any other domain (the image's
        edge does not count)."""
        inside = self.labels == label
        return inside & (ndimage.distance_transform_edt(inside | (self.labels == 0)) > margin_px)


def spot_amplitudes(image: np.ndarray, spots_px: np.ndarray, sigma_px: float, mask=None) -> np.ndarray:
    """Local amplitude ``(m, y, x)`` of each spot (``spots_px`` ``(m, 2)`` [cycles/px, ``(ky, kx)``]):
    the image's spectrum under a Gaussian around the spot whose real-space width is ``sigma_px``,
    transformed back; normalised by the equally smoothed support (``mask``, default all), so
    edges and the mask's border are not dimmed. The maps are made on a grid ``sigma_px / 2`` coarser
    (the window passes nothing finer) and interpolated to the pixels."""
    img = np.asarray(image, float)
    support = np.ones(img.shape) if mask is None else np.asarray(mask, float)
    img = (img - img[support > 0].mean()) * support
    pad = int(np.ceil(3 * sigma_px))
    shape = np.array([sfft.next_fast_len(n + 2 * pad) for n in img.shape])
    coarse = np.array([sfft.next_fast_len(int(np.ceil(n / max(1.0, sigma_px / 2)))) for n in shape])
    offsets = [np.rint(sfft.fftfreq(c) * c).astype(int) for c in coarse]  # the coarse grid's frequency bins
    width = 1.0 / (2 * np.pi * sigma_px)  # the Gaussian's width in cycles/px
    # linear interpolation to the pixels (sample j of the coarse grid is pixel j * shape / coarse)
    to_y, to_x = (_linear_weights(np.arange(n) * c / s, c) for n, c, s in zip(img.shape, coarse, shape))

    def smoothed(spectrum, k):
        bins = [(int(round(k[i] * shape[i])) + offsets[i]) % shape[i] for i in (0, 1)]
        ky, kx = [((b + shape[i] // 2) % shape[i] - shape[i] // 2) / shape[i] - k[i] for i, b in enumerate(bins)]
        window = np.exp(-(ky[:, None] ** 2 + kx[None, :] ** 2) / (2 * width ** 2))
        return to_y @ np.abs(sfft.ifft2(spectrum[np.ix_(*bins)] * window)) @ to_x.T

    floor = 1e-3 * coarse.prod() / shape.prod()  # the coarse transform's scale for a support of 1e-3
    weight = np.maximum(smoothed(sfft.fft2(support, s=tuple(shape)), (0.0, 0.0)), floor)
    spectrum = sfft.fft2(img, s=tuple(shape))
    return np.stack([smoothed(spectrum, k) / weight for k in spots_px])


def _linear_weights(at: np.ndarray, n: int) -> np.ndarray:
    """``(len(at), n)`` weights of linear interpolation of ``n`` samples at positions ``at``."""
    lo = np.clip(np.floor(at).astype(int), 0, n - 1)
    frac = np.clip(at - lo, 0, 1)
    w = np.zeros((len(at), n))
    w[np.arange(len(at)), lo] = 1 - frac
    w[np.arange(len(at)), np.minimum(lo + 1, n - 1)] += frac
    return w


def segment_domains(image: np.ndarray, pixel_size_A, mask=None,
                    params: DetectParams = DEFAULT_DETECT) -> DomainMap:
    """Domains of a 2D image by local lattice (module docstring); ``pixel_size_A``: one size or
    ``(y, x)`` [Å/px]; ``mask``: the crystalline pixels (default all). One domain when the image
    shows a single lattice, none (all-zero labels) when it shows no Bragg spot."""
    img = np.asarray(image, float)
    pixel = np.broadcast_to(np.asarray(pixel_size_A, float), (2,))
    mask = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool)
    g_A, strength = spectrum_peaks(img, pixel)
    keep = strength >= params.domain_min_spot * strength[0] if len(g_A) else np.zeros(0, bool)
    g_A, strength = g_A[keep][:params.domain_max_spots], strength[keep][:params.domain_max_spots]
    if len(g_A) == 0 or not mask.any():
        return DomainMap(np.zeros(img.shape, int))
    spots_px = g_A * pixel
    period_px = 1.0 / float(np.min(np.linalg.norm(spots_px, axis=1)))
    sigma_px = params.domain_sigma_periods * period_px
    amp = spot_amplitudes(img, spots_px, sigma_px, mask)
    step = max(1, int(sigma_px), int(np.ceil(np.sqrt(mask.sum() / params.domain_samples))))
    iy, ix = np.nonzero(mask[::step, ::step])
    samples = amp[:, iy * step, ix * step].T  # one point per sigma_px: the maps vary no faster
    labels = _cluster(amp, mask, samples, (iy, ix), params) if len(g_A) > 1 else mask.astype(int)
    labels = _merge_small(labels, params.domain_min_fraction * mask.sum())
    typical = np.median(samples, axis=0)
    domains = [_describe(labels == k, img, amp / typical[:, None, None], g_A, sigma_px, k)
               for k in range(1, labels.max() + 1)]
    return DomainMap(labels, domains, interfaces(labels), g_A, period_px, sigma_px)


def _cluster(amp: np.ndarray, mask: np.ndarray, samples: np.ndarray, at: tuple, params: DetectParams) -> np.ndarray:
    """Label image from the spot amplitudes ``amp`` ``(m, y, x)``. Its ``samples`` ``(n, m)``, on a
    grid one ``sigma_px`` apart at rows and columns ``at``, are clustered on their log amplitudes,
    each spot's floored at ``params.domain_amplitude_floor`` of its strong level (95th percentile),
    by average linkage on the largest difference over the spots, cut at
    ``log(params.domain_tolerance)``. A cluster with no sample two steps from other clusters is the
    mixed band along a boundary, not a domain: it is dropped; one where no spot reaches the floor
    shows no lattice (vacuum, amorphous support): its pixels get 0. Each masked pixel takes the cluster
    whose median amplitudes (which the few samples astride a boundary do not move) are nearest its
    own on a linear scale, each spot weighed by its variance within the clusters, so that a
    boundary falls where the amplitudes are halfway between the two sides' (the log's midpoint
    would lean into the weaker side)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    strong = np.maximum(np.percentile(samples, 95, axis=0), 1e-12)
    samples = samples / strong
    if len(samples) < 2:
        return mask.astype(int)
    log = np.log(samples + params.domain_amplitude_floor)
    cluster = fcluster(linkage(log, "average", metric="chebyshev"), np.log(params.domain_tolerance),
                       criterion="distance")
    grid = np.zeros(np.max(at, axis=1) + 1, int)
    grid[at] = cluster
    names = [c for c in np.unique(cluster) if _core(grid == c, 1.5)[at].any()] or list(np.unique(cluster))
    centres = np.stack([np.median(samples[cluster == c], axis=0) for c in names])
    # each spot weighed by its pooled spread within the clusters, so the spots that tell them apart
    # decide and those that vary alike in all (thickness, strain) do not
    kept = np.isin(cluster, names)
    spread = np.mean((samples[kept] - centres[np.searchsorted(names, cluster[kept])]) ** 2, axis=0) + 1e-6
    # sum over spots of (p - c)² / spread, less the sum of p² / spread, for every pixel p at once
    score = ((centres ** 2 / spread).sum(axis=1)[:, None]
             - 2 * (centres / spread / strong) @ amp.reshape(len(amp), -1))
    lattice = centres.max(axis=1) >= params.domain_amplitude_floor
    number = np.where(lattice, np.cumsum(lattice), 0)
    return np.where(mask, number[np.argmin(score, axis=0)].reshape(mask.shape), 0)


def _core(inside: np.ndarray, depth: float) -> np.ndarray:
    """The pixels of ``inside`` farther than ``depth`` from any other (the image's edge does not
    count): the part of a domain its neighbours' smoothed amplitudes do not reach."""
    return ndimage.distance_transform_edt(np.pad(inside, 1, constant_values=True))[1:-1, 1:-1] > depth


def _merge_small(labels: np.ndarray, min_area: float) -> np.ndarray:
    """Connected domains (4-connected pieces of each cluster) numbered 1.. by decreasing area; pieces
    under ``min_area`` pixels take the label of the nearest piece that is not."""
    pieces = np.zeros_like(labels)
    count = 0
    for c in range(1, labels.max() + 1):
        lab, n = ndimage.label(labels == c)
        pieces[lab > 0] = lab[lab > 0] + count
        count += n
    if count == 0:
        return pieces
    area = ndimage.sum(np.ones_like(pieces), pieces, index=np.arange(1, count + 1))
    big = 1 + np.flatnonzero(area >= min_area)
    if len(big) == 0:
        big = np.array([1 + int(np.argmax(area))])
    small = (pieces > 0) & ~np.isin(pieces, big)
    if small.any():
        _, (ny, nx) = ndimage.distance_transform_edt(~np.isin(pieces, big), return_indices=True)
        pieces = np.where(small, pieces[ny, nx], pieces)
    order = big[np.argsort(-area[big - 1], kind="stable")]
    relabel = np.zeros(count + 1, int)
    relabel[order] = np.arange(1, len(order) + 1)
    return relabel[pieces]


def _describe(inside: np.ndarray, image: np.ndarray, amp: np.ndarray, g_A: np.ndarray, sigma_px: float,
              label: int) -> Domain:
    """A :class:`Domain` for the pixels ``inside``: bbox, brightness, mean spot amplitudes (``amp``,
    relative) and the lattice of the spots strong in its core, ``2 sigma_px`` in from its edge where
    it has one (``spectrum.basis_from_spots`` on their mean power)."""
    ys, xs = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    core = _core(inside, 2 * sigma_px)
    flat, core = amp.reshape(len(amp), -1), (core if core.any() else inside).ravel()
    power = np.einsum("ij,ij,j->i", flat, flat, core) / core.sum()
    order = np.argsort(-power)
    basis = basis_from_spots(g_A[order], power[order])
    a_A = b_A = gamma = angle = None
    if basis is not None:
        a, b = basis
        a_A, b_A = round(float(np.linalg.norm(a)), 4), round(float(np.linalg.norm(b)), 4)
        gamma = round(float(np.degrees(np.arccos(np.clip(a @ b / (a_A * b_A), -1, 1)))), 2)
        angle = round(float(np.degrees(np.arctan2(a[0], a[1]))), 2)
    mean = flat @ inside.ravel() / inside.sum()
    return Domain(label, round(float(inside.mean()), 4), [int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1],
                  a_A, b_A, gamma, angle, round(float(image[inside].mean() / np.mean(image)), 4),
                  [round(float(v), 3) for v in mean])


def interfaces(labels: np.ndarray) -> list[Interface]:
    """The boundary of each pair of touching domains, as a line fitted (principal axis) to the
    midpoints between 4-neighbour pixels of the two labels."""
    points: dict[tuple[int, int], list[np.ndarray]] = {}
    for axis in (0, 1):
        a = labels[:-1, :] if axis == 0 else labels[:, :-1]
        b = labels[1:, :] if axis == 0 else labels[:, 1:]
        edge = (a != b) & (a > 0) & (b > 0)
        iy, ix = np.nonzero(edge)
        mid = np.stack([iy + 0.5 * (axis == 0), ix + 0.5 * (axis == 1)], axis=1)
        lo, hi = np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])
        for pair in set(zip(lo.tolist(), hi.tolist())):
            points.setdefault(pair, []).append(mid[(lo == pair[0]) & (hi == pair[1])])
    out = []
    for pair, chunks in sorted(points.items()):
        p = np.concatenate(chunks)
        centre = p.mean(axis=0)
        _, _, vt = np.linalg.svd(p - centre, full_matrices=False)
        direction = vt[0] if vt[0][1] >= 0 else -vt[0]
        along = (p - centre) @ direction
        across = (p - centre) @ np.array([-direction[1], direction[0]])
        out.append(Interface(pair, (float(centre[0]), float(centre[1])),
                             float(np.degrees(np.arctan2(direction[0], direction[1]))),
                             float(np.ptp(along)) if len(p) > 1 else 0.0, float(np.sqrt(np.mean(across ** 2)))))
    return out
