"""The energy widget's properties: the level choice, the run on the relaxed structure, cancel, and
the plots (E–V with its fit, phonons with imaginary modes marked, the hull position).

The potential is stood in for: the energy is a fixed report and the properties block is made by
the core functions with ASE's EMT (phonons, E–V) and a cached hull table (the physics with CHGNet
is tested in tests/energy/). Set ``AUTOMAT_SCREENSHOT_DIR=docs/images`` for the user guide's
screenshot, which runs CHGNet on SrTiO3.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Points

import napari_automat.energy as energy_pkg
import napari_automat.energy.properties as props
from napari_automat._napari.layers import STRUCTURE_KEY, add_layer, structure_layer_data
from napari_automat._napari.widgets import _plots
from napari_automat._napari.widgets.energy import PROPERTIES_KEY, EnergyWidget
from napari_automat.model import EnergyReport

pytestmark = pytest.mark.gui

SHOT_DIR = os.environ.get("AUTOMAT_SCREENSHOT_DIR")


@pytest.fixture
def viewer(make_napari_viewer, sync_workers):
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"
    v = make_napari_viewer(show=True)
    v.window._qt_window.resize(1600, 1000)
    return v


def _nio():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(4.18), ["Ni"] * 4 + ["O"] * 4,
                     [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    """A level-'all' properties block from the core functions: E–V of fcc Cu and phonons of simple
    cubic Cu (unstable) with EMT, the Ni–O hull from a cached table with set energies."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from napari_automat.energy.references import save_table
    from napari_automat.templates.library import load_library

    library = load_library()
    energies = {"Ni": -5.0, "O2": -4.0, "NiO": -6.5}
    phases = {library.entries[i]["fingerprint"]: {
        "id": library.entries[i]["id"], "formula": library.entries[i]["reduced_formula"],
        "spacegroup": library.entries[i]["spacegroup_symbol"], "converged": True,
        "energy_per_atom_eV": energies[library.entries[i]["reduced_formula"]]
        + (0.0 if library.entries[i]["spacegroup_symbol"] in ("Fm-3m", "R-3m") else 0.3)}
        for i in props.library_phases(library, ["Ni", "O"])}
    cache = tmp_path_factory.mktemp("hull_cache")
    old = os.environ.get("AUTOMAT_CACHE_DIR")
    os.environ["AUTOMAT_CACHE_DIR"] = str(cache)
    try:
        save_table(props.hull_path("test-model", "Ni-O"), {
            "recipe": props.HULL_RECIPE, "settings": {"fmax_eV_A": 0.05, "max_steps": props.HULL_MAX_STEPS},
            "chemsys": "Ni-O", "phases": phases})
        hull = props.hull_energy(_nio(), -6.2, None, "test-model", library)
    finally:
        os.environ.pop("AUTOMAT_CACHE_DIR") if old is None else os.environ.__setitem__("AUTOMAT_CACHE_DIR", old)
    out = props._empty("all", "chgnet")
    out.update({k: v for k, v in hull.items() if k != "warnings"})
    out.update(props.bulk_modulus(bulk("Cu", "fcc", a=3.61), EMT(), steps=3))
    out["phonon"] = props.phonons(bulk("Cu", "sc", a=2.4), EMT())
    return out


@pytest.fixture
def fakes(monkeypatch, block):
    """Energy: a fixed report whose relaxed structure is a new object; properties: ``block``."""
    seen = {"energy": [], "properties": []}

    def compute_energy(structure, model="auto", relax=True, **kwargs):
        relaxed = structure.copy()
        relaxed.scale_lattice(structure.volume * 1.01)
        seen["energy"].append(structure)
        return EnergyReport("chgnet", -6.2, -1.7, relax, 0.01, steps=3, relaxed_structure=relaxed if relax else None)

    def compute_properties(structure, level="fast", model="auto", energy_per_atom_eV=None, progress=None, **kwargs):
        seen["properties"].append(dict(structure=structure, level=level, model=model, energy=energy_per_atom_eV))
        progress(0.5, "hull")
        return dict(block, level=level) if level == "all" else dict(block, level=level, phonon=None, elastic=None)

    monkeypatch.setattr(energy_pkg, "compute_energy", compute_energy)
    monkeypatch.setattr(props, "compute_properties", compute_properties)
    return seen


