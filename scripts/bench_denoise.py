"""Benchmark of the denoisers on held-out simulated images: PSNR, column detection, defects, speed.

    .venv/bin/python scripts/bench_denoise.py -o bench-denoise [--n 3] [--size 256] [--abtem-cache DIR]

Held-out images: compounds the moe denoiser never saw in training (``denoise.train.is_heldout``),
column model (HAADF; ABF and iDPC approximations) with vacancies and substitutions, plus abTEM crops
of held-out crystals (``train.ABTEM_HELDOUT``, perfect) when their cache exists; seeds unused in
training. For every detector and dose: PSNR (``bench.metrics.psnr_dB``) of noisy, Gaussian, NLM, BM3D,
the Bragg (fourier) filter and moe; column detection (``detect.peaks.detect_columns``, the pipeline's
detector) on each output against the true columns (``bench.metrics.match_columns``: recall, RMSE);
defects kept (column contrast within 20 % of the clean value). Writes ``results.json`` and
``tables.md`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from napari_automat.bench.metrics import match_columns, psnr_dB
from napari_automat.denoise import classical, spectrum
from napari_automat.denoise import train as T
from napari_automat.denoise.core import denoise
from napari_automat.model import AutomatError, Micrograph

METHODS = ("noisy", "gaussian", "nlm", "bm3d", "fourier", "moe")
DOSES = (1e3, 1e4, 1e5, 1e6)
SEED = 10_000  # training uses seeds 0.. (pool) and 1.. (noise); the benchmark draws from its own stream


def bm3d_denoise(image: np.ndarray) -> np.ndarray:
    """BM3D (PyPI ``bm3d``) with the same noise model as NLM: Anscombe for counts, MAD noise level."""
    import bm3d

    img = np.asarray(image, dtype=float)
    counts = classical.looks_like_counts(img)
    work = classical.anscombe(img) if counts else img
    sigma = classical.estimate_sigma(work)
    if sigma <= 0:
        return img.copy()
    out = bm3d.bm3d(work, sigma_psd=sigma, stage_arg=bm3d.BM3DStages.ALL_STAGES)
    return classical.inverse_anscombe(out) if counts else out


def run_method(method: str, noisy: np.ndarray, pixel_A: float) -> tuple[np.ndarray, float, str]:
    t = time.perf_counter()
    used = method
    if method == "noisy":
        out = noisy
    elif method == "bm3d":
        out = bm3d_denoise(noisy)
    else:
        den, info = denoise(Micrograph(noisy.astype(np.float32), (pixel_A, pixel_A), True), method)
        out, used = np.asarray(den.data, float), info["method"]
    return out, time.perf_counter() - t, used


def visible_columns(clean: np.ndarray, pos: np.ndarray, detector: str) -> np.ndarray:
    """True columns that the clean image shows: contrast at the column over the local background at
    least 15 % of the brightest columns' (ABF: dark columns, so the image is turned)."""
    from scipy import ndimage

    img = -clean if detector == "ABF" else clean
    bg = ndimage.minimum_filter(ndimage.gaussian_filter(img, 1.0), size=max(9, int(clean.shape[0] / 10)))
    p = np.clip(np.round(pos).astype(int), 0, np.array(clean.shape) - 1)
    contrast = img[p[:, 0], p[:, 1]] - bg[p[:, 0], p[:, 1]]
    if not len(contrast):
        return np.zeros(0, bool)
    return contrast >= 0.15 * np.percentile(contrast, 95)


def detection(image: np.ndarray, pixel_A: float, detector: str, true_px: np.ndarray, visible) -> dict:
    from napari_automat.detect.peaks import detect_columns

    try:
        cols = detect_columns(Micrograph(image.astype(np.float32), (pixel_A, pixel_A), True,
                                         metadata={"signal": detector}), signal=detector)
        found = np.asarray(cols.positions_px)
    except AutomatError:
        found = np.zeros((0, 2))
    return match_columns(true_px, found, pixel_A, image.shape, visible=visible)


