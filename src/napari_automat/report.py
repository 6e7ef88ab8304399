"""The one-page overview PNG of a pipeline result: image with columns and lattice, candidates, structure."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PipelineResult

SUBLATTICE_COLOURS = ["#ff3b30", "#34c759", "#007aff", "#ffcc00", "#af52de", "#5ac8fa"]


def save_overview(result: "PipelineResult", path) -> Path:
    """Render the overview of ``result`` to ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.2), dpi=110, layout="constrained")
    ax_img, ax_hits, ax_struct = fig.subplots(1, 3, width_ratios=[1.2, 1, 1])
    _draw_image(ax_img, result)
    _draw_hits(ax_hits, result)
    _draw_structure(ax_struct, result)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _draw_image(ax, result) -> None:
    image = result.micrograph
    py, px = image.pixel_size_A
    h, w = image.data.shape[-2:]
    extent = (0, w * px, h * py, 0)
    ax.imshow(image.data, cmap="gray", extent=extent)
    if result.domain_labels is not None:  # the domains' boundaries within the analysed box
        y0, y1, x0, x1 = image.metadata.get("roi") or (0, h, 0, w)
        labels = result.domain_labels[y0:y1, x0:x1]
        ax.contour((np.arange(w) + 0.5) * px, (np.arange(h) + 0.5) * py, labels,
                   levels=np.arange(labels.max()) + 0.5, colors="yellow", linewidths=1)
    polygon = image.metadata.get("roi_polygon")
    if polygon is not None:  # the user's polygon within its box
        y0, _, x0, _ = image.metadata["roi"]
        outline = (np.vstack([polygon, polygon[:1]]) - (y0, x0)) * (py, px)
        ax.plot(outline[:, 1], outline[:, 0], color="yellow", lw=1)
    cols = result.columns
    if cols is not None and cols.count:
        pos = cols.positions_A
        colours = [SUBLATTICE_COLOURS[s % len(SUBLATTICE_COLOURS)] if s >= 0 else "white" for s in cols.sublattice]
        ax.scatter(pos[:, 1], pos[:, 0], s=6, c=colours, linewidths=0)
    lat = result.lattice
    if lat is not None:
        oy, ox = lat.origin_px * np.array(image.pixel_size_A)
        for vec, name in ((lat.a_vec_A, "a"), (lat.b_vec_A, "b")):
            ax.annotate("", xy=(ox + vec[1], oy + vec[0]), xytext=(ox, oy),
                        arrowprops=dict(arrowstyle="->", color="cyan", lw=2))
            ax.text(ox + vec[1], oy + vec[0], name, color="cyan", fontsize=11, fontweight="bold")
        title = f"{cols.count} columns · a={lat.a_A:.3f} Å b={lat.b_A:.3f} Å γ={lat.gamma_deg:.1f}°"
    else:
        title = f"{0 if cols is None else cols.count} columns"
    calib = "" if result.micrograph.calibrated else " (uncalibrated)"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"x [Å]{calib}")
    ax.set_ylabel("y [Å]")


def _draw_hits(ax, result) -> None:
    hits = result.hits[:8]
    if not hits:
        ax.text(0.5, 0.5, "no candidates", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = [f"{h.formula} {h.details.get('spacegroup', '')} [{''.join(str(v) for v in h.zone_axis)}]" for h in hits]
    rows = 7 - np.arange(len(hits))  # best on top, eight rows of room
    ax.barh(rows, [h.score for h in hits], color=["#007aff"] + ["#8e8e93"] * (len(hits) - 1), height=0.6)
    ax.set_yticks(rows, labels)
    ax.set_ylim(-0.5, 7.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("retrieval score")
    ax.set_title("template candidates (best on top)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)


def _draw_structure(ax, result) -> None:
    rec = result.reconstruction
    if rec is None:
        ax.text(0.5, 0.5, "no structure", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    from pymatgen.core import Element

    from .reconstruct.cif import structure_summary

    s = rec.structure
    summary = structure_summary(s, symprec=rec.symprec_A)
    frac = np.array([site.frac_coords for site in s]) % 1.0
    species = [site.specie.symbol for site in s]
    # Draw the cell projected along c with atoms coloured by element.
    cart = frac @ s.lattice.matrix
    elements = sorted(set(species), key=species.index)
    cmap = {e: SUBLATTICE_COLOURS[i % len(SUBLATTICE_COLOURS)] for i, e in enumerate(elements)}
    radius = {e: float(Element(e).atomic_radius or 1.0) for e in elements}
    # Largest atoms first, so atoms stacked along c stay visible as rings.
    for e in sorted(elements, key=lambda el: -radius[el]):
        mask = np.array([sp == e for sp in species])
        ax.scatter(cart[mask, 0], cart[mask, 1], s=140 * radius[e] ** 2, c=cmap[e], label=e,
                   edgecolors="k", linewidths=0.5)
    a, b = s.lattice.matrix[0, :2], s.lattice.matrix[1, :2]
    corners = np.array([[0, 0], a, a + b, b, [0, 0]])
    ax.plot(corners[:, 0], corners[:, 1], "k-", lw=1)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, markerscale=0.5)
    energy = result.energy
    lines = [f"{summary['reduced_formula']}  {summary['spacegroup_symbol']} (#{summary['spacegroup_number']})",
             f"a={summary['a']:.3f} b={summary['b']:.3f} c={summary['c']:.3f} Å",
             f"α={summary['alpha']:.1f} β={summary['beta']:.1f} γ={summary['gamma']:.1f}°"]
    if energy is not None:
        ef = energy.formation_energy_per_atom_eV
        lines.append(f"{energy.model}: E={energy.energy_per_atom_eV:.3f} eV/atom"
                     + (f", Ef={ef:.3f} eV/atom" if ef is not None else ""))
    ax.set_title("\n".join(lines), fontsize=8, loc="left")
    ax.set_xlabel("x [Å] (cell viewed along c)")
    ax.margins(0.15)
