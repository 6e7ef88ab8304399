"""Small matplotlib plots in the docks, styled for napari's dark theme: the column intensity
histogram by sublattice and the properties of a structure (E–V, phonons, hull)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..layers import SUBLATTICE_COLORS

_BG, _FG = "#262930", "#d6d6d6"


class IntensityHistogram(FigureCanvasQTAgg):
    """Stacked histogram of column intensity, one colour per sublattice (as in the Points layer)."""

    def __init__(self, parent=None):
        self.figure = Figure(figsize=(3.2, 1.9), dpi=100, facecolor=_BG, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumHeight(150)
        self.axes = self.figure.add_subplot(111)
        self.plot(np.zeros(0), np.zeros(0, int))

    def plot(self, intensity: np.ndarray, sublattice: np.ndarray) -> None:
        """Redraw for these per-column intensities and sublattice labels (-1 = unknown)."""
        ax = self.axes
        ax.clear()
        ax.set_facecolor(_BG)
        for side in ax.spines.values():
            side.set_color(_FG)
        ax.tick_params(colors=_FG, labelsize=7)
        ax.set_xlabel("column intensity", color=_FG, fontsize=8)
        ax.set_ylabel("columns", color=_FG, fontsize=8)
        intensity = np.asarray(intensity, float)
        sublattice = np.asarray(sublattice, int)
        ok = np.isfinite(intensity)
        if ok.any():
            labels = sorted(set(sublattice[ok].tolist()))
            groups = [intensity[ok & (sublattice == s)] for s in labels]
            colors = [SUBLATTICE_COLORS.get(s, "#9e9e9e") for s in labels]
            names = ["unknown" if s < 0 else f"sublattice {s}" for s in labels]
            bins = np.histogram_bin_edges(intensity[ok], bins=min(40, max(5, ok.sum() // 5)))
            ax.hist(groups, bins=bins, stacked=True, color=colors, label=names)
            ax.legend(fontsize=7, facecolor=_BG, edgecolor=_FG, labelcolor=_FG, frameon=False)
        else:
            ax.text(0.5, 0.5, "no columns", color=_FG, ha="center", va="center", transform=ax.transAxes)
        self.draw_idle()


_IMAG = "#ff6e6e"  # imaginary modes and E_hull above the gate
_LINE, _POINT, _STABLE, _OWN = "#8ab4f8", "#f0f0f0", "#7bd88f", "#ffb347"


def _style(ax, xlabel: str = "", ylabel: str = "", title: str = "") -> None:
    ax.set_facecolor(_BG)
    for side in ax.spines.values():
        side.set_color(_FG)
    ax.tick_params(colors=_FG, labelsize=7)
    if xlabel:
        ax.set_xlabel(xlabel, color=_FG, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, color=_FG, fontsize=8)
    if title:
        ax.set_title(title, color=_FG, fontsize=8)


def plot_eos(ax, properties: dict) -> None:
    """The scanned E(V) points and their Birch–Murnaghan fit, relative to the fit's minimum."""
    from ...energy.properties import birch_murnaghan

    eos, b = properties["eos"], properties.get("bulk_modulus_GPa")
    v, e = np.asarray(eos["volumes_A3_per_atom"]), np.asarray(eos["energies_eV_per_atom"])
    e0 = eos.get("e0_eV_per_atom", float(np.min(e)))
    _style(ax, "volume [Å³/atom]", "E − E₀ [meV/atom]",
           f"E–V: B = {b:.0f} GPa (Birch–Murnaghan fit)" if b is not None else "E–V")
    if b is not None:
        ax.text(0.5, 0.97, f"B′ = {eos['b_prime']:.1f}, residual {properties.get('eos_residual', float('nan')):.2f} "
                "meV/atom", color=_FG, fontsize=7, ha="center", va="top", transform=ax.transAxes)
    ax.plot(v, 1000 * (e - e0), "o", color=_POINT, markersize=4, label="relaxed at each volume")
    if b is not None and "e0_eV_per_atom" in eos:
        grid = np.linspace(v.min(), v.max(), 100)
        ax.plot(grid, 1000 * (birch_murnaghan(grid, e0, eos["v0_A3_per_atom"], b, eos["b_prime"]) - e0), "-",
                color=_LINE, linewidth=1.2, label="Birch–Murnaghan fit")
        ax.axvline(eos["v0_A3_per_atom"], color=_FG, linewidth=0.5, linestyle=":")
    ax.legend(fontsize=7, facecolor=_BG, edgecolor=_FG, labelcolor=_FG, frameon=False)


