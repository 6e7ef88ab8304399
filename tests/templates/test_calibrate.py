"""Calibrate from structure (issue 13): an image without a pixel size gets the one at which the
compound it shows fits its lattice."""

import json
import math

import numpy as np
import pytest

from napari_automat.config import PipelineConfig
from napari_automat.model import AutomatError, Lattice2D, Micrograph, TemplateHit
from napari_automat.templates.calibrate import PixelSizeFit, StructureCalibration, _posterior, calibrate_pixel_size

#: The bundled SrTiO3 [001] sample is simulated at this pixel size [Å/px].
SAMPLE_PIXEL_A = 0.15


def _srtio3(a=3.905):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


@pytest.fixture(scope="module")
def uncalibrated_sample():
    """The bundled SrTiO3 [001] sample with its calibration stripped (1 Å/px placeholder)."""
    from napari_automat.io.datasets import sample_path
    from napari_automat.io.read import read_micrograph

    m = read_micrograph(sample_path("srtio3"))
    assert m.pixel_size_A == pytest.approx((SAMPLE_PIXEL_A, SAMPLE_PIXEL_A))
    return Micrograph(m.data, (1.0, 1.0), False, m.path, dict(m.metadata))


def test_sample_without_calibration_gets_its_pixel_size_from_the_element_hint(uncalibrated_sample):
    from napari_automat.pipeline import run

    result = run(uncalibrated_sample, PipelineConfig(elements=("Sr", "Ti", "O"), energy_model="none"),
                 stop_after="retrieve")
    assert result.micrograph.calibrated
    assert result.micrograph.mean_pixel_size_A == pytest.approx(SAMPLE_PIXEL_A, rel=0.02)
    assert result.lattice.a_A == pytest.approx(3.905, rel=0.02)
    assert result.hits[0].formula == "SrTiO3" and tuple(result.hits[0].zone_axis) == (0, 0, 1)
    cal = result.calibration
    assert {"scale_factor", "scale_sigma", "shear", "source", "applied"} <= set(cal)
    assert cal["applied"] is True and cal["source"].startswith("structure: SrTiO3 Pm-3m [001]")
    assert cal["pixel_size_A"] == pytest.approx(result.micrograph.mean_pixel_size_A, rel=1e-4)
    assert 0 < cal["pixel_size_sigma_A"] < 0.03 * cal["pixel_size_A"]
    assert cal["from_structure"]["alternatives"] == [] and not cal["from_structure"]["ambiguous"]
    assert any("derived from the structure" in w and "not an independent measurement" in w for w in result.warnings)


def test_reference_cif_calibrates_through_the_command_line(uncalibrated_sample, tmp_path, capsys):
    """``--reference-cif`` alone (no element hint, no pixel size) on an uncalibrated TIFF."""
    import tifffile

    from napari_automat.cli import main

    image = tmp_path / "sto.tif"
    tifffile.imwrite(image, np.asarray(uncalibrated_sample.data, np.float32))  # no resolution tags
    cif = tmp_path / "SrTiO3.cif"
    _srtio3().to(filename=str(cif))
    out = tmp_path / "out"
    assert main(["run", str(image), "--reference-cif", str(cif), "-o", str(out), "--energy-model", "none",
                 "-q"]) == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    cal = result["calibration"]
    assert cal["pixel_size_A"] == pytest.approx(SAMPLE_PIXEL_A, rel=0.005)
    assert result["input"]["pixel_size_A"] == pytest.approx(cal["pixel_size_A"], rel=1e-4)
    assert cal["source"] == "structure: SrTiO3 Pm-3m [001]" and cal["applied"] is True
    assert cal["from_structure"]["reference"] == "CIF SrTiO3.cif"
    assert result["config"]["reference_cif"] == str(cif)
    assert result["lattice2d"]["a_A"] == pytest.approx(3.905, rel=0.005)


def test_no_projection_of_the_reference_fits_is_a_clear_error():
    oblique = Lattice2D(np.array([10.0, 0.0]), np.array([-3.5, 16.5]))  # pixels; b/a 1.69, γ 102°
    with pytest.raises(AutomatError, match=r"no projection of CIF .* fits the measured lattice \(a = 10.00 px"):
        calibrate_pixel_size([(oblique, 1.0)], 1.0, reference=_srtio3(), light_columns=True)


def test_uncalibrated_image_without_a_compound_still_asks_for_the_pixel_size(uncalibrated_sample):
    from napari_automat.pipeline import run

    with pytest.raises(AutomatError, match="--pixel-size.*--reference-cif"):
        run(uncalibrated_sample, PipelineConfig(energy_model="none"))


def test_missing_reference_cif_is_a_clear_error(uncalibrated_sample, tmp_path):
    from napari_automat.pipeline import run

    with pytest.raises(AutomatError, match="reference CIF not found"):
        run(uncalibrated_sample, PipelineConfig(reference_cif=str(tmp_path / "nope.cif"), energy_model="none"),
            stop_after="retrieve")


def _fit(pixel, score, formula, zone, sigma=0.015):
    hit = TemplateHit(f"t:{formula}", formula, zone, score, {"spacegroup": "Pm-3m"})
    return PixelSizeFit(pixel, sigma * pixel, hit)


