"""The decision: posterior over retrieved structures, verdicts, calibration factor, and their fit."""

import json
import math

import numpy as np
import pytest

from napari_automat.decision import PosteriorParams, calibration, calibration_warning, decide, species_log_prior
from napari_automat.model import TemplateHit


def structure_of(formula, sg):
    """A small structure for ``formula`` in space group ``sg``: perovskites (ABX3, A at the corner),
    AB in rock salt, zinc blende or wurtzite, anything else body-centred tetragonal; I4/mcm a distorted perovskite that matches no other."""
    from pymatgen.core import Composition, Lattice, Structure

    el = list(Composition(formula).as_dict())
    if len(el) == 3:
        a, b, x = el
        if sg == "I4/mcm":  # B off centre, stretched: not a match for the cubic one
            return Structure(Lattice.tetragonal(3.9, 5.5), [a, b, x, x, x],
                             [[0, 0, 0], [.5, .5, .3], [.5, .5, .8], [.5, 0, .5], [0, .5, .5]])
        return Structure(Lattice.cubic(3.9), [a, b, x, x, x], [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    if sg == "P6_3mc":
        return Structure.from_spacegroup(sg, Lattice.hexagonal(3.2, 5.2), el, [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.375]])
    if sg in ("Fm-3m", "F-43m"):
        other = [0.5, 0.5, 0.5] if sg == "Fm-3m" else [0.25, 0.25, 0.25]
        return Structure.from_spacegroup(sg, Lattice.cubic(4.2), el, [[0, 0, 0], other])
    return Structure(Lattice.tetragonal(4.0, 3.0), el * (2 // len(el)), [[0, 0, 0], [0.5, 0.5, 0.5]])


def hit(formula, sg, score, number=None, structure=None, **details):
    return TemplateHit(f"{formula}-{sg}", formula, (0, 0, 1), score,
                       {"spacegroup": sg, "spacegroup_number": number or hash(sg) % 230, **details},
                       structure if structure is not None else structure_of(formula, sg))


def test_choices_are_the_distinct_answers_of_a_decision_that_is_not_sure():
    from napari_automat.decision import choices

    hits = [hit("SrTiO3", "Pm-3m", 0.9, 221), hit("SrTiO3", "Pm-3m", 0.85, 221), hit("SrTiO3", "I4/mcm", 0.8, 140),
            hit("Sr2TiO4", "I4/mmm", 0.1, 139)]
    params = PosteriorParams(temperature_hint=4.0, none_log_evidence_hint=-5.0, misrank_hint=0.0)
    d = decide(hits, hinted=True, params=params)
    assert d.status == "uncertain"
    offered = choices(hits, d)
    assert [i for i, _ in offered] == [0, 2]  # one entry per answer; Sr2TiO4 under 5%
    assert offered[0][1].startswith("SrTiO3 Pm-3m (p = ") and offered[1][1].startswith("SrTiO3 I4/mcm")
    assert choices(hits, decide(hits[:2], hinted=True, params=params)) == []  # confident: nothing to ask
    assert choices(hits, None) == []


def test_probabilities_group_structures_and_keep_a_none_mass():
    hits = [hit("SrTiO3", "Pm-3m", 0.9, 221), hit("SrTiO3", "Pm-3m", 0.8, 221), hit("SrTiO3", "I4/mcm", 0.5, 140)]
    params = PosteriorParams(temperature_hint=4.0, none_log_evidence_hint=-2.0, misrank_hint=0.0)
    d = decide(hits, hinted=True, params=params)
    w = [0.9 ** 4, 0.8 ** 4, 0.5 ** 4, math.exp(-8.0)]
    assert d.probability == pytest.approx((w[0] + w[1]) / sum(w))
    assert d.hit_probability[0] == d.hit_probability[1] == d.probability  # one structure, two axes
    assert d.none_probability == pytest.approx(w[3] / sum(w))
    assert d.probability + d.hit_probability[2] + d.none_probability == pytest.approx(1.0)
    assert d.hit_log_likelihood[0] == pytest.approx(math.log(0.9))
    # a misranking chance ε is shared evenly by the two structures
    mixed = decide(hits, hinted=True, params=PosteriorParams(temperature_hint=4.0, none_log_evidence_hint=-2.0,
                                                             misrank_hint=0.2))
    assert mixed.probability == pytest.approx(0.8 * d.probability + 0.1)
    assert mixed.none_probability == pytest.approx(0.8 * d.none_probability)


def test_verdicts_follow_the_probability():
    params = PosteriorParams(temperature_hint=10.0, none_log_evidence_hint=-5.0)
    sure = decide([hit("MgO", "Fm-3m", 0.95, 225), hit("MgO", "P6_3mc", 0.3, 186)], True, params=params)
    assert sure.status == "confident" and sure.line().startswith("confident: MgO Fm-3m")
    tie = decide([hit("MgO", "Fm-3m", 0.9, 225), hit("MgO", "F-43m", 0.9, 216)], True, params=params)
    assert tie.status == "uncertain" and "next MgO F-43m" in tie.line()
    # nothing fits: the none mass wins and the verdict says so
    poor = decide([hit("MgO", "Fm-3m", 0.2, 225)], True, params=PosteriorParams(none_log_evidence_hint=-0.5))
    assert poor.status == "no answer" and "no structure of the library fits" in poor.line()


def test_a_failed_quality_check_withholds_a_confident_verdict():
    hits = [hit("MgO", "Fm-3m", 0.95, 225), hit("MgO", "P6_3mc", 0.3, 186)]
    params = PosteriorParams(temperature_hint=10.0, none_log_evidence_hint=-5.0)
    d = decide(hits, True, params=params, caveats=["the column lattice is 12% off the Fourier transform"])
    assert d.probability > 0.8 and d.status == "uncertain"
    assert d.line().endswith("; but the column lattice is 12% off the Fourier transform")


def test_without_a_hint_the_structure_type_may_be_all_that_is_stated():
    hits = [hit("SrTiO3", "Pm-3m", 0.9, 221), hit("BaTiO3", "Pm-3m", 0.9, 221), hit("KNbO3", "Pm-3m", 0.88, 221)]
    d_params = PosteriorParams(temperature_no_hint=6.0, none_log_evidence_no_hint=-6.0, temperature_type=6.0,
                               none_log_evidence_type=-6.0, misrank_type=0.0)
    d = decide(hits, hinted=False, params=d_params)
    assert d.status != "confident" and d.type_only
    assert d.line().startswith("structure type only: ABC3 Pm-3m")
    assert d.type_probability > 0.99
    with_sites = decide(hits, hinted=False, params=d_params, column_classes=[1.0, 0.45])
    assert with_sites.line().endswith("column sites per cell at 1.00 / 0.45 of the brightest")


def test_a_type_counts_by_its_best_compound_not_by_how_many_it_has():
    perovskites = [hit(f, "Pm-3m", 0.9, 221) for f in ("SrTiO3", "BaTiO3", "KNbO3", "CaTiO3")]
    rock_salt = hit("MgO", "Fm-3m", 0.95, 225)
    params = PosteriorParams(temperature_type=6.0, none_log_evidence_type=-6.0, misrank_type=0.0)
    d = decide([rock_salt, *perovskites], hinted=False, params=params)
    assert d.structure_type == "AB Fm-3m"  # four perovskites at 0.9 do not outweigh one rock salt at 0.95
    # each type by its best compound, times the species-count prior (a binary and a ternary)
    w = [0.95 ** 6 * math.exp(species_log_prior("MgO")), 0.9 ** 6 * math.exp(species_log_prior("SrTiO3"))]
    assert d.type_probability == pytest.approx(w[0] / (sum(w) + math.exp(-36.0)), rel=1e-6)
    assert species_log_prior("Cu") > species_log_prior("MgO") > species_log_prior("SrTiO3")
    assert species_log_prior("NaMgAlSiO4") == species_log_prior("Li2MnNiO4")  # four or more: one class


def test_the_same_formula_and_space_group_on_other_sites_is_another_answer():
    from pymatgen.core import Lattice, Structure

    sites = [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]
    pb_on_a = Structure(Lattice.cubic(3.9), ["Pb", "Ti", "O", "O", "O"], sites)
    pb_on_b = Structure(Lattice.cubic(3.9), ["Ti", "Pb", "O", "O", "O"], sites)
    hits = [TemplateHit("pto-a", "PbTiO3", (0, 0, 1), 0.9, {"spacegroup": "Pm-3m", "spacegroup_number": 221}, pb_on_a),
            TemplateHit("pto-b", "PbTiO3", (0, 0, 1), 0.9, {"spacegroup": "Pm-3m", "spacegroup_number": 221}, pb_on_b)]
    d = decide(hits, True, params=PosteriorParams(temperature_hint=8.0, none_log_evidence_hint=-5.0, misrank_hint=0.0))
    assert d.probability == pytest.approx(0.5, abs=0.01) and d.status == "uncertain"


def terms(shape=1.0, scale=1.0, positions=1.0, z=1.0, elements=1.0, **priors):
    return {"lattice_shape": shape, "lattice_scale": scale, "positions": positions, "z_contrast": z,
            "elements": elements, "scale_sigmas": priors.pop("scale_sigmas", 0.5), **priors}


def test_a_polymorph_the_image_cannot_tell_apart_is_named():
    params = PosteriorParams(temperature_hint=6.0, none_log_evidence_hint=-5.0, misrank_hint=0.0)
    # the tilted library compound and the cubic decorated prototype fit the pattern alike; the
    # cell-size prediction and the priors separate them
    tilted = hit("SrZrO3", "I4/mcm", 0.89, 140, **terms(scale=0.99, simplicity=0.9))
    cubic = hit("SrZrO3", "Pm-3m", 0.58, 221, **terms(scale=0.667, elements=0.87))
    d = decide([tilted, cubic], True, params=params)
    assert d.alike == [f"SrZrO3 Pm-3m (p = {d.hit_probability[1]:.2f})"]
    assert d.status == "confident"
    assert f"the image fits {d.alike[0]} alike: the polymorph rests on the priors" in d.line()
    close = decide([tilted, hit("SrZrO3", "Pm-3m", 0.8, 221, **terms(elements=0.8))], True, params=params)
    assert close.status == "uncertain" and "the image fits both alike" in close.line()
    assert d.to_dict()["alike"] == d.alike
    # a polymorph whose columns fit worse, whose cell size is far from its prediction (bcc and fcc
    # metals along [001] show one square pattern), or another compound, is not alike
    assert decide([tilted, hit("SrZrO3", "Pm-3m", 0.5, 221, **terms(elements=0.87, scale_sigmas=2.5))],
                  True, params=params).alike == []
    worse = hit("SrZrO3", "Pm-3m", 0.5, 221, **terms(z=0.9, elements=0.87))
    other = hit("SrHfO3", "I4/mcm", 0.6, 140, **terms(simplicity=0.9))
    assert decide([tilted, worse, other], True, params=params).alike == []
    assert "alike" not in decide([tilted, worse], True, params=params).line()


def test_benchmark_rows_say_whether_a_stated_answer_had_an_alike_polymorph():
    from napari_automat.bench.calibrate import has_alike

    assert has_alike([{"alike": False}, {"alike": True}]) is True
    assert has_alike([{"alike": False}, {"alike": False}]) is False
    assert has_alike([{"group": 0}]) is None  # rows of older runs


def test_stability_weight_is_the_evidence_when_present():
    a = hit("AgCl", "Fm-3m", 0.9, 225, stability_weight=0.05)
    b = hit("AgCl", "P4/mmm", 0.8, 123, stability_weight=0.8)
    d = decide([b, a], True)
    assert d.formula == "AgCl" and d.spacegroup == "P4/mmm" and d.hit_probability[0] > d.hit_probability[1]


def test_calibration_factor_against_the_compound_and_its_warning():
    class Lat:
        a_A, uncertainty_A = 3.9, 0.004

    real = hit("SrTiO3", "Pm-3m", 0.9, 221, scale=1.05, template_cell_A=[3.9, 3.9, 90.0],
               measured_cell_A=[4.1, 4.1, 90.5])
    cal = calibration([real], 0, Lat())
    assert cal["scale_factor"] == pytest.approx(1 / 1.05, abs=1e-4) and cal["source"] == "structure"
    assert cal["shear"] == pytest.approx(math.radians(0.5), abs=1e-5) and not cal["applied"]
    assert "5.0 ± 1.5% high against SrTiO3 Pm-3m" in calibration_warning(cal)
    # a decorated prototype of the same structure is measured against the real compound ...
    deco = hit("SrTiO3", "Pm-3m", 0.95, 221, scale=0.9, decoration={"predicted_scale": 0.95})
    assert calibration([deco, real], 0, Lat())["scale_factor"] == pytest.approx(1 / 1.05, abs=1e-4)
    # ... or, alone, against its predicted scale with a wide uncertainty: no warning for 5%
    alone = calibration([deco], 0, Lat())
    assert alone["scale_factor"] == pytest.approx(0.95 / 0.9, abs=1e-4) and alone["source"] == "decorated prototype"
    assert calibration_warning(alone) is None
    assert calibration_warning(calibration([hit("X", "P1", 1, 1, scale=1.01)], 0, Lat())) is None


@pytest.mark.parametrize("rotation_deg, mirror", [(0.0, False), (33.0, False), (-71.0, True)])
def test_scan_distortion_is_recovered_whatever_the_crystal_rotation(rotation_deg, mirror):
    from napari_automat.decision import scan_distortion, scan_distortion_warning
    from napari_automat.model import Lattice2D

    shear, aspect = 0.02, -0.015
    template = [3.9, 5.5, 90.0]  # a rectangular cell (an orthorhombic projection)
    t = np.array([[3.9, 0.0], [0.0, 5.5]])
    r = np.radians(rotation_deg)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]]) @ (np.diag([1, -1]) if mirror else np.eye(2))
    d = 1.04 * np.array([[1.0, shear * (1 + aspect)], [0.0, 1 + aspect]])  # x' = x + h y, y' = (1 + aspect) y
    m = t @ (d @ rot).T  # rows a, b in (x, y)
    lat = Lattice2D(m[0][::-1], m[1][::-1], uncertainty_A=0.004)
    dist = scan_distortion(template, lat, 0.005)
    assert dist["shear"] == pytest.approx(shear, abs=1e-4) and dist["aspect"] == pytest.approx(aspect, abs=1e-4)
    cal = {"scan_distortion": dist, "against": "X Pnma"}
    assert "sheared by +2.0%" in scan_distortion_warning(cal) and "shorter along the slow scan" in \
        scan_distortion_warning(cal)
    # an undistorted scan of the same crystal: nothing to say
    plain = Lattice2D(*(t @ (1.04 * rot).T)[:, ::-1], uncertainty_A=0.004)
    assert scan_distortion_warning({"scan_distortion": scan_distortion(template, plain, 0.005), "against": "X"}) is None


