import time

import pytest

from napari_automat.energy import backends
from napari_automat.energy.backends import get_calculator, mattersim_checkpoint_path, model_key, resolve_model
from napari_automat.model import AutomatError


def test_explicit_models_and_unknown():
    assert resolve_model("chgnet")[0] == "chgnet"
    assert resolve_model("MatterSim")[0] == "mattersim"
    with pytest.raises(AutomatError, match="unknown energy model"):
        resolve_model("mace")
    with pytest.raises(AutomatError):
        get_calculator("mace")


def test_auto_without_network_falls_back_fast(monkeypatch):
    """A blackholed host (TEST-NET-1) must not hold the caller beyond the probe timeout."""
    monkeypatch.delenv("AUTOMAT_OFFLINE")
    monkeypatch.setattr(backends, "MATTERSIM_HOST", "192.0.2.1")
    backends._reachable.cache_clear()
    start = time.perf_counter()
    name, reason = resolve_model("auto")
    assert time.perf_counter() - start < 2.0
    assert name == "chgnet"
    assert "no network" in reason and "CHGNet" in reason


def test_auto_offline_env_skips_probe(monkeypatch):
    monkeypatch.setattr(backends, "_reachable", lambda *a: pytest.fail("probed although offline"))
    assert resolve_model("auto")[0] == "chgnet"


def test_auto_downloadable_picks_mattersim(monkeypatch):
    monkeypatch.delenv("AUTOMAT_OFFLINE")
    monkeypatch.setattr(backends, "_reachable", lambda *a: True)
    name, reason = resolve_model("auto")
    assert name == "mattersim" and "downloaded" in reason


def test_auto_finds_local_checkpoints(tmp_path):
    default = mattersim_checkpoint_path()
    assert default.name == "mattersim-v1.0.0-1M.pth" and ".local/mattersim" in str(default)
    default.parent.mkdir(parents=True)
    default.write_bytes(b"weights")
    name, reason = resolve_model("auto")
    assert name == "mattersim" and str(default) in reason
    assert mattersim_checkpoint_path("mattersim-v1.0.0-5M") == default.parent / "mattersim-v1.0.0-5M.pth"

    mine = tmp_path / "mine.pth"
    name, reason = resolve_model("auto", str(mine))
    assert name == "chgnet" and "does not exist" in reason
    mine.write_bytes(b"other weights")
    assert resolve_model("auto", str(mine))[0] == "mattersim"
    assert model_key("mattersim", str(mine)) != model_key("mattersim", None)
    assert model_key("mattersim", str(mine)).startswith("mattersim-")
    assert model_key("chgnet") == "chgnet-0.3.0"


def test_missing_mattersim_file_is_a_user_error(tmp_path):
    with pytest.raises(AutomatError, match="not found"):
        get_calculator("mattersim", str(tmp_path / "nope.pth"))
