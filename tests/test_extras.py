"""Optional dependencies: a missing extra is one line naming the extra to install."""

import pytest

from napari_automat.energy.backends import check_installed
from napari_automat.extras import MissingExtra, require
from napari_automat.model import AutomatError


def test_require_returns_the_module():
    import json

    assert require("agent", "json") is json


def test_missing_module_names_the_extra():
    with pytest.raises(MissingExtra) as info:
        require("energy", "no_such_module_automat")
    text = str(info.value)
    assert isinstance(info.value, AutomatError) and "\n" not in text
    assert "pip install 'napari-automat[energy]'" in text and "no_such_module_automat" in text


def test_unknown_extra_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown extra"):
        require("everything", "json")


@pytest.mark.parametrize("model", ["none", "auto", "", None])
def test_no_backend_requested_needs_nothing(model):
    check_installed(model)


def test_an_explicit_model_that_is_not_installed_fails_fast(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "chgnet", None)  # import chgnet now fails as if absent
    with pytest.raises(MissingExtra, match=r"pip install 'napari-automat\[energy\]'"):
        check_installed(" CHGNet")
