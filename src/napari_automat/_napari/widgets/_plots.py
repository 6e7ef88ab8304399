"""A small matplotlib histogram of column intensities by sublattice, styled for napari's dark theme."""

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
