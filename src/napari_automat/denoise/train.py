"""Training data and training loop of the mixture-of-experts denoiser (:mod:`.moe`).

Data come only from the project's own simulations:

- **column model** (milliseconds per image): the structures of :func:`napari_automat.bench.structures.candidates`
  projected along their resolvable zone axes; each column a Gaussian probe image. HAADF: bright
  columns of weight ``Σ Z^n`` (n 1.5–1.9); ABF: an approximation, dark columns (``Σ Z^n``, n
  0.5–0.8) on a bright background; iDPC: an approximation, the blurred projected potential
  (``Σ Z^n``, n 0.6–0.9) with zero mean. Deliberate defects: vacancies (a column dropped or
  half-emptied), substitutions (a column's weight scaled by 0.3–2), interfaces (two lattices on the
  two sides of a line), amorphous regions (random points) and blank fields;
- **abTEM** (``[sim]`` extra, seconds per structure): a few perfect crystals simulated with
  :func:`napari_automat.simulate.abtem_sim.simulate_stem` in HAADF, ABF and iDPC at 0.05 Å/px,
  cached on disk, resampled to the patch's pixel size and rotation.

Acquisition: pixel size 0.05–0.25 Å, any rotation, probe 0.6–1.2 Å FWHM, scan jitter, linear drift,
smooth background; Poisson noise for 10^2.5–10^6.3 e/Å² (HAADF, ABF: counts; iDPC: the integrated
noise of four segments); a share of images gain-scaled with Gaussian read noise (not counts). The
clean image of the same simulation (with the same jitter and drift) is the target.

Structures are split by compound: :func:`is_heldout` compounds never enter training.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import AutomatError
from . import spectrum
from .moe import N_COND, TILE, conditioning, guide, normalisation

DETECTORS = ("HAADF", "ABF", "iDPC")
#: Dose range [e/Å²] of the training images (log-uniform).
DOSE_RANGE = (10 ** 2.5, 10 ** 6.3)
#: Pixel size range [Å] (log-uniform).
PIXEL_RANGE = (0.05, 0.25)
#: Training image size [px]: the Bragg guide and the gate's features come from the whole image, the
#: loss from a crop (``train(crop=…)``).
PATCH = 192
#: Perfect crystals simulated with abTEM for training (train-split compounds) and for the held-out
#: benchmark (held-out compounds), with their zone axes.
ABTEM_TRAIN = (("SrTiO3-perovskite", (0, 0, 1)), ("GaAs-zincblende", (1, 1, 0)), ("MoS2-2d", (0, 0, 1)),
               ("Si-diamond", (1, 1, 0)), ("TiO2-rutile", (0, 0, 1)))
ABTEM_HELDOUT = (("KTaO3-perovskite", (0, 0, 1)), ("InP-zincblende", (1, 1, 0)), ("WSe2-2d", (0, 0, 1)))
ABTEM_PIXEL_A = 0.05
ABTEM_FOV_A = 40.0
ABTEM_THICKNESS_A = 60.0


def is_heldout(key: str) -> bool:
    """Held-out compounds (about one in five): never used for training, only for the benchmark."""
    return zlib.crc32(key.split("-")[0].encode()) % 5 == 0


@dataclass
class Crystal:
    key: str
    cell: object  # ProjectedCell
    labels: list


def crystal_pool(split: str = "train") -> list[Crystal]:
    """Projected cells of the benchmark structures along their resolvable axes, for ``train`` or ``heldout``."""
    from ..bench.structures import candidates
    from ..simulate.geometry import projected_cell

    out = []
    for cand in candidates():
        if is_heldout(cand.key) != (split == "heldout"):
            continue
        for axis in cand.axes:
            cell = projected_cell(cand.structure, axis)
            out.append(Crystal(f"{cand.key}[{''.join(str(v) for v in axis)}]", cell, list(cell.column_labels)))
    if not out:
        raise AutomatError(f"no structures in the {split} split")
    return out


# --------------------------------------------------------------------------- column-model images

def _z_weights(cell, exponent: float) -> np.ndarray:
    return np.array([sum(occ * z ** exponent for z, occ in atoms) for atoms in cell.column_atoms])


def _lattice_columns(rng, crystal: Crystal, shape, pixel_A: float, sigma_A: float, exponent: float):
    from ..simulate.geometry import field_columns

    rotation = float(rng.uniform(0, 360))
    # a random translation: shift the whole field by a fraction of a cell
    pos, index = field_columns(crystal.cell, shape, pixel_A, rotation, margin_A=4 * sigma_A)
    shift = rng.uniform(-0.5, 0.5, 2) * np.max(np.linalg.norm(crystal.cell.basis_A, axis=1)) / pixel_A
    pos = pos + shift
    w = _z_weights(crystal.cell, exponent)[index]
    return pos, w / max(w.max(), 1e-12)


def _amorphous_columns(rng, shape, pixel_A: float):
    ny, nx = shape
    spacing = rng.uniform(1.2, 2.5) / pixel_A  # [px]
    n = int(ny * nx / spacing ** 2 * rng.uniform(0.6, 1.0))
    pts = rng.uniform(-4, [ny + 4, nx + 4], (max(n, 1) * 2, 2))
    tree_pts = []
    for p in pts:  # greedy minimum distance (a hard-core point process)
        if tree_pts and np.min(np.linalg.norm(np.asarray(tree_pts) - p, axis=1)) < 0.7 * spacing:
            continue
        tree_pts.append(p)
        if len(tree_pts) >= n:
            break
    pos = np.asarray(tree_pts).reshape(-1, 2)
    return pos, rng.uniform(0.2, 1.0, len(pos))


def column_model_image(rng, pool: list[Crystal], detector: str, shape=(PATCH, PATCH), pixel_A: float | None = None,
                       defects: bool = True, kind: str | None = None) -> dict:
    """One clean simulated patch: ``clean`` (HAADF/ABF: mean 1; iDPC: zero mean), ``pixel_A``,
    ``columns_px`` (true positions), ``defects`` (list of ``(y, x, kind, factor)``), ``kind``."""
    from ..simulate.incoherent import gaussian_columns
    from ..simulate.noise import background, drift, scan_jitter

    ny, nx = shape
    pixel_A = float(np.exp(rng.uniform(*np.log(PIXEL_RANGE)))) if pixel_A is None else float(pixel_A)
    fwhm = rng.uniform(0.6, 1.2) if detector != "ABF" else rng.uniform(0.8, 1.4)
    sigma_A = fwhm / 2.355
    exponent = {"HAADF": rng.uniform(1.5, 1.9), "ABF": rng.uniform(0.5, 0.8), "iDPC": rng.uniform(0.6, 0.9)}[detector]
    if kind is None:
        kind = rng.choice(["lattice", "interface", "amorphous", "mixed", "blank"], p=[0.68, 0.14, 0.07, 0.08, 0.03])
    found = []
    if kind == "blank":
        pos, w = np.zeros((0, 2)), np.zeros(0)
    elif kind == "amorphous":
        pos, w = _amorphous_columns(rng, shape, pixel_A)
    else:
        crystal = pool[rng.integers(len(pool))]
        pos, w = _lattice_columns(rng, crystal, shape, pixel_A, sigma_A, exponent)
        if kind in ("interface", "mixed"):
            angle = rng.uniform(0, np.pi)
            normal = np.array([np.sin(angle), np.cos(angle)])
            centre = np.array(shape) / 2 + rng.uniform(-0.25, 0.25, 2) * np.array(shape)
            side = (pos - centre) @ normal > 0
            if kind == "interface":
                other = pool[rng.integers(len(pool))]
                pos2, w2 = _lattice_columns(rng, other, shape, pixel_A, sigma_A, exponent)
            else:
                pos2, w2 = _amorphous_columns(rng, shape, pixel_A)
            side2 = (pos2 - centre) @ normal <= 0
            pos, w = np.concatenate([pos[side], pos2[side2]]), np.concatenate([w[side], w2[side2] * rng.uniform(0.5, 1.5)])
        if defects and len(w) and rng.random() < 0.7:
            inside = np.flatnonzero(np.all((pos >= 4) & (pos < np.array(shape) - 4), axis=1))
            n_def = min(len(inside), int(rng.integers(1, max(2, len(inside) // 15 + 2))))
            for i in rng.choice(inside, n_def, replace=False) if n_def else []:
                factor = float(rng.choice([0.0, rng.uniform(0.3, 0.7), rng.uniform(1.3, 2.0)]))
                found.append((float(pos[i, 0]), float(pos[i, 1]), "vacancy" if factor == 0 else "substitution", factor))
                w[i] *= factor
    cols = gaussian_columns(shape, pos, w, sigma_A / pixel_A)
    if detector == "HAADF":
        clean = cols + rng.uniform(0.0, 0.08)
    elif detector == "ABF":
        clean = 1.0 - rng.uniform(0.15, 0.6) * cols / max(cols.max(), 1e-9) if cols.max() > 0 else np.ones(shape)
    else:
        clean = cols - cols.mean()
    # acquisition distortions and background (the target keeps them: they are the specimen's image)
    if rng.random() < 0.5:
        clean = scan_jitter(clean, rng.uniform(0.005, 0.06) / pixel_A, rng)
    if rng.random() < 0.3:
        clean, _ = drift(clean, rng.uniform(-0.003, 0.003, 2))
    if rng.random() < 0.5:
        spread = float(np.std(clean)) or 0.1
        clean = clean + background(shape, rng.uniform(0.05, 0.5) * spread, rng.uniform(10, 60), rng)
    return {"clean": _scale(clean, detector, rng), "pixel_A": pixel_A, "columns_px": pos, "weights": w,
            "defects": found, "kind": str(kind), "detector": detector, "sigma_px": sigma_A / pixel_A}


def _scale(clean: np.ndarray, detector: str, rng) -> np.ndarray:
    """HAADF/ABF: non-negative with mean 1 (a relative beam fraction); iDPC: zero mean, std 0.015–0.05
    (integrated-DPC units of a 0.1 Å/px abTEM simulation)."""
    if detector == "iDPC":
        c = clean - clean.mean()
        std = float(c.std())
        return c * (rng.uniform(0.015, 0.05) / std) if std > 0 else c
    c = np.clip(clean, 0.0, None)
    return c / max(float(c.mean()), 1e-12)


# --------------------------------------------------------------------------- abTEM periods

def abtem_fields(cache_dir: str | Path, which=ABTEM_TRAIN, progress=print) -> list[dict]:
    """abTEM images (HAADF, ABF, iDPC; no noise) at 0.05 Å/px of the ``which`` crystals, cached as npz.

    Returns dicts ``{key, detector, image, pixel_A, columns_px}``; empty when the ``[sim]`` extra is missing.
    """
    try:
        import abtem  # noqa: F401
    except ModuleNotFoundError:
        progress("abTEM not installed ([sim] extra): training on the column model only")
        return []
    from ..bench.structures import candidates
    from ..simulate.abtem_sim import simulate_stem

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    by_key = None
    out = []
    for key, axis in which:
        for det in DETECTORS:
            f = cache / f"{key}_{''.join(map(str, axis))}_{det}.npz"
            if not f.exists():
                if by_key is None:
                    by_key = {c.key: c for c in candidates()}
                t = time.perf_counter()
                m = simulate_stem(by_key[key].structure, axis, thickness_A=ABTEM_THICKNESS_A, detector=det,
                                  pixel_size_A=ABTEM_PIXEL_A, field_of_view_A=ABTEM_FOV_A, seed=0)
                np.savez_compressed(f, image=m.data, columns_px=m.true_columns_px)
                progress(f"abTEM {key} {list(axis)} {det}: {time.perf_counter() - t:.0f} s")
            z = np.load(f)
            out.append({"key": key, "detector": det, "image": z["image"].astype(float), "pixel_A": ABTEM_PIXEL_A,
                        "columns_px": z["columns_px"]})
    return out


def abtem_patch(rng, field: dict, shape=(PATCH, PATCH), pixel_A: float | None = None) -> dict:
    """A rotated, resampled crop of an abTEM field at ``pixel_A`` (default random); same keys as
    :func:`column_model_image`."""
    from scipy import ndimage

    img = field["image"]
    src_px = field["pixel_A"]
    pixel_A = float(np.exp(rng.uniform(*np.log(PIXEL_RANGE)))) if pixel_A is None else float(pixel_A)
    ratio = pixel_A / src_px
    ny, nx = shape
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = 0.5 * ratio * math.hypot(ny, nx)
    lo = half + 2
    hi_y, hi_x = img.shape[0] - half - 2, img.shape[1] - half - 2
    if hi_y <= lo or hi_x <= lo:  # the field is too small for this pixel size: use the largest that fits
        ratio = (min(img.shape) - 6) / math.hypot(ny, nx)
        pixel_A, half = ratio * src_px, 0.5 * ratio * math.hypot(ny, nx)
        lo, hi_y, hi_x = half + 2, img.shape[0] - half - 2, img.shape[1] - half - 2
    centre = np.array([rng.uniform(lo, max(lo, hi_y)), rng.uniform(lo, max(lo, hi_x))])
    grid = np.stack(np.mgrid[0:ny, 0:nx], -1).reshape(-1, 2) - (np.array(shape) - 1) / 2
    src = centre + (grid * ratio) @ rot.T
    clean = ndimage.map_coordinates(img, src.T, order=3, mode="nearest").reshape(shape)
    cols = field["columns_px"]
    pos = (cols - centre) @ rot / ratio + (np.array(shape) - 1) / 2
    pos = pos[np.all((pos >= -0.5) & (pos < np.array(shape) - 0.5), axis=1)]
    det = field["detector"]
    if det == "iDPC":
        clean = clean - clean.mean()
    else:
        clean = np.clip(clean, 0, None) / max(clean.mean(), 1e-12) * 1.0
    return {"clean": clean, "pixel_A": pixel_A, "columns_px": pos, "defects": [], "kind": "abtem",
            "detector": det, "fraction": float(field["image"].mean()) if det != "iDPC" else None}


# --------------------------------------------------------------------------- noise

def add_noise(rng, sample: dict, dose: float | None = None, gain: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, clean)`` in the same units for a clean ``sample`` at ``dose`` [e/Å²] (default random).

    HAADF/ABF: Poisson counts with mean ``clean · f · dose · pixel²`` where ``f`` is the beam fraction
    on the detector (abTEM: its own; column model: HAADF 0.02–1, ABF 0.3–1, both log-uniform);
    ``gain`` (default: 30 % of images) scales counts, adds an offset and Gaussian read noise.
    iDPC: the clean signal plus the integral of white gradient noise of variance ``0.5/(dose · pixel²)``
    per component (four segments each holding about a quarter of the beam).
    """
    from ..simulate.render import integrate_gradient

    clean = np.asarray(sample["clean"], dtype=float)
    px = sample["pixel_A"]
    dose = float(np.exp(rng.uniform(*np.log(DOSE_RANGE)))) if dose is None else float(dose)
    det = sample["detector"]
    if det == "iDPC":
        s = math.sqrt(0.5 / (dose * px * px))
        gx, gy = rng.normal(0, s, clean.shape), rng.normal(0, s, clean.shape)
        return clean + integrate_gradient(gx, gy, px, periodic=False), clean.copy()
    fraction = sample.get("fraction")
    if fraction is None:
        lo, hi = (0.02, 1.0) if det == "HAADF" else (0.3, 1.0)
        fraction = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    lam = clean * fraction * dose * px * px
    counts = rng.poisson(lam).astype(float)
    gain = (rng.random() < 0.3) if gain is None else gain
    if gain:
        g = float(np.exp(rng.uniform(np.log(0.05), np.log(50))))
        offset = rng.uniform(0, 50) * g
        read = rng.uniform(0, 2) * g
        return counts * g + offset + rng.normal(0, read, counts.shape) if read > 0 else counts * g + offset, lam * g + offset
    return counts, lam