def _structure_layer(viewer, structure, name="NiO"):
    atoms, _ = structure_layer_data(structure, name=name)
    return add_layer(viewer, atoms)


def _red_lines(ax):
    return [line for line in ax.get_lines() if line.get_color() == _plots._IMAG
            and np.isfinite(np.asarray(line.get_ydata(), float)).any()]


def test_properties_level_runs_on_the_relaxed_structure_and_plots(viewer, fakes):
    w = EnergyWidget(viewer)
    viewer.window.add_dock_widget(w)
    layer = _structure_layer(viewer, _nio())
    assert w.structure.layer() is layer
    assert [w.properties.itemText(i) for i in range(w.properties.count())] == ["none", "fast", "all"]
    assert w.properties.currentText() == "none"

    w.run_button.click()  # none: the energy only
    assert fakes["properties"] == [] and not w.plots.isVisible() and "formation energy" in w.result.text()

    w.structure.set_layer(layer)
    w.properties.setCurrentText("all")
    w.run_button.click()
    (call,) = fakes["properties"]
    relaxed = [lay for lay in viewer.layers if lay.name.startswith("NiO relaxed") and isinstance(lay, Points)][-1]
    assert call["structure"] is relaxed.metadata[STRUCTURE_KEY] and call["structure"] is not layer.metadata[STRUCTURE_KEY]
    assert call["level"] == "all" and call["model"] == "chgnet" and call["energy"] == -6.2
    assert layer.metadata[PROPERTIES_KEY]["level"] == "all" and relaxed.metadata[PROPERTIES_KEY] is not None
    assert "energy and properties" in w.status.text() and w.run_button.isEnabled()
    assert "E above hull" in w.result.text() and "bulk modulus" in w.result.text() and "imaginary" in w.result.text()

    assert w.plots.isVisible() and w.plots.panels == ["eos", "phonon", "hull"]
    eos_ax, phonon_ax, hull_ax = w.plots.figure.axes
    b = layer.metadata[PROPERTIES_KEY]["bulk_modulus_GPa"]
    assert f"B = {b:.0f} GPa" in eos_ax.get_title()
    points, curve = eos_ax.get_lines()[:2]  # the scan, then the fit (its minimum, E0, at 0)
    assert len(points.get_xdata()) == props.EOS_POINTS and len(curve.get_xdata()) == 100
    assert np.nanmin(curve.get_ydata()) == pytest.approx(0.0, abs=0.5)
    assert "imaginary" in phonon_ax.get_title() and "away from Γ" in phonon_ax.get_title()
    assert _red_lines(phonon_ax) and phonon_ax.get_ylim()[0] < 0
    assert [t.get_text() for t in phonon_ax.get_xticklabels()][0] == "Γ"
    assert "E_hull = 300 meV/atom (> 200)" in hull_ax.get_title()
    labels = [line.get_label() for line in hull_ax.get_lines()]
    assert "hull" in labels and "this structure" in labels
    star = hull_ax.get_lines()[labels.index("this structure")]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (0.5, -1.7)

    # another layer without results shows none; the relaxed one shows the same
    other = _structure_layer(viewer, _nio(), name="other")
    assert w.structure.layer() is other and not w.plots.isVisible() and w.result.text() == ""
    w.structure.set_layer(relaxed)
    assert w.plots.isVisible() and w.plots.panels == ["eos", "phonon", "hull"]

    w.properties.setCurrentText("fast")  # fast: no phonon panel
    w.structure.set_layer(layer)
    w.run_button.click()
    assert w.plots.panels == ["eos", "hull"]


def test_cancel_during_the_properties(make_napari_viewer, fakes, monkeypatch, qtbot):
    """Threaded, as for a user: Cancel while the hull is built stops at the next progress report."""
    import threading

    from napari_automat._napari import worker

    monkeypatch.setattr(worker, "SYNCHRONOUS", False)
    viewer = make_napari_viewer(show=False)
    w = EnergyWidget(viewer)
    layer = _structure_layer(viewer, _nio())
    started, release = threading.Event(), threading.Event()

    def slow(structure, level="fast", progress=None, **kwargs):
        progress(0.0, "hull")
        started.set()
        release.wait(20)
        progress(0.1, "hull phase 1/5")  # raises Cancelled once Cancel was pressed
        raise AssertionError("not cancelled")

    monkeypatch.setattr(props, "compute_properties", slow)
    w.properties.setCurrentText("fast")
    w.run_button.click()
    qtbot.waitUntil(started.is_set, timeout=20000)
    assert w.cancel_button.isEnabled() and not w.run_button.isEnabled()
    w.cancel_button.click()
    release.set()
    qtbot.waitUntil(w.run_button.isEnabled, timeout=20000)
    assert w.status.text() == "cancelled" and not w.cancel_button.isEnabled()
    assert PROPERTIES_KEY not in layer.metadata and not w.plots.isVisible()


