"""Benchmark generation: the quick set on disk, physics of the truth, determinism, the full selection."""

import json
from collections import Counter

import numpy as np
import pytest

from napari_automat.bench.generate import generate_benchmark, generate_sample, select_samples
from napari_automat.bench.structures import candidates, library_formulas
from napari_automat.io.read import read_micrograph

FILES = ("image.tif", "clean.npy", "columns.npy", "truth.cif", "meta.json")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    path = generate_benchmark(out, quick=True, seed=3)
    return out, json.loads(path.read_text())


@pytest.fixture(scope="module")
def pool():
    return candidates()


@pytest.mark.slow
def test_quick_writes_six_samples_with_every_file(quick):
    out, manifest = quick
    assert manifest["version"] == 1 and manifest["quick"] is True and manifest["seed"] == 3
    samples = manifest["samples"]
    assert len(samples) == 6 and Counter(s["tier"] for s in samples) == {"unary": 2, "binary": 2, "ternary": 2}
    assert {s["simulator"] for s in samples} == {"abtem", "incoherent"}
    for s in samples:
        folder = out / s["image"].rsplit("/", 1)[0]
        assert all((folder / f).is_file() for f in FILES)
        assert json.loads((folder / "meta.json").read_text())["formula"] == s["formula"]
        mg = read_micrograph(out / s["image"])
        assert mg.calibrated and mg.pixel_size_A == pytest.approx((s["pixel_size_A"],) * 2, rel=1e-4)
        clean = np.load(folder / "clean.npy")
        assert clean.dtype == np.float32 and clean.shape == mg.data.shape
        assert max(clean.shape) * s["pixel_size_A"] < 25
        cols = np.load(folder / "columns.npy")
        assert cols.shape[1] == 2 and len(cols) > 10
        assert np.all((cols > -1) & (cols < np.array(clean.shape)))
        # the noisy image is a Poisson draw of the clean one: same mean within a few sigma
        assert abs(mg.data.mean() - clean.mean()) < 5 * np.sqrt(clean.mean() / clean.size) + 1e-6


@pytest.mark.slow
def test_haadf_columns_sit_on_bright_pixels(quick):
    out, manifest = quick
    from pymatgen.core import Element

    for s in (s for s in manifest["samples"] if s["detector"] == "HAADF"):
        folder = out / s["image"].rsplit("/", 1)[0]
        clean = np.load(folder / "clean.npy")
        cols = np.load(folder / "columns.npy")
        labels = json.loads((folder / "columns_species.json").read_text())
        heavy = max(Element(el.split("+")[0]).Z for el in labels)
        sel = [Element(el.split("+")[0]).Z == heavy for el in labels]
        iy, ix = np.round(cols[sel]).astype(int).T
        ok = (iy >= 0) & (iy < clean.shape[0]) & (ix >= 0) & (ix < clean.shape[1])
        at_columns = clean[iy[ok], ix[ok]].mean()
        assert at_columns > 2.0 * clean.mean(), s["id"]
        # and a random pixel is much darker on average than a heavy column
        assert np.median(clean) < 0.5 * at_columns


@pytest.mark.slow
def test_same_seed_same_manifest_and_clean_image(quick, pool, tmp_path):
    out, manifest = quick
    specs = select_samples(quick=True, seed=3, pool=pool)
    again = select_samples(quick=True, seed=3, pool=pool)
    assert specs == again
    assert [s["id"] for s in specs] == [m["id"] for m in manifest["samples"]]
    assert select_samples(quick=True, seed=4, pool=pool)[0]["dose_e_per_A2"] != specs[0]["dose_e_per_A2"]
    for spec in (s for s in specs if s["simulator"] == "abtem" and s["detector"] == "ABF"):
        generate_sample(spec, tmp_path)
        folder = spec["image"].rsplit("/", 1)[0]
        assert np.array_equal(np.load(tmp_path / folder / "clean.npy"), np.load(out / folder / "clean.npy"))
        assert np.array_equal(read_micrograph(tmp_path / spec["image"]).data, read_micrograph(out / spec["image"]).data)


