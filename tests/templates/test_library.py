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
    # Layered crystals are marked and give monolayers: 2H-MoS2's layer is the ASE-built one (one
    # entry, both provenances); CdI2's is new, a decoratable prototype like its crystal.
    by_id = {e["id"]: e for e in small_library.entries}
    assert by_id["aflow:AB2_hP6_194_c_f"]["layered"] and by_id["aflow:AB2_hP3_164_a_d"]["layered"]
    assert "exfoliated" in {s["source"] for s in by_id["2d:MoS2-2H"]["sources"]}
    sheet = by_id["2d:aflow:AB2_hP3_164_a_d"]
    assert sheet["is_2d"] and sheet["decorate"] and sheet["spacegroup_number"] == 164
    assert not any(e.get("layered") for e in small_library.entries if e["reduced_formula"] in ("Cu", "SrTiO3", "NaCl"))
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


def test_incremental_rebuild_reuses_unchanged_entries(small_library, small_sources, tmp_path):
    import shutil

    from napari_automat.templates import build_library

    path = tmp_path / "copy.npz"
    shutil.copy(small_library.path, path)
    sources = small_sources
    again = build_library(path, sources=sources, workers=1)
    assert again.meta["reused_entries"] == len(small_library.entries)
    assert [p["zone_axis"] for p in again.projections] == [p["zone_axis"] for p in small_library.projections]
    np.testing.assert_allclose(again.projections.pat_frac, small_library.projections.pat_frac)
    fewer = build_library(path, sources=sources[:-1], workers=1)  # one structure less: the rest is reused
    assert fewer.meta["reused_entries"] == len(fewer.entries) == len(small_library.entries) - 1


def test_mined_sources_are_small_real_structures():
    from napari_automat.templates import sources

    for source, package in ((sources.jarvis_minerals, "jarvis"), (sources.matbench_dielectric, "crystal_toolkit")):
        items = list(source())
        if not items:
            pytest.skip(f"{package} is not installed")
        assert all(len(s.structure) <= sources.MAX_MINED_SITES and s.structure.is_ordered for s in items)
        assert all(len(s.structure.composition) <= sources.MAX_MINED_SPECIES for s in items)
        assert all(s.decorate == (package == "jarvis") for s in items)  # Materials Project compounds stand for themselves
        assert len({s.id for s in items}) == len(items) > 200