def plot_phonon(ax, phonon: dict) -> None:
    """The band structure (or, without a path, the DOS); imaginary modes are drawn as negative
    frequencies in red over a red band below zero."""
    threshold = phonon.get("imaginary_threshold_THz", 0.1)
    away = [q for q in phonon.get("qpoints") or [] if any(abs(c) > 1e-6 for c in q["q"])]
    lowest = f"lowest {phonon['min_frequency_THz']:.2f} THz"
    verdict = ((f"imaginary at {len(away)} q away from Γ" if away else "imaginary at Γ only") + f", {lowest}"
               if phonon.get("imaginary") else f"no imaginary mode ({lowest})")
    band, dos = phonon.get("band"), phonon.get("dos")
    if band:
        x, f = np.asarray(band["distances"]), np.asarray(band["frequencies_THz"])
        ticks, names = [], []
        for k, ((start, stop), (a, b)) in enumerate(zip(band["segments"], band["labels"])):
            seg_x, seg_f = x[start:stop], f[start:stop]
            ax.plot(seg_x, seg_f, color=_LINE, linewidth=0.8)
            ax.plot(seg_x, np.where(seg_f < -threshold, seg_f, np.nan), color=_IMAG, linewidth=1.4)
            if not ticks or abs(ticks[-1] - seg_x[0]) > 1e-9:
                ticks.append(seg_x[0])
                names.append(a)
            elif names[-1] != a:
                names[-1] = f"{names[-1]}|{a}"
            ticks.append(seg_x[-1])
            names.append(b)
        ax.set_xticks(ticks, names)
        ax.set_xlim(x.min(), x.max())
        for t in ticks:
            ax.axvline(t, color=_FG, linewidth=0.3)
        _style(ax, "", "frequency [THz]", f"phonons: {verdict}")
        low = float(f.min())
    else:
        freq, d = np.asarray(dos["frequencies_THz"]), np.asarray(dos["dos"])
        ax.plot(freq, d, color=_LINE, linewidth=1.0)
        ax.fill_between(freq, d, where=freq < -threshold, color=_IMAG, alpha=0.6)
        _style(ax, "frequency [THz]", "DOS [1/THz]", f"phonon DOS: {verdict}")
        low = float(freq.min())
    zero_line, span = (ax.axhline, ax.axhspan) if band else (ax.axvline, ax.axvspan)
    zero_line(0, color=_FG, linewidth=0.6)
    if low < -threshold:
        span(low * 1.05, 0, color=_IMAG, alpha=0.12, linewidth=0)
        ax.text(0.99, 0.02, "imaginary (plotted as negative)", color=_IMAG, fontsize=7, ha="right", va="bottom",
                transform=ax.transAxes)


