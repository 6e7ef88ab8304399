"""DetectParams: one frozen object for detection numbers, overridable from PipelineConfig and recorded."""

import pytest

from napari_automat.config import PipelineConfig
from napari_automat.detect.params import DEFAULT_DETECT, DetectParams
from napari_automat.io.datasets import sample_path
from napari_automat.pipeline import run_stage, start


def test_round_trip_keeps_tuples():
    p = DetectParams(completion_width_range=(0.5, 2.0), detection_attempts=((None, None, None), ("nlm", 2.0, 0.5)))
    back = DetectParams.from_dict(p.to_dict())
    assert back == p and isinstance(back.detection_attempts[1], tuple)
    assert DetectParams.from_dict({"unknown": 1}) == DEFAULT_DETECT


def test_config_overrides_reach_detection_and_result_json():
    if not sample_path("srtio3").exists():
        pytest.skip("bundled sample missing")
    def columns_found(**detect):
        result = start(sample_path("srtio3"), PipelineConfig(energy_model="none", detect=detect or None))
        run_stage(result, "denoise")
        return run_stage(result, "detect")

    default, strict = columns_found(), columns_found(relative_contrast=0.6)
    assert strict.columns.count < default.columns.count  # only the bright columns pass
    recorded = strict.to_dict()["parameters"]["detect"]
    assert recorded["relative_contrast"] == 0.6 and recorded["tolerance"] == DEFAULT_DETECT.tolerance
