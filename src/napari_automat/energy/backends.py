"""The machine-learned potentials: choose one (:func:`resolve_model`) and load it (:func:`get_calculator`).

MatterSim 1.2.3 keeps its pretrained checkpoints in ``~/.local/mattersim/pretrained_models``
(``mattersim-v1.0.0-1M.pth`` by default) and downloads them from GitHub on first use.
CHGNet 0.4.2 ships its weights (model 0.3.0) inside the package, so it always works offline.
The ``checkpoint`` argument is about MatterSim only (a file path or a pretrained name);
CHGNet always uses its bundled 0.3.0 model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import socket
import threading
from pathlib import Path
from typing import Optional

from ..extras import require
from ..model import AutomatError

MODELS = ("mattersim", "chgnet")
CHGNET_VERSION = "0.3.0"
MATTERSIM_DEFAULT = "mattersim-v1.0.0-1M.pth"
#: Pretrained names MatterSim downloads by itself (lower case, without ``.pth``) -> file name.
MATTERSIM_PRETRAINED = {"mattersim-v1.0.0-1m": MATTERSIM_DEFAULT, "mattersim-v1.0.0-5m": "mattersim-v1.0.0-5M.pth"}
#: Where MatterSim downloads from; probed (TCP, port 443) to decide whether a download can work.
MATTERSIM_HOST = "raw.githubusercontent.com"
#: Longest wait for that probe [s]; set ``AUTOMAT_OFFLINE=1`` to skip it.
PROBE_TIMEOUT_S = 1.0


def mattersim_folder() -> Path:
    """MatterSim's own checkpoint cache folder."""
    return Path(os.path.expanduser("~/.local/mattersim/pretrained_models"))


def _pretrained_name(checkpoint: Optional[str]) -> Optional[str]:
    """The pretrained file name when ``checkpoint`` is None or a pretrained name, else None."""
    if checkpoint is None:
        return MATTERSIM_DEFAULT
    key = str(checkpoint).lower()
    return MATTERSIM_PRETRAINED.get(key[:-4] if key.endswith(".pth") else key)


def mattersim_checkpoint_path(checkpoint: Optional[str] = None) -> Path:
    """The file a MatterSim ``checkpoint`` (None, a pretrained name or a path) refers to."""
    name = _pretrained_name(checkpoint)
    return mattersim_folder() / name if name else Path(os.path.expanduser(str(checkpoint)))


def _offline() -> bool:
    return os.environ.get("AUTOMAT_OFFLINE", "").strip().lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout_s: float) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout_s`` (asked once per process).

    The probe runs in a daemon thread so that a slow name lookup cannot hold the caller longer.
    """
    answer = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
            answer.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(answer)


def resolve_model(model: str = "auto", checkpoint: Optional[str] = None) -> tuple[str, str]:
    """The backend to use, ``("mattersim" | "chgnet", reason)``.

    ``auto`` picks MatterSim when its checkpoint is a local file (``checkpoint`` path, or the
    pretrained one in MatterSim's cache folder) or can be downloaded (a quick probe of
    ``MATTERSIM_HOST``, at most ``PROBE_TIMEOUT_S``), and CHGNet otherwise.
    """
    name = (model or "auto").strip().lower()
    if name in MODELS:
        return name, f"{name} requested"
    if name != "auto":
        raise AutomatError(f"unknown energy model {model!r}: use auto, mattersim or chgnet")
    path = mattersim_checkpoint_path(checkpoint)
    if path.is_file():
        return "mattersim", f"auto chose MatterSim: checkpoint found at {path}"
    fallback = f"using CHGNet {CHGNET_VERSION} (bundled weights)"
    if _pretrained_name(checkpoint) is None:
        return "chgnet", f"auto: MatterSim checkpoint {path} does not exist; {fallback}"
    if not _offline() and _reachable(MATTERSIM_HOST, PROBE_TIMEOUT_S):
        return "mattersim", f"auto chose MatterSim: {path.name} not found locally, it will be downloaded to {path.parent}"
    return "chgnet", f"auto: no MatterSim checkpoint at {path} and no network to download it; {fallback}"


def check_installed(model: str) -> None:
    """Fail fast (:class:`~napari_automat.extras.MissingExtra`) when ``model`` names a backend that is
    not installed; ``auto`` and ``none`` pass (without the ``[energy]`` extra the stages that need
    an energy then say so and the chain goes on)."""
    name = (model or "auto").strip().lower()
    if name in MODELS:
        require("energy", name)


def get_calculator(name: str, checkpoint: Optional[str] = None, device: str = "cpu"):
    """An ASE calculator for backend ``name`` (``mattersim`` or ``chgnet``), loaded once per process.

    Calculators keep state between calls: use one from one thread at a time.
    """
    name = name.strip().lower()
    if name not in MODELS:
        raise AutomatError(f"unknown energy model {name!r}: use mattersim or chgnet")
    if name == "chgnet":
        return _chgnet(device)
    path = mattersim_checkpoint_path(checkpoint)
    if path.is_file():
        return _mattersim(str(path.resolve()), device)
    pretrained = _pretrained_name(checkpoint)
    if pretrained is None:
        raise AutomatError(f"MatterSim checkpoint not found: {path}")
    return _mattersim(pretrained, device)


@functools.lru_cache(maxsize=None)
def _chgnet(device: str):
    require("energy", "chgnet.model")
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device and size
        model = CHGNet.load(model_name=CHGNET_VERSION, use_device=device, verbose=False)
        return CHGNetCalculator(model, use_device=device)


@functools.lru_cache(maxsize=None)
def _mattersim(load_path: str, device: str):
    """``load_path`` is a file, or a pretrained name that MatterSim downloads into its folder."""
    require("energy", "mattersim.forcefield.potential")
    from loguru import logger

    logger.disable("mattersim")
    from mattersim.forcefield.potential import MatterSimCalculator, Potential

    try:
        potential = Potential.from_checkpoint(load_path=load_path, device=device, load_training_state=False)
    except Exception as exc:  # a missing or broken file, a failed download (requests' errors)
        raise AutomatError(f"could not load MatterSim checkpoint {load_path}: {exc}") from exc
    return MatterSimCalculator(potential=potential, device=device)


def model_key(name: str, checkpoint: Optional[str] = None) -> str:
    """A short stable id of the weights, for caches: ``chgnet-0.3.0`` or ``mattersim-<sha256[:12]>``."""
    if name == "chgnet":
        return f"chgnet-{CHGNET_VERSION}"
    path = mattersim_checkpoint_path(checkpoint)
    if not path.is_file():
        raise AutomatError(f"MatterSim checkpoint not found: {path}")
    stat = path.stat()
    return f"mattersim-{_file_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"


@functools.lru_cache(maxsize=None)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]