def test_pixel_sizes_that_fit_alike_are_all_reported():
    from napari_automat.decision import NONE_SHOWN, PosteriorParams

    fits = [_fit(0.150, 0.60, "SrTiO3", (0, 0, 1)), _fit(0.212, 0.58, "SrTiO3", (1, 1, 0)),
            _fit(0.151, 0.55, "SrTiO3", (0, 0, 1)),  # the same pixel size as the first, within 1σ
            _fit(0.30, 0.05, "SrTiO3", (1, 1, 1))]
    best, alternatives, none_p = _posterior(fits, PosteriorParams(), NONE_SHOWN)
    assert best.pixel_size_A == 0.150 and [f.pixel_size_A for f in alternatives] == [0.212]
    assert best.probability + alternatives[0].probability == pytest.approx(1.0, abs=0.05)
    cal = StructureCalibration(best, alternatives, "elements Sr, Ti, O")
    assert cal.ambiguous
    assert "0.2120 Å/px from SrTiO3 Pm-3m [110]" in cal.warning() and "not sure" in cal.warning()
    d = cal.to_dict()
    assert d["ambiguous"] and d["alternatives"][0]["source"] == "structure: SrTiO3 Pm-3m [110]"


#: PMN's pseudo-cubic lattice parameter [Å]; the SingleOrigin CIF has 3.929 Å.
PMN_A, CIF_A = 4.04, 3.929


@pytest.fixture(scope="module")
def pmn(data_dir):
    """The SingleOrigin PMN iDPC image (uncalibrated, [110]) and its true pixel size: the cell in
    pixels from the Fourier transform (basis least-squares fitted to every indexed Bragg spot) with
    PMN's a = 4.04 Å; the [110] cell is a/√2 × a."""
    from napari_automat.detect.spectrum import fft_basis, spectrum_peaks
    from napari_automat.io.read import read_micrograph

    image, cif = data_dir / "real" / "singleorigin_PMN_iDPC.tif", data_dir / "real" / "singleorigin_PMN.cif"
    m = read_micrograph(image)
    assert not m.calibrated
    g, _ = spectrum_peaks(m.data, (1.0, 1.0))
    reciprocal = np.linalg.inv(np.array(fft_basis(m.data, (1.0, 1.0)))).T
    hk = g @ np.linalg.inv(reciprocal)
    indexed = (np.abs(hk - np.round(hk)).max(1) < 0.1) & (np.abs(np.round(hk)).sum(1) > 0)
    fitted, *_ = np.linalg.lstsq(np.round(hk[indexed]), g[indexed], rcond=None)
    cell_px = sorted(np.linalg.norm(np.linalg.inv(fitted).T, axis=1))
    assert cell_px == pytest.approx([17.67, 24.94], abs=0.05)  # a/√2 and a: b/a = √2
    return image, cif, lambda a: float(np.mean([a / math.sqrt(2) / cell_px[0], a / cell_px[1]]))


def _is_perovskite(structure) -> bool:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher().fit_anonymous(structure, _srtio3())


def test_pmn_calibrated_from_its_cif(pmn, tmp_path, capsys):
    """Acceptance (issue 13): the CIF's a = 3.929 Å sets the pixel size, 2.7% under the true one as
    its cell is under PMN's 4.04 Å; the structure found is a perovskite along [110]."""
    from pymatgen.core import Structure

    from napari_automat.cli import main

    image, cif, pixel_for = pmn
    out = tmp_path / "pmn"
    assert main(["run", str(image), "--reference-cif", str(cif), "-o", str(out), "--energy-model", "none",
                 "-q"]) == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    cal = result["calibration"]
    assert cal["pixel_size_A"] == pytest.approx(pixel_for(CIF_A), rel=0.003)  # 0.1572 Å/px
    assert cal["pixel_size_A"] / pixel_for(PMN_A) == pytest.approx(CIF_A / PMN_A, rel=0.003)
    assert cal["source"].endswith("Pm-3m [110]") and cal["from_structure"]["probability"] > 0.8
    assert tuple(result["retrieval"][0]["zone_axis"]) == (1, 1, 0)
    assert _is_perovskite(Structure.from_file(out / "structure.cif"))


@pytest.mark.parametrize("elements", [("Pb", "Nb", "O"), ("Pb", "Mg", "Nb", "O")])
def test_pmn_calibrated_from_the_element_hint(pmn, elements):
    """Pb, Nb, O: a decorated cubic perovskite. Pb, Mg, Nb, O: no ordered compound or decoration with
    all four fits, so the hint is read with Mg or Nb sharing a metal site (the B site of PMN)."""
    from napari_automat.pipeline import run

    image, _, pixel_for = pmn
    result = run(image, PipelineConfig(elements=elements, energy_model="none"), stop_after="reconstruct")
    cal = result.calibration
    assert cal["pixel_size_A"] == pytest.approx(pixel_for(PMN_A), rel=0.03)  # 0.1618 Å/px
    assert result.micrograph.mean_pixel_size_A == pytest.approx(cal["pixel_size_A"], rel=1e-4)
    assert "Pm-3m [110]" in cal["source"]
    if len(elements) == 4:
        assert "on a shared metal site" in cal["source"]
    else:
        assert _is_perovskite(result.reconstruction.structure)


def test_a_calibrated_image_keeps_its_pixel_size_and_says_the_cif_is_unused(tmp_path):
    from napari_automat.io.datasets import sample_path
    from napari_automat.pipeline import start

    cif = tmp_path / "SrTiO3.cif"
    _srtio3(4.2).to(filename=str(cif))
    result = start(sample_path("srtio3"), PipelineConfig(reference_cif=str(cif)))
    assert result.micrograph.mean_pixel_size_A == pytest.approx(SAMPLE_PIXEL_A)
    assert any("reference CIF" in w and "not used" in w for w in result.warnings)
