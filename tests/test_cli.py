"""The ``automat`` command as a user meets it: bad input gets one line and a non-zero exit, nothing written."""

import json
from pathlib import Path

import numpy as np
import pytest

from napari_automat.cli import main


def _bad_inputs(tmp):
    from PIL import Image

    cases = {"missing file": tmp / "nope.dm4"}
    (tmp / "empty.tif").write_bytes(b"")
    cases["empty file"] = tmp / "empty.tif"
    (tmp / "random.dm3").write_bytes(np.random.default_rng(0).bytes(4096))
    cases["random bytes"] = tmp / "random.dm3"
    good = (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)
    Image.fromarray(good).save(tmp / "whole.png")
    data = (tmp / "whole.png").read_bytes()
    (tmp / "truncated.png").write_bytes(data[: len(data) // 3])
    cases["truncated file"] = tmp / "truncated.png"
    Image.fromarray(np.stack([good] * 3, axis=-1)).save(tmp / "rgb.png")
    cases["RGB image"] = tmp / "rgb.png"
    Image.fromarray(good[:1, :1]).save(tmp / "tiny.png")
    cases["1x1 image"] = tmp / "tiny.png"
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(tmp / "constant.png")
    cases["constant image"] = tmp / "constant.png"
    import tifffile

    nan = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    nan[5, 5] = np.nan
    tifffile.imwrite(tmp / "nan.tif", nan)
    cases["NaN values"] = tmp / "nan.tif"
    cases["no calibration"] = tmp / "whole.png"
    return cases


def test_bad_input_gives_one_line_and_no_output(tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    for name, path in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        code = main(["run", str(path), "-o", str(out), "--energy-model", "none", "-q"])
        err = capsys.readouterr().err.strip()
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        assert err.startswith("automat: error: "), f"{name}: {err!r}"
        assert len(err.splitlines()) == 1, f"{name}: {err!r}"
        assert "Traceback" not in err
        assert not out.exists() or not any(out.iterdir()), f"{name}: partial output written"


def test_uncalibrated_image_says_how_to_fix(tmp_path, capsys):
    path = _bad_inputs(tmp_path)["no calibration"]
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    assert "--pixel-size" in capsys.readouterr().err


def test_run_writes_cif_and_result_json(tmp_path, capsys):
    """The main job on the bundled simulated SrTiO3 sample, without energies (fast)."""
    from pymatgen.core import Structure

    from napari_automat.io.datasets import sample_path

    if not sample_path("srtio3").exists():
        pytest.skip("bundled sample not generated yet")
    out = tmp_path / "demo"
    assert main(["run", "--sample", "srtio3", "-o", str(out), "--elements", "Sr,Ti,O",
                 "--energy-model", "none", "-q"]) == 0
    result = json.loads((out / "result.json").read_text())
    for key in ("input", "columns", "lattice2d", "retrieval", "structure", "energy", "timings_s", "warnings"):
        assert key in result
    assert result["input"]["calibrated"] is True
    assert set(result["input"]) >= {"path", "shape", "pixel_size_A", "calibrated"}
    assert set(result["lattice2d"]) >= {"a_A", "b_A", "gamma_deg"}
    assert set(result["retrieval"][0]) >= {"template_id", "formula", "zone_axis", "score"}
    structure = Structure.from_file(out / "structure.cif")
    assert structure.composition.reduced_formula == "SrTiO3"
    assert structure.get_space_group_info()[1] == 221
    assert structure.lattice.a == pytest.approx(3.905, rel=0.03)
    assert result["structure"]["spacegroup_number"] == 221
    assert (out / "overview.png").stat().st_size > 10_000


def test_real_file_uses_its_own_calibration(data_dir, tmp_path, capsys):
    """Issue 2 acceptance: the atomap SrTiO3 ADF image gives perovskite SrTiO3, a within 3% of 3.905 Å."""
    from pymatgen.core import Structure

    path = data_dir / "real" / "atomap_test_ADF_cropped.hdf5"
    out = tmp_path / "atomap"
    assert main(["run", str(path), "--elements", "Sr,Ti,O", "-o", str(out), "--energy-model", "none", "-q"]) == 0
    structure = Structure.from_file(out / "structure.cif")
    assert structure.composition.reduced_formula == "SrTiO3"
    assert structure.get_space_group_info()[1] == 221
    assert structure.lattice.a == pytest.approx(3.905, rel=0.03)


@pytest.mark.parametrize("signal", ["iDPC", "auto"])
def test_idpc_monolayer_at_paper_conditions_gives_mos2(signal, tmp_path, capsys):
    # AutoMat's imaging conditions (iDPC, 3e4 e/Å², 0.1 Å/px): both columns bright, the polarity read
    # from the image; made by scripts/make_test_images.py.
    image = Path(__file__).parent / "data" / "mos2_idpc_3e4.tif"
    rc = main(["run", str(image), "--elements", "Mo,S", "--signal", signal, "--energy-model", "none",
               "-o", str(tmp_path), "-q"])
    assert rc == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["structure"]["reduced_formula"] == "MoS2"
    assert result["lattice2d"]["a_A"] == pytest.approx(3.16, rel=0.02)