def defect_errors(out: np.ndarray, clean: np.ndarray, sample: dict) -> list[float]:
    """Per defect column: |out - clean| at the column (mean over a disk of one probe sigma) over the
    contrast of a perfect column (the clean image's 99th percentile minus its median)."""
    if not sample.get("defects"):
        return []
    r = max(1.0, 0.7 * sample["sigma_px"])
    yy, xx = np.mgrid[0:clean.shape[0], 0:clean.shape[1]]
    scale = float(np.percentile(clean, 99) - np.median(clean))
    if sample["detector"] == "ABF":
        scale = float(np.median(clean) - np.percentile(clean, 1))
    errs = []
    for y, x, _kind, _f in sample["defects"]:
        disk = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        if disk.any():
            errs.append(abs(float(out[disk].mean() - clean[disk].mean())) / max(scale, 1e-12))
    return errs


def heldout_images(rng, n: int, size: int, detector: str, crystals, fields) -> list[dict]:
    out = []
    for i in range(n):
        if fields and i % 3 == 2:  # one in three: an abTEM crop of a held-out crystal
            det_fields = [f for f in fields if f["detector"] == detector]
            s = T.abtem_patch(rng, det_fields[i % len(det_fields)], (size, size), pixel_A=rng.uniform(0.06, 0.15))
            s["sigma_px"] = 0.8 / 2.355 / s["pixel_A"]
        else:
            kind = "interface" if i % 3 == 1 else "lattice"
            while True:
                s = T.column_model_image(rng, crystals, detector, (size, size), pixel_A=rng.uniform(0.06, 0.15),
                                         kind=kind)
                if kind != "lattice" or s["defects"]:
                    break
        out.append(s)
    return out


REAL = (("ncempy_16_STOimage.emi", "SrTiO3 HAADF (ncempy)", (slice(300, 556), slice(300, 556))),
        ("atomap_test_ABF_cropped.hdf5", "SrTiO3 ABF (atomap)", (slice(0, 256), slice(0, 256))),
        ("singleorigin_PMN_iDPC.tif", "PMN iDPC (SingleOrigin)", (slice(300, 556), slice(300, 556))))


