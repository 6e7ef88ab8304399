"""A retrieved template's columns land on the measured columns of the image."""

import numpy as np
from scipy.spatial import cKDTree

from napari_automat.templates.overlay import template_columns_px


def test_top_template_columns_sit_on_the_detected_columns(srtio3_result):
    result = srtio3_result
    mg, cols = result.micrograph, result.columns
    pos, comps = template_columns_px(result.hits[0], result.lattice, mg.data.shape, mg.pixel_size_A)
    pixel = float(np.mean(mg.pixel_size_A))
    # every detected column has a template column within 0.25 Å ...
    d, _ = cKDTree(pos).query(cols.positions_px)
    assert np.median(d) * pixel < 0.1 and np.percentile(d, 95) * pixel < 0.25
    # ... and the template's Sr columns are on the bright sublattice
    sr = np.array(["Sr" in c for c in comps])
    dist, nearest = cKDTree(cols.positions_px).query(pos[sr])
    seen = dist * pixel < 0.25  # (columns at the border are not detected)
    assert seen.sum() > 50 and np.all(cols.sublattice[nearest[seen]] == 0)
    assert {frozenset(c) for c in comps} >= {frozenset({"Sr"}), frozenset({"Ti", "O"})}


def test_image_residual_is_small_for_the_right_placement_and_large_when_shifted(srtio3_result):
    import copy

    from napari_automat.templates.overlay import image_residual

    result = srtio3_result
    image = result.analysed
    sigma = float(np.nanmedian(result.columns.sigma_px))
    good = image_residual(result.hits[0], result.lattice, image, sigma)
    shifted = copy.deepcopy(result.hits[0])
    shifted.details["origin_shift"] = [(v + 0.5) % 1.0 for v in shifted.details["origin_shift"]]  # Sr ↔ Ti+O
    half = image_residual(shifted, result.lattice, image, sigma)
    assert good < 0.35 and half > good + 0.2, (good, half)

