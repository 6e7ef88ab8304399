"""Generate the small simulated images the tests read from ``tests/data/`` (abTEM PRISM, seeded).

``mos2_idpc_3e4.tif``: a MoS2 monolayer (2H, a = 3.16 Å) along [001] in iDPC at 3e4 e/Å² and
0.1 Å/px, 256² px, rotated 17° (AutoMat's imaging conditions); the TIFF states the pixel size only,
not the signal, as a TIFF exported from another program would.

    python scripts/make_test_images.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

MOS2_IDPC = dict(zone_axis=(0, 0, 1), thickness_A=1.0, detector="iDPC", pixel_size_A=0.1, field_of_view_A=25.6,
                 dose_e_per_A2=3e4, seed=1, rotation_deg=17.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data")
    args = parser.parse_args(argv)

    from ase.build import mx2
    from pymatgen.io.ase import AseAtomsAdaptor

    from napari_automat.io.write import write_tiff_calibrated
    from napari_automat.simulate.abtem_sim import simulate_stem

    atoms = mx2("MoS2", "2H", a=3.16, thickness=3.17, vacuum=7.5)
    atoms.pbc = True
    image = simulate_stem(AseAtomsAdaptor.get_structure(atoms), **MOS2_IDPC)
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_tiff_calibrated(args.out / "mos2_idpc_3e4.tif", image.data, image.pixel_size_A)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
