"""Generate the benchmark: simulated STEM images of known structures, on disk (format: manifest.json
plus ``samples/<tier>/<id>/`` with image, clean.npy, columns.npy, truth.cif and meta.json).

Every sample is drawn from a generator seeded by ``(seed, tier, index)``, so a benchmark is
reproducible sample by sample. Noise: the clean image holds the expected electrons per pixel on
the detector (fraction of the beam × dose × pixel area); the image is its Poisson draw.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..model import Progress, no_progress
from .scenes import realistic_conditions, render_scene
from .structures import TIERS, Candidate, candidates

VERSION = 1
#: Mean fraction of the beam the incoherent model's HAADF image stands for (typical ADF yield).
INCOHERENT_YIELD = 0.05
#: Longest image side [px].
MAX_SIDE_PX = 512
#: Fraction of HAADF samples simulated with abTEM in the full benchmark (the rest: incoherent model).
ABTEM_FRACTION = 0.1
#: Fraction of samples imaged with the ABF detector (always abTEM).
ABF_FRACTION = 0.1
#: Thickest bulk slab simulated with abTEM [Å]: its cost grows with thickness (about 1.5 s per Å
#: for a 512² field on one core); the incoherent model takes the whole 20–150 Å range.
ABTEM_MAX_THICKNESS_A = 60.0
#: Quick benchmark: (tier, candidate key, zone axis, detector, simulator, thickness [Å]).
QUICK = (
    ("unary", "C2-2d", (0, 0, 1), "HAADF", "incoherent", 0.0),
    ("unary", "Cu-fcc", (0, 1, 1), "HAADF", "incoherent", 30.0),
    ("binary", "MoS2-2d", (0, 0, 1), "HAADF", "abtem", 0.0),
    ("binary", "GaAs-zincblende", (0, 1, 1), "HAADF", "incoherent", 40.0),
    ("ternary", "SrTiO3-perovskite", (0, 0, 1), "ABF", "abtem", 12.0),
    ("ternary", "MoSSe-2d", (0, 0, 1), "HAADF", "incoherent", 0.0),
)


def select_samples(tiers=TIERS, quick: bool = False, seed: int = 0, n_per_tier: int = 150,
                   pool: list[Candidate] | None = None, conditions: str = "standard") -> list[dict]:
    """The sample specifications (META dicts plus ``key`` and ``field_of_view_A``), nothing simulated.

    Full: per tier, the (structure, zone axis) pairs in a seeded order, cycled until ``n_per_tier``;
    dose log-uniform 1e4–1e6 e/Å², pixel 0.05–0.2 Å, rotation 0–180°, bulk thickness 20–150 Å
    (abTEM: at most :data:`ABTEM_MAX_THICKNESS_A`), field of view 25–40 Å (at most 512 px). Quick: the fixed :data:`QUICK` set, 20 Å fields.
    ``conditions``: ``standard``, or ``shifted`` for a held-out split imaged unlike the tuning one
    (see :func:`shifted_conditions`), or ``realistic`` for scenes as they come off a microscope
    (nanoparticles, partial crystals, interfaces, drifting frame stacks: :mod:`.scenes`, incoherent
    model only); the standard draws (structure, zone axis, rotation) are the same either way.
    """
    if conditions not in CONDITIONS:
        raise ValueError(f"conditions must be one of {', '.join(CONDITIONS)}, not {conditions!r}")
    pool = candidates() if pool is None else pool
    by_key = {c.key: c for c in pool}
    specs = []
    if quick:
        for i, (tier, key, axis, det, sim, thick) in enumerate(q for q in QUICK if q[0] in tiers):
            rng = np.random.default_rng([seed, TIERS.index(tier), i])
            specs.append(_spec(by_key[key], axis, i, rng, det, sim, thick, pixel=rng.uniform(0.1, 0.15), fov=20.0))
        return specs
    for tier in tiers:
        pairs = [(c, tuple(ax)) for c in pool if c.tier == tier for ax in c.axes]
        order = np.random.default_rng([seed, TIERS.index(tier)]).permutation(len(pairs))
        for i in range(n_per_tier):
            cand, axis = pairs[order[i % len(pairs)]]
            rng = np.random.default_rng([seed, TIERS.index(tier), i])
            det = "ABF" if rng.random() < ABF_FRACTION else "HAADF"
            sim = "abtem" if det == "ABF" or rng.random() < ABTEM_FRACTION else "incoherent"
            thick = 0.0 if cand.is_2d else float(rng.uniform(20.0, 150.0))
            if sim == "abtem":
                thick = min(thick, ABTEM_MAX_THICKNESS_A)
            spec = _spec(cand, axis, i, rng, det, sim, thick, pixel=rng.uniform(0.05, 0.2), fov=rng.uniform(25.0, 40.0))
            if conditions == "shifted":
                spec.update(shifted_conditions(spec, np.random.default_rng([seed, TIERS.index(tier), i, 1])))
                spec["id"] += "-s"
                spec["image"] = f"samples/{cand.tier}/{spec['id']}/image.tif"
            elif conditions == "realistic":
                spec.update(realistic_conditions(spec, np.random.default_rng([seed, TIERS.index(tier), i, 2]), pool))
                spec["id"] += "-r"
                spec["image"] = f"samples/{cand.tier}/{spec['id']}/image.tif"
            specs.append(spec)
    return specs


#: Imaging conditions of a generated split.
CONDITIONS = ("standard", "shifted", "realistic")
#: Shifted conditions: range of the error of the recorded pixel size (factor), of the scan shear
#: (x shifts by shear × y), of the incoherent model's probe FWHM [Å] and Z exponent, of the abTEM
#: defocus [Å] and spherical aberration [Å], and the share of ABF samples imaged by iDPC instead.
SHIFTED = {"calibration": (0.95, 1.05), "shear": (-0.02, 0.02), "probe_fwhm_A": (0.7, 1.1),
           "z_exponent": (1.5, 2.0), "defocus_A": (-30.0, 30.0), "Cs_A": (0.0, 1e4), "idpc_share": 0.5}


def shifted_conditions(spec: dict, rng) -> dict:
    """Spec changes for the held-out split: a miscalibrated file, scan shear, another probe and
    contrast exponent for the incoherent model, defocus and Cs for abTEM, iDPC for half the ABF
    samples. The recorded pixel size is ``calibration_factor`` times the true one."""
    u = lambda key: float(rng.uniform(*SHIFTED[key]))  # noqa: E731
    changes = {"calibration_factor": round(u("calibration"), 4), "scan_shear": round(u("shear"), 4),
               "probe_fwhm_A": round(u("probe_fwhm_A"), 3), "z_exponent": round(u("z_exponent"), 3),
               "defocus_A": round(u("defocus_A"), 1), "Cs_A": round(u("Cs_A"), 0)}
    if spec["detector"] == "ABF" and rng.random() < SHIFTED["idpc_share"]:
        changes["detector"] = "iDPC"
    return changes


def _spec(cand: Candidate, axis, index: int, rng, detector, simulator, thickness_A, pixel, fov) -> dict:
    pixel = round(float(pixel), 4)
    sid = f"{cand.tier[0]}{index:04d}-{cand.key}-{''.join(str(v) for v in axis)}"
    return {"id": sid, "tier": cand.tier, "formula": cand.formula, "elements": list(cand.elements),
            "zone_axis": [int(v) for v in axis], "pixel_size_A": pixel,
            "dose_e_per_A2": round(float(10 ** rng.uniform(4.0, 6.0)), 1), "detector": detector,
            "thickness_A": round(float(thickness_A if not cand.is_2d else cand.thickness_A), 2),
            "rotation_deg": round(float(rng.uniform(0.0, 180.0)), 2), "is_2d": cand.is_2d,
            "generalisation": cand.generalisation, "structure_type": cand.structure_type, "source": cand.source,
            "image": f"samples/{cand.tier}/{sid}/image.tif",
            "simulator": simulator, "key": cand.key, "field_of_view_A": round(min(float(fov), MAX_SIDE_PX * pixel), 2),
            "_slab_A": float(thickness_A), "_seed": [int(v) for v in rng.integers(0, 2 ** 31, 2)]}


def simulate_sample(spec: dict, structure) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """``(noisy, clean, columns_px, column_labels)`` of one spec; the clean image is in expected
    electrons per pixel, ``columns_px`` ``(n, 2)`` ``(y, x)``."""
    from ..simulate import incoherent_image, simulate_stem

    if spec.get("conditions") == "realistic":
        scene = _scene(spec, structure)
        return scene["noisy"], scene["clean"], scene["columns"], scene["labels"]
    px, fov = spec["pixel_size_A"], spec["field_of_view_A"]
    if spec["simulator"] == "abtem":
        slab = spec["_slab_A"] if not spec["is_2d"] else structure.lattice.c  # a monolayer: one cell
        sim = simulate_stem(structure, spec["zone_axis"], thickness_A=slab, detector=spec["detector"],
                            pixel_size_A=px, field_of_view_A=fov, rotation_deg=spec["rotation_deg"],
                            defocus_A=spec.get("defocus_A", 0.0), Cs_A=spec.get("Cs_A", 0.0), seed=spec["_seed"][0])
        fraction = sim.data.astype(float)
        if spec["detector"] == "iDPC":  # zero-mean phase signal: offset so that counts are positive
            fraction = (fraction - fraction.min()) / max(float(np.ptp(fraction)), 1e-12) * INCOHERENT_YIELD
    else:
        sim = incoherent_image(structure, spec["zone_axis"], pixel_size_A=px, field_of_view_A=fov,
                               rotation_deg=spec["rotation_deg"], probe_fwhm_A=spec.get("probe_fwhm_A", 0.8),
                               z_exponent=spec.get("z_exponent", 1.7))
        fraction = sim.data / max(float(sim.data.mean()), 1e-12) * INCOHERENT_YIELD
    columns = np.asarray(sim.true_columns_px, float)
    if spec.get("scan_shear"):
        fraction, columns = sheared(fraction, columns, spec["scan_shear"])
    clean = np.clip(fraction, 0.0, None) * spec["dose_e_per_A2"] * px * px
    noisy = np.random.default_rng(spec["_seed"][1]).poisson(clean).astype(np.float32)
    return noisy, clean.astype(np.float32), columns, list(sim.metadata["true_columns_species"])


def _scene(spec: dict, structure) -> dict:
    """:func:`.scenes.render_scene` of a realistic spec, with an interface's second crystal."""
    second_key = spec["scene_params"].get("second_key")
    second = next(c for c in _cached_pool() if c.key == second_key).structure if second_key else None
    return render_scene(spec, structure, second)