def training_pair(rng, noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input (2, h, w): image and Bragg guide, target (h, w), conditioning)`` in the network's
    unit-noise space."""
    norm = normalisation(noisy)
    analysis = spectrum.analyse(noisy)
    cond = conditioning(noisy, norm, analysis)
    x = norm.forward(noisy).astype(np.float32)
    return np.stack([x, guide(x, analysis)]), norm.target(clean).astype(np.float32), cond


# --------------------------------------------------------------------------- training

def build_pool(seed: int, n_column: int, abtem_cache: str | Path | None, n_abtem: int, progress=print) -> list[dict]:
    """Clean training patches: ``n_column`` column-model images and ``n_abtem`` abTEM crops."""
    rng = np.random.default_rng(seed)
    crystals = crystal_pool("train")
    pool = []
    for i in range(n_column):
        sample = column_model_image(rng, crystals, DETECTORS[i % 3])
        sample["clean"] = sample["clean"].astype(np.float32)
        pool.append(sample)
    fields = abtem_fields(abtem_cache, ABTEM_TRAIN, progress) if abtem_cache else []
    for i in range(n_abtem if fields else 0):
        sample = abtem_patch(rng, fields[i % len(fields)])
        sample["clean"] = sample["clean"].astype(np.float32)
        pool.append(sample)
    progress(f"pool: {n_column} column-model patches, {n_abtem if fields else 0} abTEM patches "
             f"({len(crystals)} train crystal projections)")
    return pool


def _augment(rng, a: np.ndarray) -> np.ndarray:
    k = int(rng.integers(4))
    a = np.rot90(a, k)
    return a[:, ::-1] if rng.random() < 0.5 else a


def train(out: str | Path, minutes: float = 30.0, seed: int = 0, device: str = "cpu", n_experts: int = 4,
          channels: int = 16, batch: int = 8, crop: int = 96, lr: float = 2e-3, balance: float = 0.05,
          n_column: int = 2400, n_abtem: int = 600, abtem_cache: str | Path | None = None, top_k: int = 2,
          init: str | Path | None = None, max_steps: int | None = None, progress=print) -> dict:
    """Train the mixture of experts for ``minutes`` (wall clock, after building the data) and write the
    weights to ``out`` and the model card to ``out`` with ``.json``. Deterministic for a given
    ``seed`` and number of steps (on CPU); ``max_steps`` stops earlier. Returns the card."""
    from ..extras import require

    torch = require("denoise", "torch")
    from ._nets import MixtureOfExperts
    from .moe import save_model

    torch.manual_seed(seed)
    if device == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    dev = torch.device(device)
    t0 = time.perf_counter()
    pool = build_pool(seed, n_column, abtem_cache, n_abtem, progress)
    t_data = time.perf_counter() - t0
    model = MixtureOfExperts(n_experts, channels, N_COND, 2).to(dev)
    if init:
        state = torch.load(init, map_location="cpu", weights_only=True)
        state.pop("_config", None)
        model.load_state_dict(state)
    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    rng = np.random.default_rng(seed + 1)
    budget = minutes * 60.0
    t_start = time.perf_counter()
    step, losses, usage_log = 0, [], []
    while True:
        elapsed = time.perf_counter() - t_start
        if elapsed >= budget or (max_steps is not None and step >= max_steps):
            break
        frac = elapsed / budget
        for group in opt.param_groups:  # cosine decay with a short warm-up
            group["lr"] = lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        xs, ys, cs = [], [], []
        for _ in range(batch):
            sample = pool[int(rng.integers(len(pool)))]
            noisy, clean = add_noise(rng, sample)
            x, y, c = training_pair(rng, noisy, clean)
            if crop and crop < x.shape[-1]:  # the guide and features come from the whole patch
                oy, ox = (int(v) for v in rng.integers(0, x.shape[-1] - crop + 1, 2))
                x, y = x[:, oy:oy + crop, ox:ox + crop], y[oy:oy + crop, ox:ox + crop]
            k, flip = int(rng.integers(4)), rng.random() < 0.5
            x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
            if flip:
                x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
            cs.append(c)
        x = torch.from_numpy(np.stack(xs)).to(dev).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(np.stack(ys)[:, None]).to(dev)
        c = torch.from_numpy(np.stack(cs)).to(dev)
        pred, weights = model(x, c, top_k=top_k)
        recon = torch.mean((pred - y) ** 2)
        usage = weights.mean(0)
        lb = n_experts * torch.sum(usage ** 2) - 1.0  # 0 when every expert is used alike
        loss = recon + balance * lb
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(recon.detach()))
        usage_log.append(usage.detach().cpu().numpy())
        step += 1
        if step % 50 == 0:
            progress(f"step {step}  {elapsed / 60:.1f}/{minutes:g} min  mse {np.mean(losses[-50:]):.4f}  "
                     f"gate usage {np.round(np.mean(usage_log[-50:], axis=0), 2).tolist()}")
    model.cpu().eval()
    out = Path(out)
    save_model(model, out)
    card = {
        "name": "napari-automat mixture-of-experts denoiser",
        "version": 1,
        "architecture": {"n_experts": n_experts, "channels": channels, "n_cond": N_COND, "in_channels": 2,
                         "top_k_inference": 2,
                         "parameters": int(sum(p.numel() for p in model.parameters())),
                         "tile_px": TILE, "expert": "residual 2-level U-Net (ReLU, dilated bottleneck)",
                         "gate": "conv encoder of the tile + [dose, contrast, sampling, periodicity] features",
                         "inputs": "normalised tile + its Bragg-filtered guide (whole image at inference)"},
        "training": {"seed": seed, "steps": step, "batch": batch, "crop_px": crop, "minutes": round((time.perf_counter() - t_start) / 60, 2),
                     "data_minutes": round(t_data / 60, 2), "device": device, "lr": lr, "balance": balance,
                     "top_k_training": top_k, "final_mse_normalised": float(np.mean(losses[-100:])) if losses else None,
                     "gate_usage": np.round(np.mean(usage_log[-200:], axis=0), 3).tolist() if usage_log else None,
                     "n_column_patches": n_column, "n_abtem_patches": n_abtem if abtem_cache else 0,
                     "abtem_train": [list(k) for k in ABTEM_TRAIN] if abtem_cache else [],
                     "dose_range_e_per_A2": list(DOSE_RANGE), "pixel_range_A": list(PIXEL_RANGE),
                     "heldout_rule": "compounds with crc32(formula) % 5 == 0 (napari_automat.denoise.train.is_heldout)"},
        "command": f"automat denoise train --out {out.name} --minutes {minutes:g} --seed {seed} --device {device}",
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1))
    progress(f"wrote {out} ({step} steps)")
    return card
