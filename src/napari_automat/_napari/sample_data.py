"""npe2 sample data: a simulated SrTiO3 [001] HAADF image with its calibration."""

from __future__ import annotations


def srtio3_sample() -> list[tuple]:
    """SrTiO3 [001] HAADF (simulated), read through the same path as user files."""
    from ..io.datasets import sample_path
    from ..io.read import read_micrograph
    from .layers import micrograph_layer_data

    micrograph = read_micrograph(sample_path("srtio3"))
    return [micrograph_layer_data(micrograph, name="SrTiO3 [001] HAADF (simulated)")]