def real_figure(data_dir: Path, out_png: Path) -> list[dict]:
    """Raw, Bragg filter and moe side by side on crops of the shared real files (whole image denoised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_automat.io.read import read_micrograph

    rows = [(name, title, crop) for name, title, crop in REAL if (data_dir / name).exists()]
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 3.6 * len(rows)), squeeze=False)
    info_rows = []
    for (name, title, crop), ax in zip(rows, axes):
        mg = read_micrograph(data_dir / name)
        if mg.is_stack:
            mg = mg.frame(0)
        raw = np.asarray(mg.data, float)
        outs = {"raw": raw}
        for method in ("fourier", "moe"):
            t = time.perf_counter()
            den, info = denoise(mg, method)
            outs[method] = np.asarray(den.data, float)
            info_rows.append({"file": name, "method": method, "used": info["method"], "shape": list(raw.shape),
                              "seconds": time.perf_counter() - t})
        for a, (label, img) in zip(ax, outs.items()):
            view = img[crop]
            lo, hi = np.percentile(outs["raw"][crop], [0.5, 99.5]) if label == "raw" else np.percentile(view, [0.5, 99.5])
            a.imshow(view, cmap="gray", vmin=lo, vmax=hi)
            a.set_title(f"{title}: {label if label != 'fourier' else 'Bragg filter'}", fontsize=9)
            a.axis("off")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    return info_rows


def speed(n: int = 1024, repeats: int = 3) -> dict:
    """Seconds for a 1024² HAADF-like count image: the whole ``denoise(..., "moe")`` call, and the network
    part alone (tiles, gate, top-2 experts) after loading."""
    import torch

    from napari_automat.denoise import moe

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    clean = T.column_model_image(rng, T.crystal_pool("heldout"), "HAADF", (n, n), pixel_A=0.1, kind="lattice")
    noisy, _ = T.add_noise(rng, clean, dose=1e4, gain=False)
    mg = Micrograph(noisy.astype(np.float32), (0.1, 0.1), True)
    moe.load_model()
    denoise(mg, "moe")  # warm-up
    full, net, cpu = [], [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        denoise(mg, "moe")
        full.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        analysis = spectrum.analyse(noisy)
        t = time.perf_counter()
        moe.denoise_moe(noisy, analysis)
        net.append(time.perf_counter() - t)
    import os

    # CPU seconds of the process (both threads): on a machine shared with other jobs, wall time
    # overstates; CPU seconds / threads is the wall time the call would take on two free cores
    return {"size": n, "threads": torch.get_num_threads(), "denoise_call_s": min(full), "moe_after_analysis_s": min(net),
            "denoise_call_cpu_s": min(cpu),
            "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}


def example_figure(out_png: Path, dose: float = 1e3) -> None:
    """One held-out HAADF image with defects: clean, noisy, Bragg filter, BM3D, moe (defects circled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng([SEED, 99])
    crystals = T.crystal_pool("heldout")
    while True:
        s = T.column_model_image(rng, crystals, "HAADF", (256, 256), pixel_A=0.1, kind="lattice")
        if len(s["defects"]) >= 2:
            break
    noisy, clean = T.add_noise(rng, s, dose=dose, gain=False)
    panels = {"clean": clean, f"noisy ({dose:.0e} e/Å²)": noisy}
    for m in ("fourier", "bm3d", "moe"):
        panels[{"fourier": "Bragg filter"}.get(m, m)] = run_method(m, noisy, s["pixel_A"])[0]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5))
    lo, hi = np.percentile(clean, [0.5, 99.8])
    for a, (label, img) in zip(axes, panels.items()):
        a.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        title = label if label.startswith(("clean", "noisy")) else f"{label}: {psnr_dB(img, clean):.1f} dB"
        a.set_title(title, fontsize=9)
        for y, x, kind, _f in s["defects"]:
            a.add_patch(plt.Circle((x, y), 6, fill=False, color="tab:red" if kind == "vacancy" else "tab:cyan", lw=1))
        a.axis("off")
    fig.suptitle("held-out HAADF image (column model): vacancies red, substitutions cyan", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default="bench-denoise")
    ap.add_argument("--n", type=int, default=3, help="images per detector and dose")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--abtem-cache", default=None, help="folder of the cached abTEM held-out images")
    ap.add_argument("--detectors", default="HAADF,ABF,iDPC")
    ap.add_argument("--doses", default=",".join(f"{d:g}" for d in DOSES))
    ap.add_argument("--real", default=None, help="folder of the shared real files: write the before/after figure")
    ap.add_argument("--figure", default="docs/images/denoise_real.png")
    ap.add_argument("--only", choices=["all", "speed", "real", "heldout", "example"], default="all")
    ap.add_argument("--example", default="docs/images/denoise_heldout.png")
    args = ap.parse_args()
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.only in ("all", "speed"):
        sp = speed()
        (out_dir / "speed.json").write_text(json.dumps(sp, indent=1))
        print("speed:", sp, flush=True)
    if args.real and args.only in ("all", "real"):
        info = real_figure(Path(args.real), Path(args.figure))
        (out_dir / "real.json").write_text(json.dumps(info, indent=1))
        print("real:", info, flush=True)
    if args.only in ("all", "example"):
        example_figure(Path(args.example))
    if args.only not in ("all", "heldout"):
        return
    crystals = T.crystal_pool("heldout")
    fields = T.abtem_fields(args.abtem_cache, T.ABTEM_HELDOUT) if args.abtem_cache else []
    rows = []
    for detector in args.detectors.split(","):
        for dose in (float(d) for d in args.doses.split(",")):
            rng = np.random.default_rng([SEED, T.DETECTORS.index(detector), int(math.log10(dose) * 10)])
            for k, sample in enumerate(heldout_images(rng, args.n, args.size, detector, crystals, fields)):
                noisy, clean = T.add_noise(rng, sample, dose=dose, gain=False)
                visible = visible_columns(clean, sample["columns_px"], detector)
                for method in METHODS:
                    den, seconds, used = run_method(method, noisy, sample["pixel_A"])
                    det = detection(den, sample["pixel_A"], detector, sample["columns_px"], visible)
                    rows.append({"detector": detector, "dose": dose, "image": k, "kind": sample["kind"],
                                 "pixel_A": sample["pixel_A"], "method": method, "used": used,
                                 "psnr_dB": psnr_dB(den, clean), "seconds": seconds,
                                 "recall": det["recall"], "rmse_pm": det["position_rmse_pm"],
                                 "precision": det["precision"], "defect_errors": defect_errors(den, clean, sample)})
                print(f"{detector} {dose:g} #{k} {sample['kind']}: " + "  ".join(
                    f"{r['method']} {r['psnr_dB']:.1f}" for r in rows[-len(METHODS):]), flush=True)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=0))
    tables = summarise(rows)
    (out_dir / "tables.md").write_text(tables)
    print(tables)


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _fmt(v, spec=".1f") -> str:
    return "–" if v is None else format(v, spec)


