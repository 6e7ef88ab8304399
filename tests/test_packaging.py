"""The wheel, installed with the core dependencies only into a fresh virtualenv, runs the chain.

About 2.5 minutes (the core install from the package index is most of it).
"""

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from napari_automat.templates.library import FILENAME as LIBRARY_FILE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: What the build needs from the working tree (copied, so that building leaves it untouched).
SOURCES = ("src", "pyproject.toml", "README.md", "LICENSE")
#: Packages of the extras that the core install must not bring.
EXTRA_MODULES = ("torch", "chgnet", "mattersim", "abtem", "napari", "magicgui", "qtpy", "openai", "distributed")


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTOMAT_OFFLINE": "1", "PYTHONPATH": ""}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("build")
    (tmp / "project").mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tmp / "project" / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, tmp / "project" / name)
    out = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", tmp / "project")
    assert out.returncode == 0, out.stderr
    return next((tmp / "dist").glob("napari_automat-*.whl"))


@pytest.fixture(scope="module")
def core_bin(wheel, tmp_path_factory) -> Path:
    """The scripts folder of a fresh virtualenv holding the wheel and its core dependencies."""
    env = tmp_path_factory.mktemp("core") / "venv"
    venv.create(env, with_pip=True)
    scripts = env / ("Scripts" if os.name == "nt" else "bin")
    out = _run(scripts / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel)
    assert out.returncode == 0, out.stderr
    return scripts


def test_wheel_holds_the_template_library_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert f"napari_automat/data/{LIBRARY_FILE}" in names
    assert "napari_automat/napari.yaml" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)


def test_core_install_has_no_extras(core_bin):
    code = ("import importlib.util as u; print(' '.join(m for m in %r if u.find_spec(m)))" % (EXTRA_MODULES,))
    out = _run(core_bin / "python", "-c", code)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


def test_core_install_runs_the_sample_without_energy(core_bin, tmp_path):
    out = _run(core_bin / "automat", "run", "--sample", "srtio3", "--energy-model", "none", "-o", tmp_path / "out", "-q")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert {"structure.cif", "result.json", "columns.csv", "overview.png"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_core_install_names_the_energy_extra(core_bin, tmp_path):
    out = _run(core_bin / "automat", "run", "--sample", "srtio3", "--energy-model", "chgnet", "-o", tmp_path / "out", "-q")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'napari-automat[energy]'" in lines[0], out.stderr
    assert not (tmp_path / "out").exists()
