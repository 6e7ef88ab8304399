"""Species labels for the measured columns, read off the chosen template's matched columns, with a
per-column confidence from a Z-contrast model (intensity ∝ Σ atoms·Z^n, n fitted on the image)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..model import Columns, Lattice2D, TemplateHit

#: Range and step of the fitted Z-contrast exponent n (HAADF: about 1.6–2; ABF/iDPC: below 1).
EXPONENT_GRID = np.round(np.arange(0.3, 2.51, 0.01), 2)
#: Smallest spread of log intensity within a sublattice used for the confidences.
MIN_LOG_SPREAD = 0.05


def column_label(composition: dict[str, float]) -> str:
    """``{"Sr": 1, "O": 1}`` → ``"Sr+O"``: heaviest element first."""
    from pymatgen.core import Element

    return "+".join(sorted(composition, key=lambda el: -Element(el).Z))


def _log_weights(compositions: list[dict[str, float]]) -> np.ndarray:
    """``(n_sites, len(EXPONENT_GRID))`` log Σ atoms·Z^n of each column composition."""
    from pymatgen.core import Element

    out = np.empty((len(compositions), len(EXPONENT_GRID)))
    for i, comp in enumerate(compositions):
        z = np.array([Element(el).Z for el in comp], float)
        counts = np.array(list(comp.values()), float)
        out[i] = np.log((counts[:, None] * z[:, None] ** EXPONENT_GRID[None, :]).sum(0))
    return out


def fit_z_exponent(site_intensity, compositions: list[dict[str, float]]) -> Optional[dict]:
    """Fit ``I_site = k Σ atoms·Z^n`` to mean site intensities; ``None`` when fewer than two sites
    with distinct compositions and positive intensities are given.

    Returns ``{"exponent": n, "log_scale": log k, "rms_log": rms misfit of log I, "n_sites": …}``.
    """
    keep = [i for i, (v, c) in enumerate(zip(site_intensity, compositions)) if c and np.isfinite(v) and v > 0]
    if len({column_label(compositions[i]) + str(sorted(compositions[i].values())) for i in keep}) < 2:
        return None
    log_i = np.log(np.asarray(site_intensity, float)[keep])
    log_w = _log_weights([compositions[i] for i in keep])
    log_k = (log_i[:, None] - log_w).mean(0)
    rms = np.sqrt(((log_i[:, None] - log_w - log_k) ** 2).mean(0))
    best = int(np.argmin(rms))
    return {"exponent": float(EXPONENT_GRID[best]), "log_scale": float(log_k[best]),
            "rms_log": float(rms[best]), "n_sites": len(keep)}


def label_columns(columns: Columns, lattice: Lattice2D, hit: TemplateHit) -> tuple[Columns, Optional[dict]]:
    """Columns with ``species`` from the template sites matched to the motif
    (``hit.details['site_composition']``, one entry per motif site) and the Z-contrast fit.

    ``species_confidence`` is the posterior of a column's label among the template's column types
    under the fitted model (Gaussian in log intensity, width from the spread within sublattices);
    without a fit (one column type, or no intensities) it is the hit's Z-contrast agreement.
    Columns of unmatched sublattices keep their labels.
    """
    sites = hit.details.get("site_composition") or []
    comps = {site.sublattice: comp for site, comp in zip(lattice.motif, sites) if comp}
    labels = {s: column_label(c) for s, c in comps.items()}
    for site in lattice.motif:
        site.species = labels.get(site.sublattice, site.species)
    species = [labels.get(int(s), old) for s, old in zip(columns.sublattice, columns.species)]
    known = np.array([int(s) in labels for s in columns.sublattice], bool)
    conf = np.where(known, float(hit.details.get("z_contrast", hit.score)), columns.species_confidence)
    order = sorted(comps)
    fit = fit_z_exponent([_site_mean(columns, s) for s in order], [comps[s] for s in order])
    if fit is not None:
        conf = np.where(known, _posteriors(columns, comps, fit), conf)
        conf = np.where(np.isfinite(conf), conf, columns.species_confidence)
    out = columns.subset(np.arange(len(columns)))
    out.species, out.species_confidence = species, conf
    return out, fit


def _site_mean(columns: Columns, sublattice: int) -> float:
    values = columns.intensity[(columns.sublattice == sublattice) & np.isfinite(columns.intensity)]
    return float(np.median(values)) if len(values) else float("nan")


def _posteriors(columns: Columns, comps: dict[int, dict], fit: dict) -> np.ndarray:
    """Posterior of each column's own label (NaN where unknown) under the fitted Z-contrast model."""
    j = int(np.argmin(np.abs(EXPONENT_GRID - fit["exponent"])))
    types = {column_label(c): c for c in comps.values()}  # one entry per distinct column label
    names = list(types)
    mu = fit["log_scale"] + _log_weights(list(types.values()))[:, j]
    log_i = np.log(np.where(columns.intensity > 0, columns.intensity, np.nan))
    spreads = [np.std(log_i[(columns.sublattice == s) & np.isfinite(log_i)]) for s in comps
               if np.sum((columns.sublattice == s) & np.isfinite(log_i)) > 2]
    sigma = max(float(np.sqrt(np.mean(np.square(spreads)))) if spreads else 0.0, MIN_LOG_SPREAD, fit["rms_log"])
    like = -0.5 * ((log_i[:, None] - mu[None, :]) / sigma) ** 2
    like -= np.nanmax(like, axis=1, keepdims=True)
    post = np.exp(like)
    post /= post.sum(axis=1, keepdims=True)
    type_of = {s: names.index(column_label(c)) for s, c in comps.items()}  # sublattice → column type
    own = np.full(len(columns), np.nan)
    for s, t in type_of.items():
        sel = (columns.sublattice == s) & np.isfinite(log_i)
        own[sel] = post[sel, t]
    return own
