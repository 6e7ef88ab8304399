"""One workflow: the Python API, the CLI, the agent (rules planner) and a click through the napari step
widgets give the same top structure and an identical CIF on the same image."""

import json

import numpy as np
import pytest

from napari_automat.config import PipelineConfig
from napari_automat.io.write import write_cif

pytestmark = [pytest.mark.gui, pytest.mark.slow]
PLUGIN = "napari-automat"


def simulated(tmp_path, name: str, atoms, zone_axis, pixel_A: float = 0.12, dose: float = 5e4):
    """A noisy incoherent-model HAADF image of ``atoms`` (ASE) written as a calibrated TIFF."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from napari_automat.io.write import write_tiff_calibrated
    from napari_automat.simulate import incoherent_image

    structure = AseAtomsAdaptor.get_structure(atoms)
    clean = incoherent_image(structure, zone_axis, pixel_size_A=pixel_A, field_of_view_A=30.0, rotation_deg=17.0)
    expected = clean.data / clean.data.mean() * 0.05 * dose * pixel_A ** 2
    noisy = np.random.default_rng(0).poisson(expected).astype(np.float32)
    path = tmp_path / f"{name}.tif"
    write_tiff_calibrated(path, noisy, pixel_A, {"signal": "HAADF"})
    return path


def cases(tmp_path, data_root):
    from ase.build import bulk, mx2

    out = [("GaAs [110]", simulated(tmp_path, "gaas", bulk("GaAs", "zincblende", a=5.653, cubic=True), (1, 1, 0)), "Ga,As"),
           ("MoS2 sheet", simulated(tmp_path, "mos2", mx2("MoS2", vacuum=8.0), (0, 0, 1), pixel_A=0.1), "Mo,S"),
           ("Cu [110], no hint", simulated(tmp_path, "cu", bulk("Cu", "fcc", a=3.615, cubic=True), (1, 1, 0)), "")]
    if data_root is not None:
        for name in ("atomap_test_ADF_cropped.hdf5", "atomap_test_ABF_cropped.hdf5"):
            path = data_root / "real" / name
            if path.is_file():
                out.append((name, path, "Sr,Ti,O"))
    return out


def cif_text(structure, symprec, path) -> str:
    write_cif(path, structure, symprec=symprec)
    return cif_body(path.read_text())


def cif_body(text: str) -> str:
    """A CIF without its comment lines (provenance the CLI adds)."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def through_widgets(viewer, path, elements: str):
    """Read, denoise, detect, retrieve and reconstruct with the step widgets' defaults."""
    from napari.layers import Points

    from napari_automat._napari.layers import STRUCTURE_KEY
    from napari_automat._napari.widgets.reconstruct import RECONSTRUCTION_KEY

    viewer.layers.clear()
    viewer.window.remove_dock_widget("all")

    def widget(name):
        return viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]

    (image,) = widget("1 Read and calibrate").open_path(str(path))
    denoise = widget("2 Denoise")
    denoise.image.set_layer(image)
    denoise.run_button.click()
    detect = widget("3 Detect atom columns")
    detect.image.set_layer(viewer.layers[f"{image.name} denoised"])
    detect.run_button.click()
    points = viewer.layers[f"{image.name} denoised columns"]
    retrieve = widget("5 Retrieve templates")
    retrieve.points.set_layer(points)
    retrieve.elements.setText(elements)
    retrieve.run_button.click()
    reconstruct = widget("6 Reconstruct 3D structure")
    reconstruct.points.set_layer(points)
    reconstruct.run_button.click()
    layer = next(lay for lay in viewer.layers if STRUCTURE_KEY in lay.metadata and isinstance(lay, Points))
    return layer.metadata[RECONSTRUCTION_KEY]


def test_every_face_gives_the_same_structure(make_napari_viewer, sync_workers, tmp_path, monkeypatch):
    import os
    from pathlib import Path

    from napari_automat.agent import run_agent
    from napari_automat.cli import main
    from napari_automat.pipeline import run

    root = os.environ.get("AUTOMAT_DATA_DIR")
    data_root = Path(root) if root and Path(root).is_dir() else None
    viewer = make_napari_viewer(show=True)
    checked = 0
    for name, path, elements in cases(tmp_path, data_root):
        config = PipelineConfig(elements=elements, energy_model="none")
        api = run(path, config)
        agent = run_agent(path, config, planner="rules").result
        out = tmp_path / f"cli-{checked}"
        argv = ["run", str(path), "-o", str(out), "--energy-model", "none", "-q"] + (["--elements", elements]
                                                                                      if elements else [])
        assert main(argv) == 0, name
        cli = json.loads((out / "result.json").read_text())
        widgets = through_widgets(viewer, path, elements)

        top = api.hits[0].template_id
        assert agent.hits[0].template_id == top and cli["retrieval"][0]["template_id"] == top, name
        reference = cif_text(api.reconstruction.structure, api.reconstruction.symprec_A, tmp_path / "api.cif")
        assert cif_text(agent.reconstruction.structure, agent.reconstruction.symprec_A, tmp_path / "a.cif") == reference
        assert cif_body((out / "structure.cif").read_text()) == reference, name
        assert widgets.template_id == api.reconstruction.template_id, name
        assert cif_text(widgets.structure, widgets.symprec_A, tmp_path / "w.cif") == reference, name
        assert cli["decision"]["probability"] == round(api.decision.probability, 4), name
        checked += 1
    assert checked >= 3
