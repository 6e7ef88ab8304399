"""Many images on dask.distributed: one task per image, each writing ``OUTDIR/<name>/``.

A failing image never stops the batch: its row in ``summary.csv`` says why.
"""

from __future__ import annotations

import csv
import glob
import re
import sys
from pathlib import Path
from typing import Optional

from .config import PipelineConfig
from .extras import require
from .model import AutomatError

SUMMARY_FIELDS = ["input", "status", "probability", "formula", "spacegroup", "structure_type", "type_probability",
                  "a_A", "b_A", "c_A",
                  "formation_energy_per_atom_eV", "energy_model", "calibration_factor", "warnings", "seconds",
                  "output"]
#: Statuses of a finished image (``decision.STATUSES``); anything else is an error or a failure.
DONE_STATUSES = ("confident", "uncertain", "no answer")


def find_inputs(inputs: str) -> list[Path]:
    """Image files in a directory (not recursive) or matching a glob; ``.ser`` files whose ``.emi``
    header is also present are dropped (the pair is one image, read through the ``.emi``)."""
    from .io.read import supported_path

    root = Path(inputs)
    candidates = sorted(root.iterdir()) if root.is_dir() else sorted(Path(p) for p in glob.glob(inputs))
    files = [p for p in candidates if p.is_file() and supported_path(p)]
    emi_stems = {p.stem for p in files if p.suffix.lower() == ".emi"}
    files = [p for p in files if not (p.suffix.lower() == ".ser" and re.sub(r"_\d+$", "", p.stem) in emi_stems)]
    if not files:
        raise AutomatError(f"no readable images in {inputs!r}")
    return files


def process_one(path: str, outdir: str, config: dict) -> dict:
    """Run the agent on one image and save its outputs; never raises (errors go into the row)."""
    import time

    from .agent import run_agent

    t0 = time.perf_counter()
    row = {"input": str(path), "output": outdir}
    try:
        result = run_agent(path, PipelineConfig.from_dict(config), planner="rules").result
        result.save(outdir)
        s = result.reconstruction.to_dict()
        e = result.energy
        decision, cal = result.decision, result.calibration or {}
        row.update(status=decision.status, probability=round(decision.probability, 3),
                   formula=s["reduced_formula"], spacegroup=s["spacegroup_symbol"],
                   structure_type=decision.structure_type, type_probability=round(decision.type_probability, 3),
                   a_A=round(s["a"], 4), b_A=round(s["b"], 4), c_A=round(s["c"], 4),
                   formation_energy_per_atom_eV=None if e is None else e.formation_energy_per_atom_eV,
                   energy_model=None if e is None else e.model, calibration_factor=cal.get("scale_factor"),
                   warnings=" | ".join(result.warnings))
    except AutomatError as exc:
        row["status"] = f"error: {exc}"
    except Exception as exc:  # noqa: BLE001 - one bad image must not stop a batch
        row["status"] = f"failed: {type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def run_batch(inputs: str, outdir, config: Optional[PipelineConfig] = None, scheduler: Optional[str] = None,
              workers: Optional[int] = None, show_progress: bool = True) -> list[dict]:
    """Process every image of ``inputs`` on a dask cluster; writes and returns the summary rows."""
    from tqdm import tqdm

    require("batch", "dask.distributed")
    from dask.distributed import Client, LocalCluster, as_completed

    files = find_inputs(inputs)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    config = (config or PipelineConfig()).to_dict()
    names = _unique_names(files)
    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    rows = []
    try:
        futures = [client.submit(process_one, str(f), str(outdir / n), config, pure=False)
                   for f, n in zip(files, names)]
        for future in tqdm(as_completed(futures), total=len(futures), file=sys.stderr, disable=not show_progress,
                           desc="images"):
            rows.append(future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    rows.sort(key=lambda r: r["input"])
    _write_summary(outdir / "summary.csv", rows)
    return rows


def _unique_names(files: list[Path]) -> list[str]:
    names, seen = [], {}
    for f in files:
        name = f.stem
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def _write_summary(path: Path, rows: list[dict]) -> None:
    from .io.write import write_text_atomic
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
