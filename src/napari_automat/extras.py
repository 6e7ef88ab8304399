"""Optional dependencies: the extras of ``pyproject.toml`` and the one-line message a missing one gives.

The core installs with ``pip install napari-automat``; ``[gui]`` (napari), ``[energy]`` (torch,
CHGNet, MatterSim), ``[sim]`` (abTEM), ``[agent]`` (openai), ``[batch]`` (dask.distributed) and
``[denoise]`` (torch, for the learned denoiser) add the rest. Code that needs one of them imports it through :func:`require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .model import AutomatError

EXTRAS = ("gui", "energy", "sim", "agent", "batch", "denoise")


class MissingExtra(AutomatError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(extra: str, module: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming the ``extra`` that installs it."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}: one of {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(f"{exc.name or module} is not installed; it comes with the [{extra}] extra: "
                           f"pip install 'napari-automat[{extra}]'") from None
