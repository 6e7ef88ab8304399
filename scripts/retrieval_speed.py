"""Retrieval alone against one or more template libraries: query time and top-1/top-5 formula
rate with and without the element hint, on the measured lattices of benchmark samples.

The lattices (read → denoise → detect → lattice, as ``automat run``) of the samples in the
benchmark's manifest are computed once and cached next to it, so libraries are compared on
identical queries; ABF samples are matched with ``light_columns``::

    python scripts/retrieval_speed.py --bench /tmp/bench-full --library A.npz --library B.npz
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from pathlib import Path


def measured_lattices(bench: Path, limit: int) -> list[dict]:
    """``{"id", "tier", "formula", "elements", "generalisation", "lattice"}`` per sample (cached)."""
    from napari_automat.config import PipelineConfig
    from napari_automat.detect.signal import shows_light_columns
    from napari_automat.model import AutomatError
    from napari_automat.pipeline import denoise_stage, detect_stage, lattice_stage, start

    cache = bench / "lattices.pkl"
    done = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    manifest = json.loads((bench / "manifest.json").read_text())["samples"]
    metas = sorted(manifest, key=lambda m: (m["tier"], m["id"]))
    metas = metas[::max(1, len(metas) // limit)][:limit] if limit else metas
    out = []
    for meta in metas:
        if meta["id"] not in done:
            folder = bench / "samples" / meta["tier"] / meta["id"]
            config = PipelineConfig()
            try:
                result = start(folder / Path(meta.get("image", "image.tif")).name, config)
                for stage in (denoise_stage, detect_stage, lattice_stage):
                    stage(result, config)
                done[meta["id"]] = result.lattice
            except AutomatError:
                done[meta["id"]] = None
            cache.write_bytes(pickle.dumps(done))
        if done[meta["id"]] is not None:
            out.append({"id": meta["id"], "tier": meta["tier"], "formula": meta["formula"],
                        "elements": tuple(meta.get("elements", ())),
                        "light": shows_light_columns(meta.get("detector")),
                        "generalisation": bool(meta.get("generalisation")), "lattice": done[meta["id"]]})
    return out


def evaluate(library_path: str, samples: list[dict]) -> dict:
    from pymatgen.core import Composition

    from napari_automat.templates import load_library, retrieve

    t = time.perf_counter()
    library = load_library(library_path)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    retrieve(samples[0]["lattice"], library=library)  # builds the index
    index_s = time.perf_counter() - t
    known = {e["reduced_formula"] for e in library.entries}
    stats = {"projections": len(library.projections), "load_s": round(load_s, 2), "index_s": round(index_s, 2)}
    for mode in ("hint", "nohint"):
        first, warm, top1, top5, top1_known, n_known = [], [], 0, 0, 0, 0
        for s in samples:
            hint = s["elements"] if mode == "hint" else ()
            t = time.perf_counter()
            hits = retrieve(s["lattice"], elements=hint, library=library, light_columns=s["light"])
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            retrieve(s["lattice"], elements=hint, library=library, light_columns=s["light"])
            warm.append(time.perf_counter() - t)
            formulas = [Composition(h.formula).reduced_formula for h in hits]
            truth = Composition(s["formula"]).reduced_formula
            top1 += formulas[:1] == [truth]
            top5 += truth in formulas[:5]
            if truth in known:
                n_known += 1
                top1_known += formulas[:1] == [truth]
        n = len(samples)
        stats[mode] = {"first_ms": round(1e3 * statistics.median(first), 1),
                       "warm_ms": round(1e3 * statistics.median(warm), 1),
                       "warm_p90_ms": round(1e3 * sorted(warm)[int(0.9 * (n - 1))], 1),
                       "top1": round(top1 / n, 3), "top5": round(top5 / n, 3),
                       "top1_in_library": round(top1_known / max(1, n_known), 3), "n_in_library": n_known}
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", required=True, type=Path, help="benchmark folder (automat bench generate)")
    parser.add_argument("--library", action="append", required=True, help="library file (repeatable)")
    parser.add_argument("--limit", type=int, default=120, help="samples, spread over the tiers (0: all)")
    args = parser.parse_args()
    samples = measured_lattices(args.bench, args.limit)
    print(f"{len(samples)} samples with a lattice")
    for path in args.library:
        print(path, json.dumps(evaluate(path, samples), indent=1))


if __name__ == "__main__":
    main()