def sheared(image: np.ndarray, columns_px: np.ndarray, shear: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` and its ``(y, x)`` column positions under a linear scan shear: x moves by
    ``shear × (y − centre)``, as when the slow scan direction is not square to the fast one."""
    from scipy.ndimage import affine_transform

    cy = 0.5 * (image.shape[0] - 1)
    inverse = np.array([[1.0, 0.0], [-shear, 1.0]])
    out = affine_transform(image, inverse, offset=(0.0, shear * cy), order=1, mode="nearest")
    moved = columns_px.copy()
    moved[:, 1] += shear * (moved[:, 0] - cy)
    return out, moved


#: Files a finished sample folder holds; ``meta.json`` is written last.
SAMPLE_FILES = ("clean.npy", "columns.npy", "columns_species.json", "truth.cif", "meta.json")


def _finished_meta(spec: dict, outdir) -> dict | None:
    """The META of an already generated sample of ``spec`` (same id and settings), else ``None``."""
    import json

    folder = Path(outdir) / "samples" / spec["tier"] / spec["id"]
    if not all((folder / name).is_file() for name in SAMPLE_FILES) or not (Path(outdir) / spec["image"]).is_file():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except ValueError:
        return None
    same = all(meta.get(k) == v for k, v in spec.items() if not k.startswith("_") and k not in ("key", "field_of_view_A"))
    return {**meta, "time_s": meta.get("time_s", 0.0)} if same else None


def generate_sample(spec: dict, outdir) -> dict:
    """Simulate one spec and write its folder under ``outdir``; returns its META (with ``time_s``).

    A sample already on disk with the same settings is kept (so an interrupted generation resumes).
    """
    from ..io.write import write_cif, write_json, write_tiff_calibrated

    done = _finished_meta(spec, outdir)
    if done is not None:
        return done
    start = time.perf_counter()
    cand = next(c for c in _cached_pool() if c.key == spec["key"])
    folder = Path(outdir) / "samples" / spec["tier"] / spec["id"]
    folder.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in spec.items() if not k.startswith("_") and k not in ("key", "field_of_view_A")}
    if spec.get("conditions") == "realistic":  # a scene: its truth region and what it came to
        scene = _scene(spec, cand.structure)
        noisy, clean, cols, labels = scene["noisy"], scene["clean"], scene["columns"], scene["labels"]
        np.save(folder / "region.npy", scene["region"])
        meta.update(scene["info"])
    else:
        noisy, clean, cols, labels = simulate_sample(spec, cand.structure)
    meta["n_columns"] = int(len(cols))
    image_meta = {"signal": spec["detector"], "voltage_kV": 200.0, "dose_e_per_A2": spec["dose_e_per_A2"],
                  "formula": spec["formula"]}
    recorded_px = spec["pixel_size_A"] * spec.get("calibration_factor", 1.0)  # a miscalibrated file
    write_tiff_calibrated(Path(outdir) / spec["image"], noisy, recorded_px, image_meta)
    np.save(folder / "clean.npy", clean)
    np.save(folder / "columns.npy", cols)
    write_json(folder / "columns_species.json", labels)
    write_cif(folder / "truth.cif", cand.structure)
    meta["time_s"] = round(time.perf_counter() - start, 2)
    write_json(folder / "meta.json", meta)
    return meta


def generate_benchmark(outdir, tiers=TIERS, quick: bool = False, seed: int = 0, n_per_tier: int = 150,
                       workers: int = 1, conditions: str = "standard", progress: Progress = no_progress) -> Path:
    """Write a benchmark into ``outdir``; returns the path of ``manifest.json``.

    ``quick``: the fixed 6-sample set (2 per tier, under a minute on one core). ``workers`` > 1
    simulates in a process pool. The manifest lists the samples' META in the selection order and
    ``time_s`` (per-sample wall times, seconds) under ``timing``.
    """
    from ..io.write import write_json

    outdir = Path(outdir)
    progress(0.0, "selecting structures")
    specs = select_samples(tuple(tiers), quick, seed, n_per_tier, pool=_cached_pool(), conditions=conditions)
    metas, times = [None] * len(specs), [0.0] * len(specs)
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_single_thread) as ex:
            futures = [ex.submit(generate_sample, s, outdir) for s in specs]
            for i, fut in enumerate(futures):
                metas[i] = fut.result()
                progress((i + 1) / len(specs), f"sample {i + 1}/{len(specs)}: {specs[i]['id']}")
    else:
        for i, spec in enumerate(specs):
            metas[i] = generate_sample(spec, outdir)
            progress((i + 1) / len(specs), f"sample {i + 1}/{len(specs)}: {spec['id']}")
    for i, meta in enumerate(metas):
        times[i] = meta.pop("time_s")
    manifest = {"version": VERSION, "seed": int(seed), "quick": bool(quick), "conditions": conditions, "samples": metas,
                "timing": {"time_s": times, "mean_s": round(float(np.mean(times)), 2) if times else 0.0}}
    return write_json(outdir / "manifest.json", manifest)


_POOL: list = []


def _cached_pool() -> list:
    """The benchmark structures, built once per process."""
    if not _POOL:
        _POOL.extend(candidates())
    return _POOL


def _single_thread() -> None:
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"

