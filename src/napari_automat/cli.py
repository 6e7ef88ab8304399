"""The ``automat`` command: ``run``, ``batch``, ``bench``, ``library``, ``references``, ``datasets`` and ``denoise``.

Exit codes: 0 success, 2 bad input (one-line reason on stderr), 1 unexpected failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .config import DENOISE_METHODS
from .model import AutomatError

ENERGY_MODELS = ["auto", "mattersim", "chgnet", "none"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="automat", description="STEM image → crystal structure (CIF) and energy.")
    p.add_argument("--version", action="version", version=f"napari-automat {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="analyse one image")
    run.add_argument("image", nargs="?", help="micrograph file (dm3/dm4/emd/ser/emi/mrc/tif/hspy/png…)")
    run.add_argument("--sample", choices=["srtio3"], help="use a bundled sample image instead of IMAGE")
    run.add_argument("-o", "--output", required=True, help="output directory")
    _add_config_options(run)
    run.add_argument("--columns", help="CSV of (edited) columns to use instead of detecting them")
    run.add_argument("--planner", choices=["rules", "llm", "auto"], default="rules",
                     help="rules: deterministic planner; llm: tool calling on an OpenAI-compatible endpoint "
                          "(OPENAI_BASE_URL, OPENAI_API_KEY, AUTOMAT_LLM_MODEL), finished by the rules planner "
                          "if it fails; auto: llm only when AUTOMAT_PLANNER=llm")
    run.add_argument("--llm-timeout", type=float, metavar="S",
                     help="seconds to wait for each LLM reply (default: AUTOMAT_LLM_TIMEOUT, else 60)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or transcript")

    batch = sub.add_parser("batch", help="analyse many images on dask")
    batch.add_argument("inputs", help="a directory or a glob pattern")
    batch.add_argument("-o", "--output", required=True, help="output directory (one sub-folder per image)")
    batch.add_argument("--scheduler", help="address of a running dask scheduler (default: a local cluster)")
    batch.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count)")
    _add_config_options(batch)

    lib = sub.add_parser("library", help="the template library")
    lib.add_argument("action", choices=["build", "info"])
    lib.add_argument("--path", help="library file (default: the user cache)")
    lib.add_argument("--workers", type=int, default=None, help="build processes (default: CPU count)")
    lib.add_argument("--full", action="store_true",
                     help="rebuild every entry (default: keep the projections of unchanged entries in --path)")

    refs = sub.add_parser("references", help="elemental reference energies for formation energies")
    refs.add_argument("action", choices=["build"])
    refs.add_argument("--energy-model", choices=["auto", "mattersim", "chgnet"], default="auto")
    refs.add_argument("--elements", help="comma-separated elements (default: all that the library uses)")

    bench = sub.add_parser("bench", help="the STEM2Mat-style benchmark: generate samples, run, report")
    bench.add_argument("action", choices=["generate", "run", "calibrate", "report"])
    bench.add_argument("-o", "--output", required=True,
                       help="generate: benchmark folder; run: results folder (metrics.json); report: results folder")
    bench.add_argument("--bench", help="run: benchmark folder (default: the output folder)")
    bench.add_argument("--tier", choices=["unary", "binary", "ternary", "all"], default="all")
    bench.add_argument("--quick", action="store_true", help="a small fixed subset (minutes on 2 cores)")
    bench.add_argument("--n-per-tier", type=int, default=150, help="generate: samples per tier")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--tuning", action="append",
                       help="calibrate: results folder of a tuning split (fit on it; repeat for several)")
    bench.add_argument("--heldout", help="calibrate: results folder of the held-out split (judged only)")
    bench.add_argument("--conditions", choices=["standard", "shifted", "realistic"], default="standard",
                       help="generate: 'shifted' images a held-out split unlike the tuning one (miscalibrated "
                            "pixel size, scan shear, other probe, defocus and Cs, iDPC); 'realistic' makes "
                            "scenes as they come off a microscope (nanoparticles on carbon, partial crystals, "
                            "interfaces, drifting frame stacks)")
    bench.add_argument("--workers", type=int, default=1, help="processes")
    bench.add_argument("--energy-model", choices=ENERGY_MODELS, default="auto")
    bench.add_argument("--no-hint-energy", choices=["yes", "no"], default="yes",
                       help="run: compute energies in the no-hint pass too (no: about half the run time)")
    bench.add_argument("--domains", action="store_true",
                       help="run: segment each image into domains and score the main one (heterostructures)")
    bench.add_argument("--markdown", default="docs/benchmarks.md", help="report: page to write")
    bench.add_argument("--images", default="docs/images", help="report, calibrate: folder for the plots")

    sub.add_parser("datasets", help="list the sample and real datasets")

    den = sub.add_parser("denoise", help="the learned (mixture-of-experts) denoiser: train its weights")
    den.add_argument("action", choices=["train"])
    den.add_argument("--out", required=True, help="weights file to write (.pt; the model card goes next to it as .json)")
    den.add_argument("--minutes", type=float, default=30.0, help="training time, wall clock (default 30)")
    den.add_argument("--seed", type=int, default=0)
    den.add_argument("--device", default="cpu", help="cpu or cuda")
    den.add_argument("--abtem-cache", default=None,
                     help="folder for the cached abTEM training images (default: the user cache; 'none': column model only)")
    den.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--elements", help="element hint, e.g. Sr,Ti,O")
    p.add_argument("--pixel-size", type=float, help="pixel size in Å (overrides the file's calibration)")
    p.add_argument("--reference-cif", metavar="PATH",
                   help="CIF of the compound imaged: an image without calibration gets the pixel size at which one "
                        "of its projections fits the measured lattice (without it, --elements serves)")
    p.add_argument("--frame", type=_frame, default=None, metavar="N|average",
                   help="frame of a stack to analyse (from 0); 'average' (the default) registers the frames, "
                        "leaves out those that do not correlate and analyses their average")
    p.add_argument("--roi", type=_roi, metavar="Y0:Y1,X0:X1",
                   help="analyse only this rectangle [px, ends exclusive]; output positions stay in the full "
                        "image's frame (default: the crystalline region when it covers under 70%% of the field)")
    p.add_argument("--denoise", default="auto", choices=["auto", "fourier", "nlm", "gaussian", "moe", "none"],
                   help="moe: the learned mixture-of-experts denoiser (needs torch: the [denoise] extra)")
    p.add_argument("--signal", default="auto", choices=["auto", "HAADF", "ADF", "ABF", "BF", "iDPC", "DPC"],
                   help="detector signal when the file does not say (ABF/BF: dark columns; iDPC/DPC: "
                        "light and heavy columns, polarity read from the image)")
    p.add_argument("--energy-model", default="auto", choices=ENERGY_MODELS)
    p.add_argument("--checkpoint", help="MatterSim checkpoint file")
    p.add_argument("--no-relax", action="store_true", help="energy of the unrelaxed structure")
    p.add_argument("--library", help="template library file")
    p.add_argument("--recalibrate", action="store_true",
                   help="when the structure found says the file's pixel size is off, run again with the pixel "
                        "size it implies (result.json: calibration.applied)")
    p.add_argument("--correct-scan", action="store_true",
                   help="when the structure found says the scan is sheared or stretched, undo it on the image "
                        "and run again (result.json: calibration.scan_distortion.corrected)")
    p.add_argument("--stability-candidates", type=int, default=5, metavar="N",
                   help="compare up to N top candidates that project alike by formation energy (0: off)")
    p.add_argument("--properties", choices=["none", "fast", "all"], default="none",
                   help="properties of the relaxed structure: fast = energy above the convex hull and bulk "
                        "modulus; all adds phonons and the elastic tensor")
    p.add_argument("--domains", action="store_true",
                   help="segment the field into domains by local lattice (layers, grains) and run the chain on "
                        "each; the largest is the main result, result.json 'domains' lists all")


def _frame(text: str) -> Optional[int]:
    """``--frame``: a frame index, or None for 'average'."""
    if text.strip().lower() == "average":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame number or 'average', got {text!r}") from None


def _roi(text: str) -> tuple[int, int, int, int]:
    """``--roi y0:y1,x0:x1`` [px] as ``(y0, y1, x0, x1)`` (checked against the image when it is read)."""
    try:
        (y0, y1), (x0, x1) = (part.split(":") for part in text.split(","))
        return int(y0), int(y1), int(x0), int(x1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y0:Y1,X0:X1 in pixels, e.g. 0:512,100:612, got {text!r}") from None


def _config(args):
    from .config import PipelineConfig
    from .energy.backends import check_installed

    check_installed(args.energy_model)  # an explicitly chosen model without its extra: one line now
    return PipelineConfig(elements=args.elements or (), pixel_size_A=args.pixel_size,
                          reference_cif=args.reference_cif, frame=args.frame, roi=args.roi,
                          denoise_method=args.denoise, signal=args.signal, energy_model=args.energy_model,
                          mattersim_checkpoint=args.checkpoint, relax=not args.no_relax,
                          library_path=args.library, stability_candidates=args.stability_candidates,
                          recalibrate=args.recalibrate, correct_scan=args.correct_scan, domains=args.domains,
                          properties=args.properties)


class _Bar:
    """Progress on stderr driven by the core's ``progress(fraction, message)``: a tqdm bar on a
    terminal, otherwise (logs, pipes) a plain ``NN% message`` line at most every ``LOG_EVERY_S``."""

    LOG_EVERY_S = 10.0

    def __init__(self, enabled: bool):
        from tqdm import tqdm

        self.enabled, self.tty = enabled, sys.stderr.isatty()
        self.bar = tqdm(total=100, disable=not (enabled and self.tty), file=sys.stderr,
                        bar_format="{l_bar}{bar}| {elapsed}")
        self.start = self.last_log = time.monotonic()

    def __call__(self, fraction: float, message: str = "") -> None:
        self.bar.n = round(100 * fraction, 1)
        self.bar.set_description_str(message[:40], refresh=True)
        now = time.monotonic()
        if self.enabled and not self.tty and (now - self.last_log >= self.LOG_EVERY_S or fraction >= 1.0):
            self.last_log = now
            print(f"{100 * fraction:5.1f}% {now - self.start:7.0f}s {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def cmd_run(args) -> int:
    from .agent import agent_line, model_words, run_agent

    if bool(args.image) == bool(args.sample):
        raise AutomatError("give either an IMAGE or --sample")
    if args.sample:
        from .io.datasets import sample_path

        source = sample_path(args.sample)
    else:
        source = Path(args.image)
    columns = None
    if args.columns:
        from .io.write import read_columns_csv

        columns = read_columns_csv(args.columns)
        if args.roi is not None:  # columns.csv positions are full-image ones
            columns.positions_px = columns.positions_px - (args.roi[0], args.roi[2])
    bar = _Bar(not args.quiet)
    try:
        agent = run_agent(source, _config(args), columns=columns, progress=bar, planner=args.planner,
                          llm=_llm_settings(args))
    finally:
        bar.close()
    result = agent.result
    paths = agent.save(args.output)
    if not args.quiet:
        for entry in agent.transcript:
            if entry["role"] in ("tool_result", "planner", "warning"):
                print(f"  [{entry['role']}] {entry['content']}", file=sys.stderr)
    if agent.summary:
        print(model_words(agent), file=sys.stderr)
    if result.agent["model"]:
        print(agent_line(agent), file=sys.stderr)
    s = result.reconstruction.to_dict()
    energy = result.energy
    line = f"{s['reduced_formula']} {s['spacegroup_symbol']} a={s['a']:.4f} b={s['b']:.4f} c={s['c']:.4f} Å"
    if energy is not None and energy.formation_energy_per_atom_eV is not None:
        line += f", Ef={energy.formation_energy_per_atom_eV:.3f} eV/atom ({energy.model})"
    print(line)
    print(f"wrote {paths['cif']} and {paths['result']}")
    print(verdict_line(result))
    return 0


def _llm_settings(args):
    """The LLM endpoint from the environment and ``--llm-timeout`` (None for the rules planner)."""
    if args.planner == "rules":
        return None
    from .agent.llm import LLMSettings

    if args.llm_timeout is not None and not args.llm_timeout > 0:
        raise AutomatError(f"--llm-timeout must be a positive number of seconds, got {args.llm_timeout}")
    return LLMSettings.from_env(timeout_s=args.llm_timeout)


def verdict_line(result) -> str:
    """The last line of a run: how sure the answer is, and how many warnings to read."""
    decision = result.decision
    text = decision.line() if decision is not None else "no answer: nothing was retrieved"
    if decision is not None and decision.status != "confident":
        text += " — the CIF is the best guess, not a determination"
    n = len(result.warnings)
    return text + (f" [{n} warning{'s' if n > 1 else ''} in result.json]" if n else "")


def cmd_batch(args) -> int:
    from .batch import run_batch

    from .batch import DONE_STATUSES

    summary = run_batch(args.inputs, args.output, _config(args), scheduler=args.scheduler, workers=args.workers)
    failed = [row for row in summary if row["status"] not in DONE_STATUSES]
    sure = sum(row["status"] == "confident" for row in summary)
    print(f"{len(summary) - len(failed)} of {len(summary)} images done, {sure} with a confident answer; "
          f"summary in {Path(args.output) / 'summary.csv'}")
    return 0 if not failed else 3


def cmd_library(args) -> int:
    from .templates import build_library, library_info, load_library

    bar = _Bar(True)
    try:
        if args.action == "build":
            library = build_library(args.path, progress=bar, workers=args.workers, incremental=not args.full)
        else:
            library = load_library(args.path, progress=bar)
    finally:
        bar.close()
    for key, value in library_info(library).items():
        print(f"{key}: {value}")
    return 0


def cmd_references(args) -> int:
    from .energy import build_reference_cache

    elements = [e.strip() for e in args.elements.split(",")] if args.elements else None
    bar = _Bar(True)
    try:
        refs = build_reference_cache(args.energy_model, elements=elements, progress=bar)
    finally:
        bar.close()
    for element, energy in sorted(refs.items()):
        print(f"{element}: {energy:.4f} eV/atom")
    return 0


def cmd_bench(args) -> int:
    out = Path(args.output)
    tiers = ("unary", "binary", "ternary") if args.tier == "all" else (args.tier,)
    bar = _Bar(True)
    try:
        if args.action == "calibrate":
            from .bench.calibrate import calibrate

            if not args.tuning:
                raise AutomatError("calibrate needs --tuning RESULTS_DIR (and --heldout RESULTS_DIR to judge)")
            try:
                metrics = calibrate(args.tuning, args.heldout, out, figure=Path(args.images) / "reliability.png")
            except (FileNotFoundError, ValueError) as exc:
                raise AutomatError(str(exc)) from None
            print(json.dumps(metrics["posterior"]["parameters"]))
            print(f"prior weight κ = {metrics['posterior']['prior_weight']} "
                  f"(negative log-likelihood per κ: {metrics['posterior']['prior_weight_nll']})")
            for split, modes in metrics["reliability"].items():
                for mode, r in modes.items():
                    chance = r["ece_if_calibrated"]
                    print(f"{split} {mode}: ECE {r['ece_top1']} (a calibrated posterior: {chance[0]} ± {chance[1]}), "
                          f"confident {r['confident_n']}/{r['n']} "
                          f"with precision {r['confident_precision']}, match {r['match_rate']}")
            print(f"wrote {out / 'metrics.json'}")
            return 0
        if args.action == "generate" or (args.action == "run" and args.bench is None
                                         and not (out / "manifest.json").exists() and args.quick):
            from .bench.generate import generate_benchmark

            manifest = generate_benchmark(out, tiers=tiers, quick=args.quick, seed=args.seed,
                                          n_per_tier=args.n_per_tier, workers=args.workers,
                                          conditions=args.conditions, progress=bar)
            print(f"benchmark samples: {manifest}")
            if args.action == "generate":
                return 0
        if args.action == "run":
            from .bench.run import run_benchmark

            bench_dir = Path(args.bench) if args.bench else out
            if not (bench_dir / "manifest.json").exists():
                raise AutomatError(f"no benchmark in {bench_dir}: run 'automat bench generate -o {bench_dir}' first")
            metrics = run_benchmark(bench_dir, out, quick=args.quick, energy_model=args.energy_model,
                                    workers=args.workers, energy_without_hint=args.no_hint_energy == "yes",
                                    domains=args.domains, progress=bar)
            for tier, row in metrics["tiers"].items():
                print(f"{tier}: n={row['n']} match={row['match_rate']} lattice_rmsd_A={row['lattice_rmsd_A']}")
            print(f"wrote {out / 'metrics.json'}")
            return 0
    finally:
        bar.close()
    from .bench.report import write_report

    metrics_path = out / "metrics.json"
    if not metrics_path.exists():
        raise AutomatError(f"no metrics.json in {out}: run 'automat bench run -o {out}' first")
    page = write_report(metrics_path, out_md=args.markdown, images_dir=args.images)
    print(f"wrote {page}")
    return 0


def cmd_datasets(args) -> int:
    from .io.datasets import list_datasets

    for entry in list_datasets():
        print(f"{entry['name']:<24} {entry.get('description', '')}")
    return 0


def cmd_denoise(args) -> int:
    from .denoise.train import train

    if not args.minutes > 0:
        raise AutomatError(f"--minutes must be positive, got {args.minutes}")
    cache = args.abtem_cache
    if cache is None:
        from platformdirs import user_cache_dir

        cache = str(Path(user_cache_dir("napari-automat")) / "denoise-abtem")
    train(args.out, minutes=args.minutes, seed=args.seed, device=args.device,
          abtem_cache=None if cache.lower() == "none" else cache, max_steps=args.max_steps,
          progress=lambda m: print(m, flush=True))
    return 0


COMMANDS = {"run": cmd_run, "batch": cmd_batch, "library": cmd_library, "references": cmd_references,
            "bench": cmd_bench, "datasets": cmd_datasets, "denoise": cmd_denoise}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AutomatError as exc:
        print(f"automat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("automat: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if args.debug:
            raise
        print(f"automat: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
