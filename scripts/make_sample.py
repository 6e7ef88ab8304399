"""Generate the packaged sample: a simulated HAADF-STEM image of SrTiO3 [001] (abTEM PRISM).

Writes into ``src/napari_automat/data/``: ``srtio3_001_haadf.tif`` (calibrated ImageJ TIFF, counts),
``srtio3_001_haadf_columns.npy`` (exact column positions ``(n, 2)`` ``(y, x)`` in pixels) and
``srtio3_001_haadf.json`` (simulation parameters, column species). Seeded: reruns give the same files.

    python scripts/make_sample.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

A_SRTIO3 = 3.905  # cubic lattice parameter [Å]
PARAMS = dict(zone_axis=(0, 0, 1), thickness_A=100.0, detector="HAADF", voltage_kV=200.0, convergence_mrad=20.0,
              defocus_A=0.0, Cs_A=0.0, pixel_size_A=0.15, field_of_view_A=256 * 0.15, dose_e_per_A2=5e4,
              frozen_phonons=4, phonon_sigma_A=0.08, source_size_A=0.3, rotation_deg=0.0, seed=2025)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/napari_automat/data")
    args = parser.parse_args(argv)

    from pymatgen.core import Lattice, Structure

    from napari_automat.io.write import write_tiff_calibrated
    from napari_automat.simulate import simulate_stem

    srtio3 = Structure.from_spacegroup("Pm-3m", Lattice.cubic(A_SRTIO3), ["Sr", "Ti", "O"],
                                       [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    start = time.perf_counter()
    image = simulate_stem(srtio3, **PARAMS, progress=lambda f, msg: print(f"{100 * f:5.1f}% {msg}", flush=True))
    seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "srtio3_001_haadf"
    meta = image.metadata
    write_tiff_calibrated(stem.with_suffix(".tif"), image.data, image.pixel_size_A,
                          {"voltage_kV": meta["voltage_kV"], "detector": meta["detector"], "signal": meta["signal"],
                           "convergence_angle_mrad": meta["convergence_angle_mrad"],
                           "dose_e_per_A2": meta["dose_e_per_A2"], "thickness_A": meta["thickness_A"],
                           "formula": "SrTiO3", "a_A": A_SRTIO3, "zone_axis": "[001]",
                           "source": "simulated with napari-automat (abTEM PRISM)"})
    np.save(stem.parent / (stem.name + "_columns.npy"), image.true_columns_px.astype(np.float32))
    record = {"structure": {"formula": "SrTiO3", "spacegroup": "Pm-3m", "a_A": A_SRTIO3,
                            "sites": {"Sr": [0, 0, 0], "Ti": [0.5, 0.5, 0.5], "O": [0.5, 0.5, 0]}},
              "parameters": {k: list(v) if isinstance(v, tuple) else v for k, v in PARAMS.items()},
              "thickness_A": meta["thickness_A"], "detector_angles_mrad": meta["detector_angles_mrad"],
              "units": meta["units"], "shape": list(image.shape), "pixel_size_A": list(image.pixel_size_A),
              "columns_file": stem.name + "_columns.npy", "columns_species": meta["true_columns_species"]}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"wrote {stem}.tif/.json/_columns.npy: {image.shape}, {len(image.true_columns_px)} columns, {seconds:.0f} s")


if __name__ == "__main__":
    main()