def summarise(rows: list[dict]) -> str:
    dets = sorted({r["detector"] for r in rows}, key=T.DETECTORS.index)
    doses = sorted({r["dose"] for r in rows})
    lines = ["### PSNR [dB] (mean over the held-out images)", "",
             "| detector | dose e/Å² | " + " | ".join(METHODS) + " | moe − best baseline |",
             "|---|---|" + "---|" * (len(METHODS) + 1)]
    for d in dets:
        for dose in doses:
            cell = {m: _mean(r["psnr_dB"] for r in rows if r["detector"] == d and r["dose"] == dose and r["method"] == m)
                    for m in METHODS}
            best = max(cell[m] for m in METHODS if m not in ("noisy", "moe") and cell[m] is not None)
            lines.append(f"| {d} | {dose:.0e} | " + " | ".join(_fmt(cell[m]) for m in METHODS)
                         + f" | {cell['moe'] - best:+.1f} |")
    lines += ["", "### Column detection on the denoised image: recall / position RMSE [pm]", "",
              "| detector | dose e/Å² | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for d in dets:
        for dose in doses:
            parts = []
            for m in METHODS:
                sel = [r for r in rows if r["detector"] == d and r["dose"] == dose and r["method"] == m]
                parts.append(f"{_fmt(_mean(r['recall'] for r in sel), '.2f')} / {_fmt(_mean(r['rmse_pm'] for r in sel))}")
            lines.append(f"| {d} | {dose:.0e} | " + " | ".join(parts) + " |")
    lines += ["", "### Defect columns kept (contrast error < 20 % of a column's): fraction, all doses", "",
              "| detector | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for d in dets:
        parts = []
        for m in METHODS:
            errs = [e for r in rows if r["detector"] == d and r["method"] == m for e in r["defect_errors"]]
            parts.append(f"{np.mean(np.array(errs) < 0.2):.2f} (n={len(errs)})" if errs else "–")
        lines.append(f"| {d} | " + " | ".join(parts) + " |")
    lines += ["", "### Seconds per image (mean)", "", "| " + " | ".join(METHODS) + " |", "|" + "---|" * len(METHODS),
              "| " + " | ".join(_fmt(_mean(r["seconds"] for r in rows if r["method"] == m), ".2f") for m in METHODS) + " |"]
    fallback = sum(1 for r in rows if r["method"] == "fourier" and r["used"] != "fourier")
    lines += ["", f"Bragg filter fell back to NLM (no Bragg peaks) on {fallback} of "
              f"{sum(1 for r in rows if r['method'] == 'fourier')} images."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
