"""Plugin settings: a JSON file under the user config dir (or $AUTOMAT_CONFIG_DIR), validated,
never a secret, and a damaged file gives the defaults and a warning."""

import json
import warnings

import pytest

from napari_automat.model import AutomatError
from napari_automat.settings import (Settings, SettingsWarning, config_dir, load_settings, save_settings,
                                     settings_path, update_settings)


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOMAT_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_env_override_and_defaults_without_a_file(config_home):
    assert config_dir() == config_home and settings_path() == config_home / "settings.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_settings() == Settings()


def test_round_trip_and_no_secret(config_home):
    s = update_settings(elements="Sr, Ti, O", energy_model="chgnet", mattersim_checkpoint="/m/ckpt.pth",
                        llm_base_url="http://127.0.0.1:8000/v1", llm_model="qwen2.5")
    assert load_settings() == s and s.energy_model == "chgnet"
    doc = json.loads(settings_path().read_text())
    assert set(doc) == {"elements", "energy_model", "mattersim_checkpoint", "llm_base_url", "llm_model"}
    with pytest.raises(AutomatError, match="unknown setting"):
        update_settings(api_key="sk-secret")
    assert "sk-secret" not in settings_path().read_text()


@pytest.mark.parametrize("changes, message", [
    ({"energy_model": "vasp"}, "energy_model"),
    ({"elements": ",,;"}, "elements"),
    ({"elements": "sr ti"}, "elements"),
    ({"llm_base_url": "localhost:8000"}, "http"),
    ({"llm_base_url": "https://user:sk@host/v1"}, "credentials"),
    ({"llm_model": "two words"}, "one word"),
])
def test_invalid_values_are_refused_before_writing(changes, message):
    save_settings(Settings(elements="Cu"))
    with pytest.raises(AutomatError, match=message):
        update_settings(**changes)
    assert load_settings() == Settings(elements="Cu")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "", "null"])
def test_damaged_file_gives_defaults_and_a_warning(config_home, text):
    config_home.mkdir(parents=True)
    settings_path().write_text(text)
    with pytest.warns(SettingsWarning, match="damaged"):
        assert load_settings() == Settings()


def test_invalid_entries_fall_back_one_by_one(config_home):
    config_home.mkdir(parents=True)
    settings_path().write_text(json.dumps({"elements": "Pb Ti O", "energy_model": 3, "llm_model": "gpt-4o",
                                           "api_key": "sk-x", "future_key": 1}))
    with pytest.warns(SettingsWarning, match="energy_model"):
        s = load_settings()
    assert s == Settings(elements="Pb Ti O", llm_model="gpt-4o")


def test_unwritable_folder_is_a_warning_not_a_crash(config_home):
    config_home.parent.mkdir(exist_ok=True)
    config_home.write_text("a file where the folder should be")
    with pytest.warns(SettingsWarning, match="cannot save"):
        assert update_settings(elements="Cu").elements == "Cu"


def test_settings_and_session_files_import_without_napari_or_qt():
    import subprocess
    import sys

    code = ("import sys, napari_automat.settings, napari_automat.io.session_file; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'torch', 'pymatgen')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
