"""Does the agent's E_hull quality gate change the match rate? (issue 17)

Runs benchmark samples through ``bench.run.evaluate_sample`` (the rules planner, hint on) with an
energy model and ``properties`` ``fast``, and records for each sample both outcomes in one run:
the reconstruction the chain had built when the gate looked at it (= the result without the
gate: the properties do not change which candidate is built) and the one it kept (= with the
gate, ``PipelineConfig.max_e_above_hull_meV``). Rows go to ``OUT/rows-<shard>.jsonl`` as they
finish, so a partial run is usable; ``--summary`` prints the table from the rows there.

    python scripts/bench_properties_gate.py /tmp/bench/heldout2 -o bench-gate --tier binary --shard 0/2
    python scripts/bench_properties_gate.py /tmp/bench/heldout2 -o bench-gate --tier binary --shard 1/2
    python scripts/bench_properties_gate.py /tmp/bench/heldout2 -o bench-gate --summary
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


def configured(level: str, threshold: Optional[float]):
    """``PipelineConfig`` with properties at ``level`` and the gate's ``threshold`` as defaults (``evaluate_sample``
    builds its own config: the module's class is swapped for this one while the script runs)."""
    import napari_automat.config as config_module

    base = config_module.PipelineConfig

    @dataclass
    class GateConfig(base):
        properties: str = level
        max_e_above_hull_meV: Optional[float] = threshold

    config_module.PipelineConfig = GateConfig
    return base


def record_gate() -> dict:
    """Wrap the planner's quality gate (once): what was built when it looked (the ungated result) and
    what it said go into the returned dict, which the caller clears before each sample."""
    from napari_automat.agent import planner

    record: dict = {}

    original = planner._quality_gate

    def gate(result, say, candidate, base_warnings):
        record.update(first_index=result.chosen_index, first_e_hull_meV=(result.properties or {}).get("e_above_hull_meV"),
                      first_structure=None if result.reconstruction is None else result.reconstruction.structure,
                      first_formula=None if result.reconstruction is None else
                      result.reconstruction.structure.composition.reduced_formula, gate_said=[])

        def said(role, text, data=None):
            if role == "planner" and text.startswith("quality gate"):
                record["gate_said"].append(text)
            say(role, text, data)

        original(result, said, candidate, base_warnings)
        record.update(final_index=result.chosen_index,
                      final_e_hull_meV=(result.properties or {}).get("e_above_hull_meV"))

    planner._quality_gate = gate
    return record


def run(args) -> None:
    from pymatgen.core import Structure

    from napari_automat.bench import metrics as M
    from napari_automat.bench.run import evaluate_sample

    bench = Path(args.bench)
    manifest = json.loads((bench / "manifest.json").read_text())
    samples = [s for s in manifest["samples"] if args.tier == "all" or s["tier"] == args.tier][: args.limit]
    index, count = (int(v) for v in args.shard.split("/"))
    samples = samples[index::count]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / f"rows-{index}.jsonl"
    done = {json.loads(line)["id"] for line in rows_path.read_text().splitlines()} if rows_path.exists() else set()
    configured(args.properties, None if args.threshold < 0 else args.threshold)
    record = record_gate()
    if not args.truth_energy:  # the match rate needs no ground-truth energy: skip its relaxation
        import napari_automat.bench.run as bench_run

        bench_run._truth_formation_energy = lambda *a, **k: None
    for meta in samples:
        if meta["id"] in done:
            continue
        record.clear()
        t0 = time.perf_counter()
        row = evaluate_sample(bench, meta, hint=True, energy_model=args.energy_model, quick=args.quick,
                              truth_cache=out / "truth_cache")
        truth = Structure.from_file(bench / "samples" / meta["tier"] / meta["id"] / "truth.cif")
        first = record.pop("first_structure", None)
        gated = record.get("final_index") is not None and record.get("final_index") != record.get("first_index")
        keep = {k: row.get(k) for k in ("id", "tier", "formula", "matched", "chosen_index", "error", "wall_s",
                                        "composition_correct", "e_form_pred_eV", "e_form_true_eV")}
        keep.update(record, gate_changed_candidate=gated, seconds=round(time.perf_counter() - t0, 1),
                    matched_without_gate=bool(M.structures_match(first, truth)) if first is not None else row["matched"],
                    properties_s=(row.get("timings_s") or {}).get("properties"))
        with rows_path.open("a") as f:
            f.write(json.dumps(keep, default=str) + "\n")
        print(f"{meta['id']}: matched {keep['matched_without_gate']} → {keep['matched']} "
              f"(E_hull {keep.get('first_e_hull_meV')} meV/atom; {keep['seconds']} s)", flush=True)


def summary(args) -> None:
    rows = [json.loads(line) for path in sorted(Path(args.out).glob("rows-*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    n = len(rows)
    if not n:
        print("no rows")
        return
    without = sum(bool(r["matched_without_gate"]) for r in rows)
    with_gate = sum(bool(r["matched"]) for r in rows)
    fired = [r for r in rows if r.get("gate_said")]
    changed = [r for r in rows if r.get("gate_changed_candidate")]
    e_hull = [r["first_e_hull_meV"] for r in rows if r.get("first_e_hull_meV") is not None]
    print(f"samples: {n} ({', '.join(sorted({r['tier'] for r in rows}))}); errors: {sum(bool(r['error']) for r in rows)}")
    print(f"matched without the gate: {without}/{n}; with the gate: {with_gate}/{n}")
    print(f"gate fired on {len(fired)}; another candidate kept on {len(changed)}: "
          + "; ".join(f"{r['id']} {r['first_formula']} → {r['matched_without_gate']}→{r['matched']}" for r in changed))
    if e_hull:
        print(f"E_hull of the first reconstruction [meV/atom]: median {sorted(e_hull)[len(e_hull) // 2]:.0f}, "
              f"max {max(e_hull):.0f}; matched ones: "
              + ", ".join(f"{r['first_e_hull_meV']:.0f}" for r in rows if r["matched_without_gate"]
                          and r.get("first_e_hull_meV") is not None))
    print(f"median seconds per sample: {sorted(r['seconds'] for r in rows)[n // 2]:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", help="benchmark folder (manifest.json, samples/)")
    parser.add_argument("-o", "--out", required=True, help="folder for rows-<shard>.jsonl and the truth cache")
    parser.add_argument("--tier", default="binary", help="unary, binary, ternary or all")
    parser.add_argument("--limit", type=int, default=None, help="the first N samples of the tier")
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th sample from the i-th (parallel runs)")
    parser.add_argument("--energy-model", default="chgnet")
    parser.add_argument("--properties", default="fast")
    parser.add_argument("--threshold", type=float, default=200.0, help="meV/atom; negative: no E_hull gate")
    parser.add_argument("--quick", action="store_true", help="the benchmark's quick relaxation (40 steps, 0.1 eV/Å)")
    parser.add_argument("--truth-energy", action="store_true",
                        help="also relax the ground truth for its formation energy (not needed for the match rate)")
    parser.add_argument("--summary", action="store_true", help="print the table from the rows in OUT")
    args = parser.parse_args()
    summary(args) if args.summary else run(args)


if __name__ == "__main__":
    main()
