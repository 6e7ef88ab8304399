"""The core stays light: importing the CLI, pipeline or the napari reader pulls no heavy library."""

import subprocess
import sys

HEAVY = ["torch", "napari", "qtpy", "abtem", "mattersim", "chgnet", "pymatgen", "rsciio", "matplotlib", "dask"]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_core_imports_nothing_heavy():
    loaded = _loaded_after("import napari_automat.cli, napari_automat.pipeline, napari_automat.agent, "
                           "napari_automat.model, napari_automat.config")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_reader_entry_point_is_light():
    loaded = _loaded_after("from napari_automat._napari.reader import get_reader")
    assert not loaded & (set(HEAVY) - {"napari", "qtpy"}), loaded & set(HEAVY)
