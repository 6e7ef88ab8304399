"""The npe2 manifest: valid, every command importable, the promised contributions present."""

import importlib
from pathlib import Path

import pytest
from npe2 import PluginManifest

import napari_automat

MANIFEST = Path(napari_automat.__file__).parent / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    return PluginManifest.from_file(MANIFEST)


def test_commands_point_at_importable_callables_in_submodules(manifest):
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert module.startswith("napari_automat._napari."), command.python_name
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


def test_reader_covers_microscopy_formats(manifest):
    (reader,) = manifest.contributions.readers
    patterns = set(reader.filename_patterns)
    for ext in ("dm3", "dm4", "emd", "ser", "emi", "mrc", "tif", "tiff", "hspy", "hdf5", "h5", "mat", "png", "jpg"):
        assert f"*.{ext}" in patterns


def test_writers_widgets_and_sample(manifest):
    writers = {w.command: w for w in manifest.contributions.writers}
    assert writers["napari-automat.write_columns"].filename_extensions == [".csv"]
    assert writers["napari-automat.write_structure"].filename_extensions == [".cif"]
    names = [w.display_name for w in manifest.contributions.widgets]
    assert len(names) == 8 and names[-1] == "Agent (full chain)"
    assert [s.key for s in manifest.contributions.sample_data] == ["srtio3"]


def test_importing_the_plugin_modules_stays_light():
    import subprocess
    import sys

    code = ("import sys, napari_automat._napari.reader, napari_automat._napari.writer, "
            "napari_automat._napari.sample_data, napari_automat._napari.layers; "
            "print(','.join(m for m in ('torch', 'pymatgen', 'chgnet', 'mattersim', 'abtem') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
