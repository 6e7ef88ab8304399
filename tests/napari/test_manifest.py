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


def _readers(manifest) -> dict:
    return {reader.command: set(reader.filename_patterns) for reader in manifest.contributions.readers}


def test_reader_covers_microscopy_formats_and_claims_only_what_it_reads(manifest):
    from napari_automat.io.read import SUPPORTED_EXTENSIONS

    patterns = _readers(manifest)["napari-automat.get_reader"]
    assert patterns == {f"*.{ext}" for ext in ("dm3", "dm4", "emd", "ser", "emi", "mrc", "tif", "tiff", "hspy",
                                                "hdf5", "mat")}
    assert {p[2:] for p in patterns} <= set(SUPPORTED_EXTENSIONS)  # no extension the reader then rejects


def test_results_reopen(manifest):
    readers = _readers(manifest)
    assert readers["napari-automat.get_columns_reader"] == {"*columns.csv"}
    assert readers["napari-automat.get_structure_reader"] == {"*.cif"}


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
