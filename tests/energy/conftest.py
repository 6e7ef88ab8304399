"""Fixtures for the energy tests: a shared temporary reference cache and SrTiO3."""

import pytest


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("automat_cache")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, _session_cache, tmp_path):
    """References cache in a temp dir shared by the session (computed once); a temp HOME, offline."""
    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(_session_cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOMAT_OFFLINE", "1")


@pytest.fixture
def sto():
    """Cubic SrTiO3 perovskite, a = 3.905 Å."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