def test_full_selection_has_variety(pool):
    specs = select_samples(seed=0, n_per_tier=150, pool=pool)
    assert specs == select_samples(seed=0, n_per_tier=150, pool=pool)
    for tier in ("unary", "binary", "ternary"):
        sel = [s for s in specs if s["tier"] == tier]
        assert len(sel) == 150
        assert all(len(s["elements"]) == ("unary", "binary", "ternary").index(tier) + 1 for s in sel)
        assert len({s["formula"] for s in sel}) >= 25
        assert len({tuple(s["zone_axis"]) for s in sel}) >= 3
        assert len({s["structure_type"] for s in sel}) >= 4
        assert any(s["is_2d"] for s in sel) and not all(s["is_2d"] for s in sel)
        assert len({s["id"] for s in sel}) == 150
    types = {s["structure_type"] for s in specs}
    assert {"rocksalt", "zincblende", "wurtzite", "fluorite", "rutile", "spinel", "perovskite", "fcc", "bcc",
            "hcp", "diamond", "CsCl", "2H-MX2", "CdI2"} <= types
    dose = np.array([s["dose_e_per_A2"] for s in specs])
    pixel = np.array([s["pixel_size_A"] for s in specs])
    rot = np.array([s["rotation_deg"] for s in specs])
    bulk = np.array([s["thickness_A"] for s in specs if not s["is_2d"]])
    assert 1e4 <= dose.min() < 2e4 and 5e5 < dose.max() <= 1e6
    assert 0.05 <= pixel.min() < 0.06 and 0.19 < pixel.max() <= 0.2
    assert rot.min() < 10 and rot.max() > 170
    assert 20 <= bulk.min() < 30 and 140 < bulk.max() <= 150
    assert Counter(s["detector"] for s in specs)["ABF"] > 20
    assert all(s["field_of_view_A"] / s["pixel_size_A"] <= 512.5 for s in specs)


def test_generalisation_split_is_absent_from_the_library(pool):
    known = library_formulas()
    specs = select_samples(seed=0, n_per_tier=150, pool=pool)
    gen = [s for s in specs if s["generalisation"]]
    assert len(gen) > 50 and {s["tier"] for s in gen} >= {"binary", "ternary"}
    assert all(s["formula"] not in known for s in gen)
    assert all(s["formula"] in known for s in specs if not s["generalisation"])
    assert {"WSe2", "SrTiO3", "NaCl"} <= known  # the library holds their structure types
    assert {"GaAs", "MgO", "BaTiO3", "TiS2"} & {s["formula"] for s in gen}


@pytest.mark.slow
def test_generation_resumes_and_redoes_changed_samples(quick, pool, monkeypatch):
    out, manifest = quick
    import napari_automat.bench.generate as G

    calls = []
    real = G.simulate_sample
    monkeypatch.setattr(G, "simulate_sample", lambda spec, s: calls.append(spec["id"]) or real(spec, s))
    again = json.loads(generate_benchmark(out, quick=True, seed=3).read_text())
    assert calls == [] and again["samples"] == manifest["samples"]  # nothing simulated twice
    assert again["timing"]["time_s"] == manifest["timing"]["time_s"]
    spec = select_samples(quick=True, seed=3, pool=pool)[0]
    folder = out / spec["image"].rsplit("/", 1)[0]
    (folder / "columns.npy").unlink()  # an interrupted sample
    generate_sample(spec, out)
    changed = dict(spec, dose_e_per_A2=spec["dose_e_per_A2"] * 2)  # other settings, same id
    meta = generate_sample(changed, out)
    assert calls == [spec["id"], spec["id"]] and meta["dose_e_per_A2"] == changed["dose_e_per_A2"]
    generate_sample(spec, out)  # put the original back for the other tests


def test_decorated_truths_use_the_smallest_prototype_cell(pool):
    """Wurtzite takes the 4-atom 2H cell, not a 6H ZnS polytype squeezed to the 2H c (whose relaxed
    truth energy came out as +9 eV/atom)."""
    wurtzite = [c for c in pool if c.structure_type == "wurtzite"]
    assert wurtzite and all(len(c.structure) == 4 for c in wurtzite)
    for c in pool:  # no two atoms closer than 1 Å in any truth
        if len(c.structure) > 1:
            d = c.structure.distance_matrix
            assert d[np.triu_indices(len(d), 1)].min() > 1.0, c.key
