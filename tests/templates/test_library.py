"""Library building, deduplication, the versioned file and its summary."""

import json

import numpy as np
import pytest

from napari_automat.model import AutomatError
from napari_automat.templates import library_info, load_library
from napari_automat.templates.library import FORMAT, VERSION, default_path


def test_small_library_contents(small_library):
    ids = {e["id"] for e in small_library.entries}
    # ase Cu and the AFLOW Cu prototype are one structure: one entry with both provenances.
    cu = next(e for e in small_library.entries if e["reduced_formula"] == "Cu")
    assert {s["source"] for s in cu["sources"]} == {"ase", "aflow"}
    assert "aflow:A_cF4_225_a" not in ids
    sto = next(e for e in small_library.entries if e["id"] == "pymatgen:SrTiO3")
    assert sto["spacegroup_number"] == 221 and sto["crystal_system"] == "cubic"
    axes = {tuple(p["zone_axis"]) for p in small_library.projections
            if small_library.entries[p["entry"]]["id"] == "pymatgen:SrTiO3"}
    assert {(0, 0, 1), (1, 1, 0), (1, 1, 1)} <= axes
    # A monolayer is only resolvable perpendicular to the layer (other axes see the vacuum).
    mos2 = [i for i, e in enumerate(small_library.entries) if e["id"] == "2d:MoS2-2H"][0]
    assert small_library.entries[mos2]["is_2d"]
    assert {tuple(p["zone_axis"]) for p in small_library.projections if p["entry"] == mos2} == {(0, 0, 1)}
    for p in small_library.projections:
        for pat in p["patterns"]:
            assert len(pat["frac"]) == len(pat["counts"]) >= 1
            assert set(pat["visible"]) <= set(range(len(p["full"]["frac"])))


def test_roundtrip_and_info(small_library):
    again = load_library(small_library.path)
    assert len(again.entries) == len(small_library.entries)
    assert len(again.projections) == len(small_library.projections)
    s = again.structure(0)
    assert len(s) == len(again.entries[0]["structure"]["species"])
    info = library_info(again)
    assert info["structures"] == len(again.entries) and info["projections"] == len(again.projections)
    assert info["version"] == VERSION and info["size_MB"] < 1
    assert info["sources"]["aflow"] >= 8


def test_bad_files_are_refused(tmp_path, small_library):
    with pytest.raises(AutomatError):
        load_library(tmp_path / "missing.npz")
    for name, header in (("old", {"format": FORMAT, "version": VERSION + 99, "entries": []}),
                         ("other", {"format": "something else"})):
        np.savez(tmp_path / f"{name}.npz", header=np.frombuffer(json.dumps(header).encode(), np.uint8))
        with pytest.raises(AutomatError, match="version" if name == "old" else "not a napari-automat"):
            load_library(tmp_path / f"{name}.npz")
    (tmp_path / "text.npz").write_text("not a zip file")
    with pytest.raises(AutomatError, match="not a napari-automat"):
        load_library(tmp_path / "text.npz")


def test_default_path_prefers_a_built_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOMAT_CACHE_DIR", str(tmp_path))
    path = default_path()
    assert path.name.endswith(".npz")
    assert path.parent == tmp_path or "napari_automat" in str(path.parent)  # packaged file when shipped
    (tmp_path / path.name).write_bytes(b"")
    assert default_path() == tmp_path / path.name
