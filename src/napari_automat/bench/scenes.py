"""Realistic scenes for the benchmark (``conditions="realistic"``): images as they come off a microscope.

Each sample is one scene, drawn by the sample's seeded generator:

- ``nanoparticle``: a crystal particle of a few nm (round, or faceted: a convex polygon), thicker in
  its middle, on an amorphous carbon support, in a field two to four times its size;
- ``partial``: a crystal covering part of the field behind a straight or ragged edge, the rest
  vacuum or amorphous;
- ``interface``: two crystals side by side along a straight interface, unequal areas: another
  compound of the same tier, both bulk or both monolayers (a heterostructure; the element hint then
  names both compounds' elements), or the same compound rotated (a grain boundary), both sides one
  slab thick, so their Z-contrast is as it would be;
- ``stack``: a drifting low-dose frame series (6–12 frames, each at 1/N of the dose, a rigid drift
  between frames, a slow linear drift during each frame's scan and scan-line jitter), written as a
  multi-frame TIFF.

On any scene: scan shear up to ±2%, a recorded pixel size up to ±5% off the true one, a smooth
background, another probe size and Z-contrast exponent. The crystals are rendered with the
incoherent (Z-contrast) model's own parts (``simulate.geometry`` columns, ``gaussian_columns``):
only the columns inside a crystal's region are drawn, so a region's edge cuts between columns, not
through them. The amorphous support is random light-atom points at the same probe. The truth is the
crystal the user is meant to get: the scene's only crystal, or the larger domain of an interface;
``columns.npy`` holds its columns inside its region (for a stack, where they are in frame 0) and
``region.npy`` its region (pixels).
"""

from __future__ import annotations

import math

import numpy as np

#: Scene kinds of the realistic tier.
SCENES = ("nanoparticle", "partial", "interface", "stack")
#: Ranges the realistic tier draws from (uniform unless said): pixel size [Å]; field of view [Å]
#: (at most ``MAX_SIDE_PX`` pixels); dose [e/Å², log-uniform] (a stack's total); recorded pixel size
#: over the true one; scan shear; probe FWHM [Å]; Z exponent; background level (of the crystal's
#: mean signal) and its feature length [px]; particle diameter [Å]; the share of the field a partial
#: crystal covers; the larger domain's share of an interface; the ragged edge's amplitude [Å];
#: the support's mean signal (of the crystal's) and its atoms per Å²; frames of a stack, the rigid
#: step between frames [px], the drift during a frame [px over the frame], scan jitter [px].
REALISTIC = {"pixel_A": (0.1, 0.2), "fov_A": (50.0, 100.0), "dose": (3.5, 5.5), "calibration": (0.95, 1.05),
             "shear": (-0.02, 0.02), "probe_fwhm_A": (0.7, 1.1), "z_exponent": (1.5, 2.0),
             "background": (0.0, 0.3), "background_length_px": (20.0, 80.0),
             "particle_diameter_A": (20.0, 60.0), "partial_fraction": (0.3, 0.7), "major_fraction": (0.55, 0.8),
             "ragged_A": (2.0, 8.0), "support_signal": (0.05, 0.3), "support_density_per_A2": (0.3, 1.5),
             "frames": (6, 12), "frame_step_px": (0.5, 3.0), "frame_drift_px": (0.0, 2.0), "jitter_px": (0.1, 0.4)}
#: Atomic number of the amorphous support's atoms (carbon).
SUPPORT_Z = 6