def test_fit_recovers_the_temperature_that_generated_the_truths():
    from napari_automat.bench.calibrate import fit_mode, reliability

    rng = np.random.default_rng(1)
    beta, none_log = 5.0, -0.3
    rows = []
    for i in range(400):
        scores = np.sort(rng.uniform(0.2, 1.0, 4))[::-1]
        w = np.append(scores ** beta, math.exp(beta * none_log))
        truth = rng.choice(5, p=w / w.sum())  # 4 = none of these
        hits = [{"log_evidence": math.log(s), "group": k, "type_group": k,
                 "correct": k == truth, "type_correct": k == truth} for k, s in enumerate(scores)]
        rows.append({"hint": True, "hits": hits, "chosen_index": 0, "matched": truth == 0, "type_matched": truth == 0})
    b, n, e = fit_mode(rows, objective="truth")
    assert b == pytest.approx(beta, rel=0.3) and n == pytest.approx(none_log, abs=0.4) and e < 0.05
    for fitted in ((b, n, e), fit_mode(rows, objective="stated")):  # either way the stated top-1 is calibrated
        r = reliability(rows, PosteriorParams(temperature_hint=fitted[0], none_log_evidence_hint=fitted[1],
                                              misrank_hint=fitted[2]))
        chance, sd = r["ece_if_calibrated"]
        assert r["ece_top1"] < chance + 3 * sd
    wrong = reliability(rows, PosteriorParams(temperature_hint=50.0, none_log_evidence_hint=-10.0, misrank_hint=0.0))
    assert wrong["ece_top1"] > 0.1 > wrong["ece_if_calibrated"][0]  # an over-confident posterior is caught


