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