def realistic_conditions(spec: dict, rng, pool, scene: str | None = None) -> dict:
    """Spec changes that turn a standard draw into a realistic scene (``scene`` forces the kind).

    ``pool``: the benchmark's candidates (the other compound of an interface comes from the same
    tier). All values are JSON-ready; the per-scene draws are under ``scene_params``.
    """
    from .generate import MAX_SIDE_PX

    R = REALISTIC
    u = lambda key: float(rng.uniform(*R[key]))  # noqa: E731
    scene = scene or SCENES[int(rng.integers(len(SCENES)))]
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {', '.join(SCENES)}, not {scene!r}")
    px = round(u("pixel_A"), 4)
    fov = round(min(u("fov_A"), MAX_SIDE_PX * px), 2)
    changes = {"conditions": "realistic", "scene": scene, "simulator": "incoherent", "detector": "HAADF",
               "pixel_size_A": px, "field_of_view_A": fov, "dose_e_per_A2": round(float(10 ** u("dose")), 1),
               "calibration_factor": round(u("calibration"), 4), "scan_shear": round(u("shear"), 4),
               "probe_fwhm_A": round(u("probe_fwhm_A"), 3), "z_exponent": round(u("z_exponent"), 3),
               "background": round(u("background"), 3),
               "background_length_px": round(u("background_length_px"), 1)}
    p: dict = {}
    if scene == "nanoparticle":
        p["shape"] = "round" if rng.random() < 0.5 else "faceted"
        p["diameter_A"] = round(min(u("particle_diameter_A"), 0.6 * fov), 2)
        room = 0.5 * (fov - p["diameter_A"]) * 0.6  # the centre stays well inside the field
        p["centre_A"] = [round(0.5 * fov + float(rng.uniform(-room, room)), 2) for _ in range(2)]
        if p["shape"] == "faceted":
            k = int(rng.integers(5, 9))
            angles = (np.arange(k) + rng.uniform(-0.3, 0.3, k)) * 2 * math.pi / k + rng.uniform(0, 2 * math.pi)
            p["facet_angles_deg"] = [round(float(math.degrees(a)), 2) for a in np.sort(angles)]
        p["support_signal"] = round(u("support_signal"), 3)
        p["support_density_per_A2"] = round(u("support_density_per_A2"), 3)
    elif scene in ("partial", "interface"):
        p["edge_angle_deg"] = round(float(rng.uniform(0.0, 360.0)), 2)
        key = "partial_fraction" if scene == "partial" else "major_fraction"
        p["fraction"] = round(u(key), 3)
        if scene == "partial":
            p["edge"] = "straight" if rng.random() < 0.5 else "ragged"
            p["ragged_A"] = round(u("ragged_A"), 2) if p["edge"] == "ragged" else 0.0
            p["rest"] = "vacuum" if rng.random() < 0.5 else "amorphous"
            if p["rest"] == "amorphous":
                p["support_signal"] = round(u("support_signal"), 3)
                p["support_density_per_A2"] = round(u("support_density_per_A2"), 3)
        else:
            same = [c for c in pool if c.key == spec["key"]]
            others = [c for c in pool if c.tier == spec["tier"] and c.key != spec["key"] and c.is_2d == spec["is_2d"]]
            if rng.random() < 0.5 or not others:
                p["kind"], other, axis = "grain_boundary", same[0], spec["zone_axis"]
                rotation = spec["rotation_deg"] + float(rng.choice([-1, 1]) * rng.uniform(10.0, 80.0))
            else:
                other = others[int(rng.integers(len(others)))]
                p["kind"], axis = "heterostructure", other.axes[int(rng.integers(len(other.axes)))]
                rotation = float(rng.uniform(0.0, 180.0))
            p.update({"second_key": other.key, "second_formula": other.formula,
                      "second_zone_axis": [int(v) for v in axis], "second_rotation_deg": round(rotation % 180.0, 2)})
            changes["elements"] = sorted(set(spec["elements"]) | set(other.elements))
    else:
        n = int(rng.integers(R["frames"][0], R["frames"][1] + 1))
        angle = rng.uniform(0.0, 2 * math.pi, n - 1)
        step = rng.uniform(*R["frame_step_px"], n - 1)
        offsets = np.vstack([[0.0, 0.0], np.cumsum(np.column_stack([np.sin(angle), np.cos(angle)]) * step[:, None], 0)])
        p.update({"frames": n, "frame_offsets_px": np.round(offsets, 3).tolist(),
                  "drift_px_per_frame": [round(float(v), 3) for v in rng.uniform(-1, 1, 2) * u("frame_drift_px")],
                  "jitter_px": round(u("jitter_px"), 3)})
    changes["scene_params"] = p
    return changes