@pytest.mark.slow
def test_result_json_carries_the_decision_and_a_miscalibrated_file_is_recalibrated(tmp_path):
    from napari_automat.cli import main
    from napari_automat.io.datasets import sample_path
    from napari_automat.io.read import read_micrograph
    from napari_automat.io.write import write_tiff_calibrated

    if not sample_path("srtio3").exists():
        pytest.skip("bundled sample missing")
    mg = read_micrograph(sample_path("srtio3"))
    off = tmp_path / "off.tif"
    write_tiff_calibrated(off, mg.data, mg.mean_pixel_size_A * 1.05, {"signal": "HAADF"})  # 5% too large
    base = ["run", str(off), "--elements", "Sr,Ti,O", "--energy-model", "none", "-q"]
    assert main(base + ["-o", str(tmp_path / "as-is")]) == 0
    d = json.loads((tmp_path / "as-is" / "result.json").read_text())
    design = {"schema_version", "software", "input", "calibration", "columns", "lattice2d", "retrieval", "structure",
              "domains", "energy", "properties", "agent", "timings_s", "warnings"}  # ../shared/DESIGN.md
    assert design <= set(d) and d["agent"]["planner"] == "rules" and d["agent"]["steps"] >= 5
    assert d["schema_version"] >= 2 and d["software"]["template_library_hash"]
    assert all(0 <= r["probability"] <= 1 and "log_likelihood" in r for r in d["retrieval"])
    assert d["decision"]["status"] in ("confident", "uncertain", "no answer")
    cal = d["calibration"]
    assert cal["scale_factor"] == pytest.approx(1 / 1.05, abs=0.02) and not cal["applied"]
    assert any("calibration appears" in w and "high" in w for w in d["warnings"])
    assert d["structure"]["a"] > 4.05  # written as measured
    assert main(base + ["-o", str(tmp_path / "fixed"), "--recalibrate"]) == 0
    fixed = json.loads((tmp_path / "fixed" / "result.json").read_text())
    assert fixed["calibration"]["applied"] and fixed["structure"]["reduced_formula"] == "SrTiO3"
    assert fixed["structure"]["a"] == pytest.approx(3.905, rel=0.015)
    assert "# lattice recalibrated" in (tmp_path / "fixed" / "structure.cif").read_text()


