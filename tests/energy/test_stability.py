"""Candidates that project alike are told apart by stability under the potential."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from napari_automat.energy import stability as S
from napari_automat.model import EnergyReport, Lattice2D, TemplateHit


def _hit(formula, spacegroup, score, structure):
    return TemplateHit(f"t-{formula}-{spacegroup}", formula, (0, 0, 1), score,
                       {"spacegroup": spacegroup, "spacegroup_number": hash(spacegroup) % 230}, structure, "test")


def _rocksalt():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.55), ["Ag", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cuau():
    return Structure(Lattice.tetragonal(3.92, 3.6), ["Ag", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_candidates_are_distinct_same_elements_and_within_the_window():
    rs, cu = _rocksalt(), _cuau()
    other = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    hits = [_hit("AgCl", "P4/mmm", 0.5, cu), _hit("AgCl", "P4/mmm", 0.45, cu), _hit("NaCl", "Fm-3m", 0.4, other),
            _hit("AgCl", "Fm-3m", 0.3, rs), _hit("AgCl", "Pm-3m", 0.01, cu)]
    assert S.stability_candidates(hits, 3) == [0, 3]  # duplicate, other elements and a far score left out
    assert S.stability_candidates(hits, 1) == [0]


def test_rerank_weights_score_by_formation_energy(monkeypatch):
    import napari_automat.energy.compute as C
    import napari_automat.reconstruct as R

    energies = {"P4/mmm": -0.55, "Fm-3m": -0.74}
    monkeypatch.setattr(R, "reconstruct", lambda hit, lattice: type("Rec", (), {"structure": hit.structure})())
    monkeypatch.setattr(C, "compute_energy", lambda s, **kw: EnergyReport(
        "fake", -3.0, energies["Fm-3m" if s.lattice.a > 5 else "P4/mmm"], True, 0.0))
    hits = [_hit("AgCl", "P4/mmm", 0.42, _cuau()), _hit("AgCl", "Fm-3m", 0.36, _rocksalt())]
    lattice = Lattice2D(np.array([2.775, 0.0]), np.array([0.0, 2.775]))
    ranked = S.rerank_by_stability(hits, lattice, model="fake")
    assert [h.details["spacegroup"] for h in ranked] == ["Fm-3m", "P4/mmm"]
    assert ranked[0].details["formation_energy_eV"] == pytest.approx(-0.74)
    assert ranked[1].details["stability_weight"] == pytest.approx(0.42 * np.exp(-0.19 / S.ENERGY_SCALE_EV), rel=1e-3)
    energies["Fm-3m"] = -0.56  # nearly degenerate: the image score decides
    assert S.rerank_by_stability(hits, lattice, model="fake")[0].details["spacegroup"] == "P4/mmm"


@pytest.mark.slow
def test_agent_finds_rocksalt_agcl_that_projects_like_cuau():
    from napari_automat.agent import run_agent
    from napari_automat.config import PipelineConfig
    from napari_automat.simulate import incoherent_image

    image = incoherent_image(_rocksalt(), (0, 0, 1), pixel_size_A=0.12, field_of_view_A=35, dose=1e5, seed=2)
    config = PipelineConfig(elements=("Ag", "Cl"), energy_model="chgnet", max_relax_steps=40, fmax_eV_A=0.1)
    result = run_agent(image, config).result
    assert result.reconstruction.structure.get_space_group_info()[0] == "Fm-3m"
    checked = [h for h in result.hits if "formation_energy_eV" in h.details]
    assert len(checked) >= 2 and checked[0] is result.hits[0]