def plot_hull(ax, properties: dict, limit_meV: float | None = None) -> None:
    """Binary: formation energy vs composition with the hull line, the library phases and the
    structure; other systems: bars of E_hull for the structure and the library's phases of its
    composition, with its decomposition. ``limit_meV``: the agent's gate, marked when exceeded."""
    hull, e_hull = properties.get("hull") or {}, properties.get("e_above_hull_meV")
    over = limit_meV is not None and e_hull is not None and e_hull > limit_meV
    title = (f"hull of {hull.get('chemsys', '?')}: E_hull = {e_hull:.0f} meV/atom"
             + (f" (> {limit_meV:.0f})" if over else "")) if e_hull is not None else "hull"
    elements, entries, own = hull.get("elements") or [], hull.get("entries") or [], hull.get("structure")
    if len(elements) == 2 and entries and own:
        el = elements[1]
        _style(ax, f"x in {elements[0]}₁₋ₓ{el}ₓ", "formation energy [eV/atom]", title)
        xs = np.array([r["fractions"][el] for r in entries])
        es = np.array([r["formation_energy_eV_per_atom"] for r in entries])
        on = np.array([r["stable"] for r in entries])
        order = np.argsort(xs[on])
        ax.plot(xs[on][order], es[on][order], "-", color=_STABLE, linewidth=1.0, label="hull")
        ax.plot(xs[on], es[on], "o", color=_STABLE, markersize=4, label="library phases on the hull")
        ax.plot(xs[~on], es[~on], "o", mfc="none", color="#9e9e9e", markersize=4, label="above the hull")
        for r in entries:
            if r["stable"] and 0 < r["fractions"][el] < 1:
                ax.annotate(r["name"].split()[0], (r["fractions"][el], r["formation_energy_eV_per_atom"]),
                            textcoords="offset points", xytext=(0, -10), ha="center", color=_STABLE, fontsize=7)
        ax.plot([own["fractions"][el]], [own["formation_energy_eV_per_atom"]], "*", color=_IMAG if over else _OWN,
                markersize=11, label="this structure")
        ax.legend(fontsize=6, facecolor=_BG, edgecolor=_FG, labelcolor=_FG, frameon=False, loc="best")
        return
    # ternary and more (or no phase table): E_hull beside the library's phases of the same composition
    fractions = (own or {}).get("fractions")
    same = [r for r in entries if fractions and r["fractions"] == fractions][:5]
    rows = ([("this structure", e_hull, _IMAG if over else _OWN)] if e_hull is not None else []) + [
        (r["name"].split(" (")[0], r["e_above_hull_meV"], _STABLE if r["stable"] else "#9e9e9e") for r in same]
    missing = hull.get("missing_subsystems") or []
    _style(ax, "E above hull [meV/atom]" + (f"; no library phase of {', '.join(missing)}" if missing else ""), "",
           title)
    values = [v for _, v, _ in rows]
    ax.barh(range(len(rows)), values, color=[c for _, _, c in rows], height=0.6)
    ax.set_yticks(range(len(rows)), [name for name, _, _ in rows], fontsize=7)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.0f}", color=_FG, fontsize=7, va="center")
    high = max(values + [1.0])
    if limit_meV is not None and high >= limit_meV / 2:
        ax.axvline(limit_meV, color=_IMAG, linestyle="--", linewidth=0.8)
        high = max(high, limit_meV)
    ax.set_xlim(min(values + [0.0]) - 0.05 * high, 1.25 * high)
    decomposition = properties.get("decomposition") or {}
    if decomposition:
        parts = ", ".join(f"{n.split(' (')[0]} {x:.2f}" for n, x in decomposition.items())
        ax.text(0.99, 0.04, f"decomposes into {parts}",
                color=_FG, fontsize=7, ha="right", va="bottom", transform=ax.transAxes)


class PropertiesPlot(FigureCanvasQTAgg):
    """The properties of a structure (``energy.properties`` block): E–V with its fit, phonons, hull
    position; one row per property computed, hidden when there is none."""

    ROW_PX = 190

    def __init__(self, parent=None):
        self.figure = Figure(figsize=(3.6, 2.0), dpi=100, facecolor=_BG, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.panels: list[str] = []
        self.setVisible(False)

    def plot(self, properties: dict | None, limit_meV: float | None = None) -> list[str]:
        """Redraw for ``properties`` (None: hide); returns the panels drawn (``eos``, ``phonon``, ``hull``)."""
        self.figure.clear()
        properties = properties or {}
        panels = [name for name, ok in (("eos", properties.get("eos")),
                                        ("phonon", (properties.get("phonon") or {}).get("band")
                                         or (properties.get("phonon") or {}).get("dos")),
                                        ("hull", properties.get("e_above_hull_meV") is not None)) if ok]
        for k, name in enumerate(panels):
            ax = self.figure.add_subplot(len(panels), 1, k + 1)
            if name == "eos":
                plot_eos(ax, properties)
            elif name == "phonon":
                plot_phonon(ax, properties["phonon"])
            else:
                plot_hull(ax, properties, limit_meV)
        self.panels = panels
        self.setMinimumHeight(self.ROW_PX * len(panels))
        self.setVisible(bool(panels))
        self.draw_idle()
        return panels
