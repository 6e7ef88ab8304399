"""Species labels for the measured columns, read off the chosen template's matched columns."""

from __future__ import annotations

import numpy as np

from ..model import Columns, Lattice2D, TemplateHit


def column_label(composition: dict[str, float]) -> str:
    """``{"Sr": 1, "O": 1}`` → ``"Sr+O"``: heaviest element first."""
    from pymatgen.core import Element

    return "+".join(sorted(composition, key=lambda el: -Element(el).Z))


def label_columns(columns: Columns, lattice: Lattice2D, hit: TemplateHit) -> Columns:
    """Columns with ``species`` and ``species_confidence`` set from the template sites matched to the
    motif (``hit.details['site_composition']``, one entry per motif site). The confidence is the
    hit's Z-contrast agreement in [0, 1]. Columns of unmatched sublattices keep their labels."""
    sites = hit.details.get("site_composition") or []
    confidence = float(hit.details.get("z_contrast", hit.score))
    labels = {site.sublattice: column_label(comp) for site, comp in zip(lattice.motif, sites) if comp}
    for site in lattice.motif:
        site.species = labels.get(site.sublattice, site.species)
    species = [labels.get(int(s), old) for s, old in zip(columns.sublattice, columns.species)]
    known = np.array([int(s) in labels for s in columns.sublattice], bool)
    conf = np.where(known, confidence, columns.species_confidence)
    return Columns(columns.positions_px, columns.pixel_size_A, columns.intensity, columns.sigma_px,
                   columns.sublattice, species, conf, columns.provenance)
