"""Shared test fixtures."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder (/work/shared/data layout) named by $AUTOMAT_DATA_DIR, or skip."""
    value = os.environ.get("AUTOMAT_DATA_DIR", "").strip()
    if not value or not Path(value).is_dir():
        pytest.skip("AUTOMAT_DATA_DIR not set / folder absent: real-data test skipped")
    return Path(value)


@pytest.fixture(scope="session")
def srtio3_result():
    """The bundled SrTiO3 [001] sample run up to reconstruction (hint Sr, Ti, O; no energy), once
    per session. Tests must not modify it."""
    from napari_automat.config import PipelineConfig
    from napari_automat.io.datasets import sample_path
    from napari_automat.pipeline import run

    if not sample_path("srtio3").exists():
        pytest.skip("bundled sample missing")
    return run(sample_path("srtio3"), PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none"),
               stop_after="reconstruct")