def test_result_objects_read_back_from_result_json(srtio3_result, tmp_path):
    """result.json gives back the hits (with typed geometry and score terms), the structure and the
    decision; the retrieval rows carry their probability."""
    from napari_automat.model import Reconstruction, TemplateHit

    paths = srtio3_result.save(tmp_path)
    d = json.loads(paths["result"].read_text())
    hits = [TemplateHit.from_dict(h) for h in d["retrieval"]]
    assert [h.template_id for h in hits] == [h.template_id for h in srtio3_result.hits]
    first = srtio3_result.hits[0]
    assert hits[0].geometry == first.geometry and hits[0].terms == first.terms
    assert d["retrieval"][0]["terms"]["positions"] == pytest.approx(first.details["positions"])
    assert math.prod(v for v in d["retrieval"][0]["terms"].values()) == pytest.approx(first.score, rel=1e-3)
    rec = Reconstruction.from_dict(d["structure"])
    assert rec.structure.composition.reduced_formula == "SrTiO3" and rec.template_id == first.template_id
    assert d["decision"]["formula"] == "SrTiO3" and d["retrieval"][0]["probability"] == pytest.approx(
        d["decision"]["probability"], abs=1e-4)


def test_prior_weight_is_recovered_from_rows_that_keep_log_priors():
    from napari_automat.bench.calibrate import at_prior_weight, fit_prior_weight

    rng = np.random.default_rng(3)
    beta, kappa = 6.0, 0.25
    rows = []
    for _ in range(200):
        loglik = np.log(rng.uniform(0.3, 1.0, 4))
        logprior = np.log(rng.choice([1.0, 0.9, 0.5], 4))
        w = np.exp(beta * (loglik + kappa * logprior))
        truth = rng.choice(4, p=w / w.sum())
        hits = [{"log_evidence": float(loglik[k] + logprior[k]), "log_prior": float(logprior[k]), "group": k,
                 "type_group": k, "correct": k == truth, "type_correct": k == truth} for k in range(4)]
        rows.append({"hint": True, "hits": hits, "chosen_index": 0, "matched": truth == 0, "prior_weight": 1.0})
    best, table = fit_prior_weight(rows)
    assert best in (0.18, 0.25, 0.35) and table[best] < table[1.0]
    moved = at_prior_weight(rows[0], 0.5)  # evidence re-weighed, the chosen hit re-taken
    h = rows[0]["hits"]
    assert moved["hits"][1]["log_evidence"] == pytest.approx(h[1]["log_evidence"] - 0.5 * h[1]["log_prior"])
    assert moved["chosen_index"] == int(np.argmax([x["log_evidence"] for x in moved["hits"]]))
    assert at_prior_weight(rows[0], 1.0) is rows[0]
