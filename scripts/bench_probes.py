"""Probes of single model changes on benchmark splits (hint on, no energy), as reported in
docs/benchmarks.md. Rows are cached per sample in OUT, so an interrupted probe resumes.

    python scripts/bench_probes.py match BENCH OUT [config.FIELD=JSON ...] [score.FIELD=JSON ...]
        match rate through pipeline.run with PipelineConfig / ScoreParams overrides
    python scripts/bench_probes.py shear BENCH OUT
        the scan distortion read from the lattice against the shear the generator applied
    python scripts/bench_probes.py zexp OUT
        generate the probe set: seed-5 incoherent HAADF images at Z^1.2 or Z^2.2 (not the configured 1.7)
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _overrides(args: list[str]) -> tuple[dict, dict]:
    config, score = {}, {}
    for a in args:
        key, value = a.split("=", 1)
        kind, field = key.split(".", 1)
        {"config": config, "score": score}[kind][field] = json.loads(value)
    return config, score


def _sample(bench: Path, out: Path, config: dict, score: dict, meta: dict) -> dict:
    warnings.filterwarnings("ignore")
    from pymatgen.core import Structure

    from napari_automat.bench import metrics as M
    from napari_automat.config import PipelineConfig
    from napari_automat.pipeline import run

    f = out / f"{meta['id']}.json"
    if f.exists():
        return json.loads(f.read_text())
    folder = bench / "samples" / meta["tier"] / meta["id"]
    row = {"id": meta["id"], "tier": meta["tier"], "detector": meta["detector"], "matched": False,
           "true_shear": meta.get("scan_shear", 0.0)}
    try:
        res = run(folder / "image.tif", PipelineConfig(elements=tuple(meta["elements"]), energy_model="none",
                                                       score=score or None, **config))
        truth = Structure.from_file(folder / "truth.cif")
        cal = res.calibration or {}
        row.update(matched=bool(M.structures_match(res.reconstruction.structure, truth)),
                   formula=res.reconstruction.structure.composition.reduced_formula, truth=truth.composition.reduced_formula,
                   distortion=cal.get("scan_distortion"), warnings=res.warnings)
    except Exception as exc:  # noqa: BLE001 - a failed sample is a row
        row["error"] = str(exc)
    f.write_text(json.dumps(row))
    return row


def _rows(bench: Path, out: Path, config: dict, score: dict) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    metas = json.loads((bench / "manifest.json").read_text())["samples"]
    with ProcessPoolExecutor(2) as ex:
        return list(ex.map(partial(_sample, bench, out, config, score), metas))


def match(bench: Path, out: Path, args: list[str]) -> None:
    config, score = _overrides(args)
    rows = _rows(bench, out, config, score)
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r["tier"], []).append(r["matched"])
    print({t: f"{sum(v)}/{len(v)}" for t, v in by.items()}, "total", sum(sum(v) for v in by.values()))


def shear(bench: Path, out: Path) -> None:
    import numpy as np

    rows = [r for r in _rows(bench, out, {}, {}) if r.get("distortion") and r.get("formula") == r.get("truth")]
    err = np.abs([r["distortion"]["shear"] - r["true_shear"] for r in rows])
    true = np.abs([r["true_shear"] for r in rows])
    warned = np.array([any("scan appears" in w for w in r["warnings"]) for r in rows])
    print(f"{len(rows)} right-formula images: shear error median {np.median(err):.4f}, 90th percentile "
          f"{np.percentile(err, 90):.4f}; warned {warned[true >= 0.01].sum()}/{(true >= 0.01).sum()} sheared by >= 1%, "
          f"{warned[true < 0.005].sum()}/{(true < 0.005).sum()} sheared by < 0.5%")


def zexp(out: Path) -> None:
    from napari_automat.bench.generate import VERSION, _cached_pool, generate_sample, select_samples

    specs = [s for s in select_samples(seed=5, n_per_tier=40, pool=_cached_pool()) if s["simulator"] == "incoherent"]
    metas = []
    for i, spec in enumerate(specs):
        spec["z_exponent"] = 1.2 if i % 2 == 0 else 2.2
        spec["id"] += f"-z{spec['z_exponent']}"
        spec["image"] = f"samples/{spec['tier']}/{spec['id']}/image.tif"
        meta = generate_sample(spec, out)
        meta.pop("time_s", None)
        metas.append(meta)
    (out / "manifest.json").write_text(json.dumps({"version": VERSION, "seed": 5, "quick": False,
                                                   "conditions": "z-exponent probe", "samples": metas}))
    print(f"{len(metas)} images in {out}")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "zexp":
        zexp(Path(rest[0]))
    elif mode == "shear":
        shear(Path(rest[0]), Path(rest[1]))
    else:
        match(Path(rest[0]), Path(rest[1]), rest[2:])
