"""The realistic benchmark tier: one sample of each scene kind on disk, its truth inside its region."""

import json

import numpy as np
import pytest
from pymatgen.core import Composition, Structure
from scipy.ndimage import binary_dilation

from napari_automat.bench import generate as G
from napari_automat.bench.scenes import SCENES, realistic_conditions
from napari_automat.io.read import read_micrograph

FILES = ("image.tif", "clean.npy", "columns.npy", "columns_species.json", "truth.cif", "meta.json", "region.npy")


def _spec(kind: str, index: int, tier: str = "binary", stream: int = 1) -> dict:
    """A ``tier`` spec of scene ``kind`` (forced), drawn as ``select_samples`` draws it; ``stream``
    picks the scene's random draws (``[7, stream, index, 2]``)."""
    pool = G._cached_pool()
    spec = G.select_samples((tier,), seed=7, n_per_tier=index + 1, pool=pool)[index]
    spec.update(realistic_conditions(spec, np.random.default_rng([7, stream, index, 2]), pool, scene=kind))
    spec["id"] += "-r"
    spec["image"] = f"samples/{tier}/{spec['id']}/image.tif"
    return spec


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic")
    written = {}
    for index, kind in enumerate(SCENES):
        spec = _spec(kind, index)
        written[kind] = (spec, G.generate_sample(spec, out), out / "samples" / "binary" / spec["id"])
    return out, written


@pytest.mark.parametrize("kind", SCENES)
def test_scene_files_and_truth_inside_its_region(scenes, kind):
    out, written = scenes
    spec, meta, folder = written[kind]
    assert all((folder / name).is_file() for name in FILES)
    saved = json.loads((folder / "meta.json").read_text())
    assert saved["scene"] == kind and saved["conditions"] == "realistic"
    assert saved["scene_params"] == spec["scene_params"]
    mg = read_micrograph(out / spec["image"])
    # the file is miscalibrated as drawn: recorded = true pixel size × factor
    assert mg.pixel_size_A[0] == pytest.approx(spec["pixel_size_A"] * spec["calibration_factor"], rel=1e-4)
    assert mg.is_stack == (kind == "stack")
    frames = mg.data if mg.is_stack else mg.data[None]
    clean = np.load(folder / "clean.npy")
    region = np.load(folder / "region.npy")
    assert clean.shape == region.shape == frames.shape[1:]
    cols = np.load(folder / "columns.npy")
    labels = json.loads((folder / "columns_species.json").read_text())
    assert len(cols) == len(labels) == saved["n_columns"] > 20
    assert np.all((cols > -0.5) & (cols < np.array(region.shape) - 0.5))
    idx = np.round(cols).astype(int)
    assert binary_dilation(region, iterations=1)[idx[:, 0], idx[:, 1]].all()  # a column sits in the truth region
    assert saved["crystal_fraction"] == pytest.approx(region.mean(), abs=0.02)
    # the truth's columns are bright in the clean image: brighter than the region's average
    assert clean[idx[:, 0], idx[:, 1]].mean() > 1.5 * clean[region].mean()
    # the noise is a Poisson draw at the whole dose (a stack: N frames at 1/N each)
    assert frames.sum() == pytest.approx(clean.sum(), rel=0.05)


def test_scene_geometry(scenes):
    _, written = scenes
    particle = written["nanoparticle"][1]
    assert particle["crystal_fraction"] < 0.4  # a particle in a larger field
    partial = written["partial"][1]
    assert partial["crystal_fraction"] == pytest.approx(partial["scene_params"]["fraction"], abs=0.05)
    spec, inter, _ = written["interface"]
    assert 0.5 < inter["crystal_fraction"] < 0.85  # the truth is the larger domain
    truth = Structure.from_file(written["interface"][2] / "truth.cif").composition
    assert truth.reduced_formula == Composition(spec["formula"]).reduced_formula
    # the hint names what is in the field: both crystals' elements
    assert set(spec["elements"]) >= {str(e) for e in truth.elements}
    second = next(c for c in G._cached_pool() if c.key == spec["scene_params"]["second_key"])
    assert set(spec["elements"]) >= set(second.elements)
    stack = written["stack"][1]
    assert stack["n_frames"] == stack["scene_params"]["frames"] >= 6


