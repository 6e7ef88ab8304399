"""Plugin settings that persist between runs: the element hint, the energy model, the MatterSim
checkpoint, the LLM endpoint and model. Never an API key.

They live in ``settings.json`` under ``platformdirs.user_config_dir("napari-automat")``, or under
``$AUTOMAT_CONFIG_DIR`` when that is set (tests set it, so they never touch the real home). A missing
file gives the defaults; a corrupt or invalid one gives the defaults for what is wrong and a warning,
never an exception. No napari here: widgets prefill from :func:`load_settings` and call
:func:`save_settings` when the user changes a field or runs.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional

#: Environment variable naming the folder of ``settings.json`` (overrides the user config dir).
CONFIG_DIR_ENV = "AUTOMAT_CONFIG_DIR"
FILE_NAME = "settings.json"
ENERGY_MODELS = ("auto", "mattersim", "chgnet", "none")
#: Keys that are never written, whatever a caller passes (secrets stay in the environment).
SECRET_KEYS = ("api_key", "openai_api_key", "llm_api_key")
_SYMBOL = re.compile(r"^[A-Z][a-z]?$")


class SettingsWarning(UserWarning):
    """The settings file could not be used as it is (defaults are used instead)."""


@dataclass(frozen=True)
class Settings:
    """What the widgets remember. Empty text means "not set" (the widget's or environment's default)."""

    #: Element hint as the user types it, e.g. ``"Sr, Ti, O"`` (symbols separated by commas or spaces).
    elements: str = ""
    #: ``auto``, ``mattersim``, ``chgnet`` or ``none``.
    energy_model: str = "auto"
    #: A MatterSim checkpoint file ("" = MatterSim's own default/download).
    mattersim_checkpoint: str = ""
    #: OpenAI-compatible endpoint URL of the LLM planner ("" = ``$OPENAI_BASE_URL`` or OpenAI's).
    llm_base_url: str = ""
    #: Model name of the LLM planner ("" = ``$AUTOMAT_LLM_MODEL`` or the default).
    llm_model: str = ""

    def __post_init__(self):
        problems = settings_problems(self)
        if problems:
            from .model import AutomatError

            raise AutomatError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    def changed(self, **changes) -> "Settings":
        """A copy with ``changes`` (unknown names and secrets are an error)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            from .model import AutomatError

            raise AutomatError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: ("" if v is None else v) for k, v in changes.items()})


def settings_problems(s: Settings) -> list[str]:
    """What is wrong with each field of ``s`` (empty when it is valid)."""
    out = []
    for f in fields(s):
        if not isinstance(getattr(s, f.name), str):
            out.append(f"{f.name} must be text, got {type(getattr(s, f.name)).__name__}")
    if out:
        return out
    symbols = s.elements.replace(",", " ").replace(";", " ").split()
    bad = [x for x in symbols if not _SYMBOL.match(x)]
    if bad or (s.elements.strip() and not symbols):
        out.append(f"elements: {', '.join(bad) or repr(s.elements)} is not an element symbol")
    if s.energy_model not in ENERGY_MODELS:
        out.append(f"energy_model must be one of {', '.join(ENERGY_MODELS)}, got {s.energy_model!r}")
    if s.llm_base_url and not re.match(r"^https?://[^\s/]+", s.llm_base_url):
        out.append(f"llm_base_url must be an http(s) URL, got {s.llm_base_url!r}")
    if s.llm_base_url and re.match(r"^https?://[^/\s]*@", s.llm_base_url):
        out.append("llm_base_url must not carry credentials (user:key@host)")
    if any(c.isspace() for c in s.llm_model):
        out.append(f"llm_model must be one word, got {s.llm_model!r}")
    return out


def config_dir() -> Path:
    """Folder of the settings file: ``$AUTOMAT_CONFIG_DIR``, else the user config dir."""
    override = os.environ.get(CONFIG_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-automat"))


def settings_path() -> Path:
    return config_dir() / FILE_NAME


def load_settings(path: Optional[Path] = None) -> Settings:
    """The saved settings; defaults when there is no file. A file that is not JSON, not an object,
    or has invalid values gives the defaults for those values and a :class:`SettingsWarning`."""
    path = Path(path) if path is not None else settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        warnings.warn(f"cannot read the settings file {path}: {exc.strerror or exc}; using the defaults",
                      SettingsWarning, stacklevel=2)
        return Settings()
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    except ValueError as exc:
        warnings.warn(f"the settings file {path} is damaged ({exc}); using the defaults", SettingsWarning,
                      stacklevel=2)
        return Settings()
    names = {f.name for f in fields(Settings)}
    values, dropped = {}, []
    for key, value in doc.items():
        if key not in names:
            continue  # a newer version's setting, or a secret that does not belong here
        candidate = {**values, key: value}
        if settings_problems(_unchecked(candidate)):
            dropped.append(key)
        else:
            values[key] = value
    if dropped:
        warnings.warn(f"the settings file {path} has invalid {', '.join(dropped)}; using the defaults for "
                      f"{'it' if len(dropped) == 1 else 'them'}", SettingsWarning, stacklevel=2)
    return Settings(**values)


def _unchecked(values: dict) -> Settings:
    s = object.__new__(Settings)
    for f in fields(Settings):
        object.__setattr__(s, f.name, values.get(f.name, f.default))
    return s


def save_settings(settings: Settings, path: Optional[Path] = None) -> Path:
    """Write ``settings`` (atomically; never a secret). Returns the path."""
    from .io.write import write_json

    path = Path(path) if path is not None else settings_path()
    doc = {k: v for k, v in settings.to_dict().items() if k not in SECRET_KEYS}
    return write_json(path, doc)


def update_settings(**changes) -> Settings:
    """Load, change and save; returns the new settings. Invalid changes raise ``AutomatError``
    before anything is written; a failed write is a warning."""
    new = load_settings().changed(**changes)
    try:
        save_settings(new)
    except OSError as exc:
        warnings.warn(f"cannot save the settings to {settings_path()}: {exc.strerror or exc}", SettingsWarning,
                      stacklevel=2)
    return new
