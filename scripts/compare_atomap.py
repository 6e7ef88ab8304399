"""Side by side: our batched 2D-Gaussian refinement and Atomap's on the same images and the same
starting positions (our detections rounded to whole pixels), timed in the same process, with the
position error of both against the exact projected columns.

Atomap is an optional benchmark dependency (``pip install atomap``); without it this script says
so and stops. Images: simulated HAADF (incoherent model, Poisson noise) of SrTiO3 [001], GaAs [110]
(dumbbells 1.4 Å apart) and Cu [001], plus, with ``AUTOMAT_DATA_DIR``, the real Atomap ADF image
(no truth there: the two refinements are compared with each other).

    .venv/bin/python scripts/compare_atomap.py [--dose 2e4] [--fov 50] [-o OUTDIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np


def structures():
    from pymatgen.core import Lattice, Structure

    sto = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    gaas = Structure.from_spacegroup("F-43m", Lattice.cubic(5.653), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])
    return [("SrTiO3 [001]", sto, (0, 0, 1)), ("GaAs [110]", gaas, (1, 1, 0)), ("Cu [001]", cu, (0, 0, 1))]


def refine_ours(image, start_px, pixel_A):
    from napari_automat.detect import refine_columns
    from napari_automat.model import Columns

    t = time.perf_counter()
    out = refine_columns(image, Columns.from_positions(start_px, (pixel_A, pixel_A)))
    return out.positions_px, time.perf_counter() - t


def refine_atomap(image, start_px):
    import atomap.api as am

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = am.Sublattice(atom_position_list=start_px[:, ::-1].copy(), image=np.asarray(image, float))
        sub.find_nearest_neighbors()
        t = time.perf_counter()
        sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
        elapsed = time.perf_counter() - t
    return np.column_stack([sub.y_position, sub.x_position]), elapsed


def error_pm(found_px, true_px, pixel_A, shape, margin_px):
    """RMS distance [pm] of refined positions to their nearest true column, away from the border."""
    from scipy.spatial import cKDTree

    inside = np.all((found_px > margin_px) & (found_px < np.asarray(shape) - 1 - margin_px), axis=1)
    d, _ = cKDTree(true_px).query(found_px[inside])
    return 100.0 * pixel_A * float(np.sqrt(np.mean(d ** 2))), int(inside.sum())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dose", type=float, default=2e4, help="electron dose [e/Å²]")
    p.add_argument("--fov", type=float, default=50.0, help="field of view [Å]")
    p.add_argument("--pixel", type=float, default=0.1, help="pixel size [Å]")
    p.add_argument("-o", "--output", default="atomap-comparison")
    args = p.parse_args()
    try:
        import atomap  # noqa: F401
    except ImportError:
        print("Atomap is not installed: pip install atomap (an optional benchmark dependency)")
        return 1

    from napari_automat.bench.metrics import visible_mask
    from napari_automat.detect import detect_columns
    from napari_automat.io.read import read_micrograph
    from napari_automat.simulate import incoherent_image

    cases = []
    for name, structure, axis in structures():
        mg = incoherent_image(structure, axis, pixel_size_A=args.pixel, field_of_view_A=args.fov,
                              dose=args.dose, seed=0)
        true = np.asarray(mg.true_columns_px)[visible_mask(list(mg.metadata["true_columns_species"]), "HAADF")]
        cases.append((name, mg, true))
    real = Path(os.environ.get("AUTOMAT_DATA_DIR", "")) / "real" / "atomap_test_ADF_cropped.hdf5"
    if os.environ.get("AUTOMAT_DATA_DIR") and real.is_file():
        cases.append(("Atomap ADF (real)", read_micrograph(real), None))

    rows = []
    for name, mg, true in cases:
        start = np.rint(detect_columns(mg).positions_px)
        px = float(np.mean(mg.pixel_size_A))
        ours, t_ours = refine_ours(mg.data, start, px)
        theirs, t_theirs = refine_atomap(mg.data, start)
        row = {"image": name, "columns": len(start), "ours_s_per_1000": 1000 * t_ours / len(start),
               "atomap_s_per_1000": 1000 * t_theirs / len(start), "speed_ratio": t_theirs / t_ours,
               "start_rmse_pm": None, "ours_rmse_pm": None, "atomap_rmse_pm": None,
               "ours_vs_atomap_rms_pm": 100 * px * float(np.sqrt(np.mean(np.sum((ours - theirs) ** 2, 1))))}
        if true is not None:
            margin = 0.5 / px  # 0.5 Å from the border
            row["start_rmse_pm"] = error_pm(start, true, px, mg.data.shape, margin)[0]
            row["ours_rmse_pm"] = error_pm(ours, true, px, mg.data.shape, margin)[0]
            row["atomap_rmse_pm"] = error_pm(theirs, true, px, mg.data.shape, margin)[0]
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "atomap_comparison.json").write_text(json.dumps({"dose_e_per_A2": args.dose, "pixel_size_A": args.pixel,
                                                            "field_of_view_A": args.fov, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