def test_hull_of_a_ternary_is_a_decomposition_bar(qtbot):
    canvas = _plots.PropertiesPlot()
    qtbot.addWidget(canvas)
    block = {"e_above_hull_meV": 12.0, "decomposition": {"SrO Fm-3m (a)": 0.4, "TiO2 P4_2/mnm (b)": 0.6},
             "hull": {"chemsys": "O-Sr-Ti", "elements": ["O", "Sr", "Ti"], "missing_subsystems": ["Sr-Ti"],
                      "structure": {"fractions": {"O": 0.6, "Sr": 0.2, "Ti": 0.2}, "formation_energy_eV_per_atom": -3.3},
                      "entries": [{"name": "SrO Fm-3m (a)", "fractions": {"O": 0.5, "Sr": 0.5, "Ti": 0.0},
                                   "formation_energy_eV_per_atom": -3.0, "e_above_hull_meV": 0.0, "stable": True},
                                  {"name": "SrTiO3 I4/mcm (c)", "fractions": {"O": 0.6, "Sr": 0.2, "Ti": 0.2},
                                   "formation_energy_eV_per_atom": -3.2, "e_above_hull_meV": 140.0, "stable": False}]}}
    assert canvas.plot(block, 200.0) == ["hull"]
    (ax,) = canvas.figure.axes
    assert "E_hull = 12 meV/atom" in ax.get_title() and "(>" not in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["this structure", "SrTiO3 I4/mcm"]
    assert [round(p.get_width()) for p in ax.patches] == [12, 140]
    assert "Sr-Ti" in ax.get_xlabel() and [line.get_xdata()[0] for line in ax.get_lines()] == [200.0]
    assert any(t.get_text() == "decomposes into SrO Fm-3m 0.40, TiO2 P4_2/mnm 0.60" for t in ax.texts)
    assert canvas.plot(None) == [] and not canvas.isVisible()


def test_phonon_dos_when_there_is_no_band_path(qtbot, block):
    canvas = _plots.PropertiesPlot()
    qtbot.addWidget(canvas)
    phonon = dict(block["phonon"], band=None)
    assert canvas.plot({"phonon": phonon}) == ["phonon"]
    (ax,) = canvas.figure.axes
    assert ax.get_xlabel() == "frequency [THz]" and "imaginary" in ax.get_title()
    assert ax.collections  # the imaginary part of the DOS is filled in red


@pytest.mark.skipif(not SHOT_DIR, reason="AUTOMAT_SCREENSHOT_DIR is not set: the screenshot runs CHGNet on SrTiO3")
def test_screenshot_srtio3_properties(make_napari_viewer, sync_workers):
    """docs/images/13_energy_properties.png: SrTiO3 (Pm-3m), CHGNet, level all."""
    from PIL import Image
    from pymatgen.core import Lattice, Structure
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 1150)
    sto = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    layer = _structure_layer(viewer, sto, name="SrTiO3")
    viewer.dims.ndisplay = 3
    dock_widget, w = viewer.window.add_plugin_dock_widget("napari-automat", "7 Energy")
    viewer.window._qt_window.resizeDocks([dock_widget], [560], Qt.Horizontal)
    w.structure.set_layer(layer)
    w.model.setCurrentText("chgnet")
    w.properties.setCurrentText(os.environ.get("AUTOMAT_SCREENSHOT_LEVEL", "all"))
    w.run_button.click()
    assert w.plots.isVisible(), w.status.text()
    w.structure.set_layer(layer)
    viewer.reset_view()
    QApplication.processEvents()
    path = Path(SHOT_DIR) / "13_energy_properties.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
