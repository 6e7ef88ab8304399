"""Text from outside (the model, an endpoint) made safe to show and to store."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Optional


def shown(text: str, limit: int = 800) -> str:
    """``text`` on one line with control and format characters escaped (no terminal codes), at most
    ``limit`` characters."""
    out = "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") else
                  " " if ch in "\n\r\t" else ch.encode("unicode_escape").decode("ascii") for ch in str(text))
    return out if len(out) <= limit else out[:limit - 1] + "…"


def redacted(value: Any, secrets: Iterable[Optional[str]] = ()) -> Any:
    """``value`` (JSON-like) with each secret replaced by ``[redacted]`` and the user's home by ``~``."""
    if isinstance(value, dict):
        return {k: redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v, secrets) for v in value]
    if not isinstance(value, str):
        return value
    for secret in secrets:
        if secret:
            value = value.replace(secret, "[redacted]")
    return value.replace(str(Path.home()), "~")


_FORMULA = re.compile(r"\b(?:[A-Z][a-z]?\d*){2,}\b")
_SYMBOL = re.compile(r"([A-Z][a-z]?)\d*")


def contradicted_formulas(text: str, reduced_formula: str) -> list[str]:
    """Chemical formulas (two or more elements) named in ``text`` that are not ``reduced_formula``."""
    from pymatgen.core import Composition, Element

    found = []
    for token in _FORMULA.findall(text):
        symbols = _SYMBOL.findall(token)
        elements = all(s not in "DT" and Element.is_valid_symbol(s) for s in symbols)
        if len(set(symbols)) < 2 or token.isupper() or not elements:
            continue  # an acronym such as "STEM", "HAADF" or "NO"
        if Composition(token).reduced_formula != reduced_formula and token not in found:
            found.append(token)
    return found
