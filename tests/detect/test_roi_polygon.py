"""A polygon ROI (napari draws them): the analysed box is its bounding box, columns detected outside
it are dropped, and result.json records the polygon."""

import json

import numpy as np
import pytest
from detect_synth import match, perovskite
from skimage.measure import points_in_poly

from napari_automat.config import PipelineConfig
from napari_automat.detect.region import polygon_region
from napari_automat.model import AutomatError
from napari_automat.pipeline import run

TRIANGLE = [[20.0, 30.5], [230.0, 60.0], [90.0, 235.0]]  # (y, x) px


def test_polygon_region_box_and_mask():
    bbox, mask = polygon_region([[10.3, 10.3], [10.3, 50.7], [50.7, 50.7], [50.7, 10.3]], (64, 64))
    assert bbox == [11, 51, 11, 51] and mask.shape == (40, 40) and mask.all()
    bbox, mask = polygon_region([[-5, -5], [-5, 20], [20, -5]], (64, 64))
    assert bbox == [0, 16, 0, 16] and mask[0, 0] and not mask[-1, -1]
    with pytest.raises(ValueError, match="holds no pixel"):
        polygon_region([[-9, -9], [-9, -5], [-5, -5]], (64, 64))


def test_columns_outside_the_polygon_are_dropped_and_recorded(tmp_path):
    mg, truth = perovskite()[:2]
    result = run(mg, PipelineConfig(roi_polygon=TRIANGLE), stop_after="lattice")
    paths = result.save(tmp_path)  # the overview draws the polygon
    d = json.loads(paths["result"].read_text())
    found = result.full_frame_columns().positions_px
    assert points_in_poly(np.rint(found), TRIANGLE).all()  # in the full image's frame
    inside = truth[points_in_poly(truth, TRIANGLE)]
    recall, *_ = match(found, inside, 1.5)
    assert recall > 0.9  # the columns inside are kept
    assert d["input"]["roi"] == [21, 231, 31, 236] and d["input"]["roi_source"] == "user"
    assert d["input"]["roi_polygon"] == TRIANGLE and d["config"]["roi_polygon"] == TRIANGLE
    assert PipelineConfig.from_dict(d["config"]).roi_polygon == TRIANGLE


def test_bad_polygon_rois_are_refused():
    mg = perovskite(shape=(64, 64))[0]
    with pytest.raises(AutomatError, match="not both"):
        run(mg, PipelineConfig(roi=(0, 32, 0, 32), roi_polygon=TRIANGLE), stop_after="detect")
    with pytest.raises(AutomatError, match="the ROI polygon holds no pixel"):
        run(mg, PipelineConfig(roi_polygon=[[100, 100], [100, 120], [120, 100]]), stop_after="detect")