def crystal_columns(structure, zone_axis, pixel_size_A: float, shape, rotation_deg: float, probe_fwhm_A: float,
                    z_exponent: float, thickness_A: float | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """The incoherent model's columns of ``structure`` in a field of ``shape`` px: positions
    ``(n, 2)`` ``(y, x)`` [px] (with the probe tails' margin), weights ``Σ Z^n`` and species labels.

    ``thickness_A``: a bulk slab's thickness; the weights are then per slab (``Σ Z^n`` of one
    repeat along the beam × thickness / repeat), so two crystals side by side in one lamella have
    their relative Z-contrast. ``None``: one repeat (a monolayer)."""
    from ..simulate.geometry import field_columns, projected_cell
    from ..simulate.incoherent import FWHM_PER_SIGMA

    cell = projected_cell(structure, zone_axis)
    margin_A = 4 * probe_fwhm_A / FWHM_PER_SIGMA
    positions, index = field_columns(cell, shape, pixel_size_A, rotation_deg, margin_A=margin_A)
    weights = cell.column_weights(z_exponent)[index]
    if thickness_A:
        weights = weights * thickness_A / cell.repeat_A
    return positions, weights, [cell.column_labels[i] for i in index]


def _pixels(shape) -> np.ndarray:
    return np.stack(np.mgrid[0:shape[0], 0:shape[1]], -1).reshape(-1, 2).astype(float)


def _edge_side(points_px, shape, p: dict, px: float, rng_seed: int) -> np.ndarray:
    """Signed distance [px] of ``points_px`` ``(n, 2)`` to the scene's edge (negative: the main
    crystal's side); the edge sits where the main side covers ``p['fraction']`` of the field."""
    t = math.radians(p["edge_angle_deg"])
    normal = np.array([math.sin(t), math.cos(t)])
    centre = 0.5 * (np.array(shape, float) - 1)
    along = np.array([normal[1], -normal[0]])
    grid = _pixels(shape)

    def raw(points):
        s = (points - centre) @ normal
        if p.get("ragged_A"):
            ts = np.arange(-shape[0] - shape[1], shape[0] + shape[1] + 1, dtype=float)
            from scipy.ndimage import gaussian_filter1d

            wiggle = gaussian_filter1d(np.random.default_rng(rng_seed).standard_normal(len(ts)), 4.0 / px)
            wiggle *= p["ragged_A"] / px / max(float(np.std(wiggle)), 1e-12)
            s = s + np.interp((points - centre) @ along, ts, wiggle)
        return s

    level = float(np.quantile(raw(grid), p["fraction"]))
    return raw(np.asarray(points_px, float).reshape(-1, 2)) - level


def _particle(points_px, p: dict, px: float) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, thickness factor)`` of ``points_px`` for a nanoparticle: a disc or a convex
    polygon; the factor (0.4 at the rim, 1 in the middle) stands for its projected thickness."""
    pts = np.asarray(points_px, float).reshape(-1, 2)
    c = np.array(p["centre_A"][::-1]) / px  # centre_A is (x, y)
    radius = 0.5 * p["diameter_A"] / px
    d = pts - c
    r = np.hypot(d[:, 0], d[:, 1])
    if p["shape"] == "round":
        inside = r < radius
    else:
        a = np.radians(p["facet_angles_deg"])
        verts = np.column_stack([np.sin(a), np.cos(a)]) * radius
        inside = np.ones(len(pts), bool)
        for v0, v1 in zip(verts, np.roll(verts, -1, 0)):
            edge = v1 - v0
            inside &= (edge[1] * (d[:, 0] - v0[0]) - edge[0] * (d[:, 1] - v0[1])) >= 0  # left of a CCW edge
    profile = np.sqrt(np.clip(1.0 - (r / (1.05 * radius)) ** 2, 0.0, 1.0))
    return inside, 0.4 + 0.6 * profile


def _support(shape, px: float, sigma_px: float, density: float, rng) -> np.ndarray:
    """Amorphous carbon: random points of weight ``Z^1.7`` (unscaled)."""
    from ..simulate.incoherent import gaussian_columns

    n = rng.poisson(density * shape[0] * shape[1] * px * px)
    points = rng.uniform(-0.5, np.array(shape) - 0.5, (n, 2))
    return gaussian_columns(shape, points, np.full(n, SUPPORT_Z ** 1.7), sigma_px)


def render_scene(spec: dict, structure, second=None) -> dict:
    """Simulate one realistic spec: ``noisy`` (image, or ``(frame, y, x)`` stack), ``clean`` (expected
    counts of the still scene at the whole dose), ``columns`` ``(n, 2)`` and ``labels`` of the truth
    crystal inside its region, ``region`` (bool, the truth crystal's pixels) and ``info`` (meta)."""
    from scipy import ndimage

    from ..simulate.incoherent import FWHM_PER_SIGMA, gaussian_columns
    from ..simulate.noise import background, scan_jitter
    from .generate import INCOHERENT_YIELD, sheared

    scene, p = spec["scene"], spec["scene_params"]
    px, dose = spec["pixel_size_A"], spec["dose_e_per_A2"]
    side = int(round(spec["field_of_view_A"] / px))
    shape = (side, side)
    rng = np.random.default_rng(spec["_seed"][1])
    sigma_px = spec["probe_fwhm_A"] / FWHM_PER_SIGMA / px
    pad = 0
    if scene == "stack":
        pad = int(math.ceil(np.max(np.abs(p["frame_offsets_px"])) + np.max(np.abs(p["drift_px_per_frame"])) + 4))
    canvas = (side + 2 * pad, side + 2 * pad)
    thickness = None if spec["is_2d"] else spec["thickness_A"]  # an interface's partner is alike (2D or bulk)
    pos, weights, labels = crystal_columns(structure, spec["zone_axis"], px, canvas, spec["rotation_deg"],
                                           spec["probe_fwhm_A"], spec["z_exponent"], thickness)
    grid = _pixels(canvas)
    factor = np.ones(len(pos))
    if scene == "nanoparticle":
        keep, factor = _particle(pos, p, px)
        region = _particle(grid, p, px)[0]
    elif scene in ("partial", "interface"):
        keep = _edge_side(pos, canvas, p, px, spec["_seed"][0]) < 0
        region = _edge_side(grid, canvas, p, px, spec["_seed"][0]) < 0
    else:
        keep, region = np.ones(len(pos), bool), np.ones(len(grid), bool)
    region = region.reshape(canvas)
    crystal = gaussian_columns(canvas, pos[keep], (weights * factor)[keep], sigma_px)
    if not region.any() or not keep.any():
        raise ValueError(f"{spec['id']}: the scene's crystal region is empty")
    level = float(crystal[region].mean())  # the truth crystal's mean signal
    image = crystal.copy()
    info = {"crystal_fraction": round(float(region[pad:pad + side, pad:pad + side].mean()), 4)}
    if scene == "interface":
        pos2, w2, _ = crystal_columns(second, p["second_zone_axis"], px, canvas, p["second_rotation_deg"],
                                      spec["probe_fwhm_A"], spec["z_exponent"], thickness)
        keep2 = _edge_side(pos2, canvas, p, px, spec["_seed"][0]) >= 0
        image += gaussian_columns(canvas, pos2[keep2], w2[keep2], sigma_px)
    if scene == "nanoparticle" or p.get("rest") == "amorphous":
        support = _support(canvas, px, sigma_px, p["support_density_per_A2"], rng)
        if scene == "partial":
            support[region] = 0.0
        image += support / max(float(support.mean()), 1e-12) * p["support_signal"] * level
    fraction = image / max(level, 1e-12) * INCOHERENT_YIELD
    if spec["background"] > 0:
        smooth = background(canvas, 0.5, spec["background_length_px"], rng)
        fraction += np.clip(1.0 + smooth, 0.0, None) * spec["background"] * INCOHERENT_YIELD
    columns = pos[keep] - pad
    labels = [lab for lab, k in zip(labels, keep) if k]
    e_per_px = dose * px * px
    if scene == "stack":
        n = p["frames"]
        vy, vx = (v / side for v in p["drift_px_per_frame"])  # per scan line
        rows, cols = np.mgrid[0:side, 0:side].astype(float)
        frames = []
        for k, (oy, ox) in enumerate(p["frame_offsets_px"]):
            frame = ndimage.map_coordinates(fraction, [rows * (1 + vy) + pad + oy, cols + rows * vx + pad + ox],
                                            order=3, mode="nearest")
            frame = scan_jitter(frame, p["jitter_px"], rng)
            if spec["scan_shear"]:
                frame = sheared(frame, np.zeros((0, 2)), spec["scan_shear"])[0]
            frames.append(rng.poisson(np.clip(frame, 0.0, None) * e_per_px / n))
        noisy = np.stack(frames).astype(np.float32)
        i = columns[:, 0] / (1 + vy)  # where frame 0 shows them (its rigid offset is zero)
        columns = np.column_stack([i, columns[:, 1] - i * vx])
        fraction = fraction[pad:pad + side, pad:pad + side]
        region = region[pad:pad + side, pad:pad + side]
        if spec["scan_shear"]:
            columns = _shear_points(columns, spec["scan_shear"], side)
        clean = np.clip(fraction, 0.0, None) * e_per_px
    else:
        if spec["scan_shear"]:
            fraction, columns = sheared(fraction, columns, spec["scan_shear"])
            region = sheared(region.astype(float), np.zeros((0, 2)), spec["scan_shear"])[0] > 0.5
        clean = np.clip(fraction, 0.0, None) * e_per_px
        noisy = rng.poisson(clean).astype(np.float32)
    inside = np.all((columns > -0.5) & (columns < np.array(shape) - 0.5), axis=1)
    info["n_frames"] = int(noisy.shape[0]) if noisy.ndim == 3 else 1
    return {"noisy": noisy, "clean": clean.astype(np.float32), "columns": columns[inside],
            "labels": [lab for lab, k in zip(labels, inside) if k], "region": region, "info": info}


def _shear_points(columns: np.ndarray, shear: float, side: int) -> np.ndarray:
    """``columns`` ``(y, x)`` moved as :func:`~.generate.sheared` moves them in a ``side``-row image."""
    moved = columns.copy()
    moved[:, 1] += shear * (moved[:, 0] - 0.5 * (side - 1))
    return moved


def plot_examples(bench_dir, path) -> None:
    """One image per scene kind of a realistic benchmark, its truth region outlined and its truth
    columns dotted (``docs/images/realistic_tier.png``): scene ``i`` from tier ``i mod 3``, a
    ragged edge and a heterostructure where there is one, else the first of its kind."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.read import read_micrograph

    bench_dir = Path(bench_dir)
    samples = json.loads((bench_dir / "manifest.json").read_text())["samples"]
    from .structures import TIERS

    prefer = {"partial": ("edge", "ragged"), "interface": ("kind", "heterostructure")}
    first = {}
    for i, kind in enumerate(SCENES):
        ofkind = [s for s in samples if s["scene"] == kind]
        key, value = prefer.get(kind, (None, None))
        ranked = sorted(ofkind, key=lambda s: (s["tier"] != TIERS[i % 3], s["scene_params"].get(key) != value))
        if ranked:
            first[kind] = ranked[0]
    fig, axes = plt.subplots(1, len(SCENES), figsize=(4.2 * len(SCENES), 4.6))
    for ax, kind in zip(np.atleast_1d(axes), SCENES):
        ax.set_axis_off()
        if kind not in first:
            continue
        s = first[kind]
        folder = bench_dir / "samples" / s["tier"] / s["id"]
        data = np.asarray(read_micrograph(bench_dir / s["image"]).data, float)
        frame = data[0] if data.ndim == 3 else data
        region = np.load(folder / "region.npy")
        lo, hi = np.percentile(frame, 1), np.percentile(frame[region], 99.5)  # the truth crystal's contrast
        ax.imshow(frame, cmap="gray", vmin=lo, vmax=hi)
        ax.contour(region.astype(float), levels=[0.5], colors="tab:orange", linewidths=0.8)
        cols = np.load(folder / "columns.npy")
        ax.plot(cols[:, 1], cols[:, 0], ".", color="tab:cyan", markersize=1.2, alpha=0.6)
        p = s["scene_params"]
        detail = {"nanoparticle": p.get("shape"), "partial": f"{p.get('edge')}, {p.get('rest')}",
                  "interface": f"{p.get('kind', '').replace('_', ' ')}: + {p.get('second_formula')}",
                  "stack": f"frame 1 of {p.get('frames')}"}[kind]
        ax.set_title(f"{kind} ({detail})\n{s['formula']} [{''.join(map(str, s['zone_axis']))}], "
                     f"{s['dose_e_per_A2']:.0f} e/Å², {s['pixel_size_A']:.3f} Å/px", fontsize=9)
    fig.suptitle("Realistic tier: one sample per scene (orange: the truth crystal's region; cyan: its columns; "
                 "contrast set on the truth crystal)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: Where an unmatched realistic sample went wrong (:func:`failure_kind`).
FAILURES = ("no lattice", "error", "wrong crop", "wrong domain", "mixed domains", "no structure",
            "right formula, wrong cell", "wrong formula")


def variant(meta: dict) -> str:
    """The scene with its variant: ``nanoparticle/round``, ``partial/ragged, amorphous``, ..."""
    p = meta["scene_params"]
    detail = {"nanoparticle": p.get("shape"), "partial": f"{p.get('edge')}, {p.get('rest')}",
              "interface": str(p.get("kind", "")).replace("_", " "), "stack": None}[meta["scene"]]
    return meta["scene"] + (f"/{detail}" if detail else "")


def failure_kind(row: dict, meta: dict, region: np.ndarray) -> str | None:
    """Why a benchmark row of a realistic sample did not match (None when it did), one of
    :data:`FAILURES`: the chain found no lattice or failed otherwise; it cropped to a box mostly
    (over half) outside the truth crystal (at an interface: the other domain); it reconstructed the
    other compound of a heterostructure, or a compound with elements of both (mixed domains); it
    gave no structure; the right formula in another cell or polymorph (a grain boundary's grains fit
    as one cell come out here); or a wrong formula."""
    import re

    from pymatgen.core import Composition

    if row.get("matched"):
        return None
    error = row.get("error") or ""
    if error:
        return "no lattice" if "lattice" in error.lower() else "error"
    boxes = [re.search(r"px \[(\d+), (\d+), (\d+), (\d+)\]", w) for w in row.get("warnings") or []
             if "analysed that region only" in w]
    boxes = [m for m in boxes if m]
    if boxes:
        y0, y1, x0, x1 = (int(v) for v in boxes[0].groups())
        if region[y0:y1, x0:x1].mean() < 0.5:
            return "wrong domain" if meta["scene"] == "interface" else "wrong crop"
    predicted = row.get("predicted_formula")
    second = meta["scene_params"].get("second_formula")
    if not predicted:
        return "no structure"
    truth = Composition(meta["formula"])
    if second and Composition(second).reduced_formula != truth.reduced_formula:  # a heterostructure
        if Composition(predicted).reduced_formula == Composition(second).reduced_formula:
            return "wrong domain"
        if set(Composition(predicted).elements) - set(truth.elements):
            return "mixed domains"
    return "right formula, wrong cell" if row.get("composition_correct") else "wrong formula"


def realistic_summary(bench_dir, run_dir, heldout: bool = True) -> dict:
    """Match rates of a realistic benchmark's run (hint on) by tier, scene and scene variant, and
    the failures by kind, on the held-out half (odd sample indices; ``heldout=False``: the even,
    tuning half; ``None``: all)."""
    import json
    from pathlib import Path

    from .structures import TIERS

    bench_dir, run_dir = Path(bench_dir), Path(run_dir)
    metas = {m["id"]: m for m in json.loads((bench_dir / "manifest.json").read_text())["samples"]}
    rows = [r for r in json.loads((run_dir / "samples.json").read_text()) if r["hint"] and r["id"] in metas]
    if heldout is not None:
        rows = [r for r in rows if (int(r["id"][1:5]) % 2 == 1) == heldout]

    def rate(group):
        return {"n": len(group), "matched": sum(bool(r["matched"]) for r in group)}

    out = {"all": rate(rows), "tiers": {}, "scenes": {}, "variants": {}, "failures": {}, "failed": []}
    for r in rows:
        meta = metas[r["id"]]
        folder = bench_dir / "samples" / meta["tier"] / meta["id"]
        kind = failure_kind(r, meta, np.load(folder / "region.npy"))
        if kind:
            out["failures"].setdefault(meta["scene"], {}).setdefault(kind, 0)
            out["failures"][meta["scene"]][kind] += 1
            out["failed"].append({"id": r["id"], "scene": variant(meta), "failure": kind, "predicted": r.get(
                "predicted_formula"), "error": r.get("error")})
    for t in TIERS:
        out["tiers"][t] = rate([r for r in rows if metas[r["id"]]["tier"] == t])
        for s in SCENES:
            out["scenes"].setdefault(s, {})[t] = rate([r for r in rows if metas[r["id"]]["tier"] == t
                                                       and metas[r["id"]]["scene"] == s])
    for v in sorted({variant(metas[r["id"]]) for r in rows}):
        out["variants"][v] = rate([r for r in rows if variant(metas[r["id"]]) == v])
    return out