def test_realistic_selection_is_seeded_and_keeps_the_standard_draws():
    pool = G._cached_pool()
    standard = G.select_samples(("unary", "ternary"), seed=4, n_per_tier=8, pool=pool)
    real = G.select_samples(("unary", "ternary"), seed=4, n_per_tier=8, pool=pool, conditions="realistic")
    assert real == G.select_samples(("unary", "ternary"), seed=4, n_per_tier=8, pool=pool, conditions="realistic")
    for s, r in zip(standard, real):
        assert r["id"] == s["id"] + "-r" and r["key"] == s["key"] and r["zone_axis"] == s["zone_axis"]
        assert r["scene"] in SCENES and r["simulator"] == "incoherent"
        assert abs(r["scan_shear"]) <= 0.02 and abs(r["calibration_factor"] - 1) <= 0.05
    assert len({r["scene"] for r in real}) >= 3


def test_failure_kinds():
    from napari_automat.bench.scenes import failure_kind

    region = np.zeros((100, 100), bool)
    region[:, :60] = True  # the truth crystal: the left 60%
    inter = {"scene": "interface", "formula": "Cu", "scene_params": {"second_formula": "ZnTe"}}
    part = {"scene": "partial", "formula": "Cu", "scene_params": {}}
    crop = "the crystal covers 40% of the field; analysed that region only (y, x px [0, 100, {}, {}]; --roi overrides)"
    assert failure_kind({"matched": True}, part, region) is None
    assert failure_kind({"error": "no lattice found in the image"}, part, region) == "no lattice"
    assert failure_kind({"error": "ValueError: boom"}, part, region) == "error"
    outside = {"warnings": [crop.format(60, 100)], "predicted_formula": "Cu"}
    assert failure_kind(outside, part, region) == "wrong crop"
    assert failure_kind(outside, inter, region) == "wrong domain"
    assert failure_kind({"warnings": [crop.format(0, 60)], "predicted_formula": "Cu2O"},
                        part, region) == "wrong formula"
    assert failure_kind({"predicted_formula": "Cu", "composition_correct": True}, part, region) \
        == "right formula, wrong cell"
    assert failure_kind({"predicted_formula": "TeZn"}, inter, region) == "wrong domain"
    assert failure_kind({"predicted_formula": "CuZn"}, inter, region) == "mixed domains"
    grains = {"scene": "interface", "formula": "Cu", "scene_params": {"second_formula": "Cu"}}
    assert failure_kind({"predicted_formula": "Cu", "composition_correct": True}, grains, region) \
        == "right formula, wrong cell"
    assert failure_kind({"predicted_formula": None}, part, region) == "no structure"


def test_columns_of_a_cropped_image_are_scored_in_the_full_frame(tmp_path):
    # Rh along [111] covering half the field: the chain analyses only the crystalline part (a crop
    # from x = 107 px), so its columns are in the crop's pixels and the truth in the file's; the
    # benchmark compares them in the file's frame.
    from napari_automat.bench.run import evaluate_sample

    meta = G.generate_sample(_spec("partial", 4, tier="unary"), tmp_path)
    row = evaluate_sample(tmp_path, meta, hint=True)
    assert row["det_n_found"] > 20
    assert row["det_recall"] > 0.8 and row["det_position_rmse_pm"] < 10.0


def test_grain_boundary_scored_on_its_main_domain(tmp_path):
    # `automat bench run --domains`: Cr along [011] with a grain boundary across the field is
    # segmented into its two grains and the main one scored
    from napari_automat.bench.run import evaluate_sample

    meta = G.generate_sample(_spec("interface", 0, tier="unary", stream=0), tmp_path)
    row = evaluate_sample(tmp_path, meta, hint=True, domains=True)
    assert row["error"] is None and row["n_domains"] == 2 and row["matched"]
