"""Fixtures for the napari tests: synchronous workers and the shared data directory."""

import os
from pathlib import Path

import pytest

from napari_automat._napari import worker


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    """Settings and autosaves of the tests go to a temporary folder, never the user's."""
    monkeypatch.setenv("AUTOMAT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("AUTOMAT_AUTOSAVE_DIR", str(tmp_path / "autosave"))


@pytest.fixture
def sync_workers(monkeypatch):
    """Run widget jobs in the calling thread."""
    monkeypatch.setattr(worker, "SYNCHRONOUS", True)


@pytest.fixture
def real_file():
    """Path of a real file under $AUTOMAT_DATA_DIR, or skip."""

    def get(relative: str) -> Path:
        root = os.environ.get("AUTOMAT_DATA_DIR")
        if not root:
            pytest.skip("AUTOMAT_DATA_DIR is not set: real test data unavailable")
        path = Path(root) / relative
        if not path.is_file():
            pytest.skip(f"{path} is absent")
        return path

    return get
