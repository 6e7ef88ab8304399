"""Candidates that project alike are told apart by stability under the potential."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from napari_automat.energy import stability as S
from napari_automat.model import Lattice2D, TemplateHit


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


def test_site_assignments_of_one_prototype_are_distinct_candidates():
    """Cs on the A site and Pb on the B site of a cubic perovskite, or the other way round: one
    formula and space group, two crystals that a [111] projection cannot tell apart."""
    def perovskite(a_site, b_site):
        return Structure.from_spacegroup(221, Lattice.cubic(5.87), [a_site, b_site, "Br"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])

    hits = [_hit("CsPbBr3", "Pm-3m", 0.55, perovskite("Pb", "Cs")),
            _hit("CsPbBr3", "Pm-3m", 0.55, perovskite("Pb", "Cs")),  # the same from another source
            _hit("CsPbBr3", "Pm-3m", 0.54, perovskite("Cs", "Pb"))]
    assert S.stability_candidates(hits, 5) == [0, 2]


def test_rerank_weights_score_by_formation_energy(monkeypatch):
    import napari_automat.energy.backends as B
    import napari_automat.energy.references as F
    import napari_automat.reconstruct as R
    from napari_automat.templates.retrieve import DEFAULT_PARAMS as P

    energies = {"P4/mmm": -0.55, "Fm-3m": -0.74}
    monkeypatch.setattr(R, "reconstruct", lambda hit, lattice: type("Rec", (), {"structure": hit.structure})())
    monkeypatch.setattr(B, "get_calculator", lambda *a: None)
    monkeypatch.setattr(B, "resolve_model", lambda *a: ("fake", "test"))
    monkeypatch.setattr(F, "elemental_references", lambda *a, **k: {"Ag": 0.0, "Cl": 0.0})
    # the primitive rocksalt cell has 2 atoms in 34.2 Å^3, the CuAu-type one 2 in 55.3 Å^3
    monkeypatch.setattr(S, "scan_energy_per_atom", lambda s, calc: energies["Fm-3m" if s.volume < 45 else "P4/mmm"])
    hits = [_hit("AgCl", "P4/mmm", 0.42, _cuau()), _hit("AgCl", "Fm-3m", 0.36, _rocksalt())]
    lattice = Lattice2D(np.array([2.775, 0.0]), np.array([0.0, 2.775]))
    ranked = S.rerank_by_stability(hits, lattice, model="fake")
    assert [h.details["spacegroup"] for h in ranked] == ["Fm-3m", "P4/mmm"]
    assert ranked[0].details["formation_energy_eV"] == pytest.approx(-0.74)
    assert ranked[1].details["stability_weight"] == pytest.approx(
        0.42 * np.exp(-(0.19 - P.metastable_eV) / P.energy_scale_eV), rel=1e-3)
    energies["Fm-3m"] = -0.60  # within the metastability window: the image score decides
    assert S.rerank_by_stability(hits, lattice, model="fake")[0].details["spacegroup"] == "P4/mmm"
    squeezed = _rocksalt()
    squeezed.scale_lattice(squeezed.volume * 0.6 ** 3)  # a template fitted at the wrong scale: atoms overlap
    hits = [_hit("AgCl", "P4/mmm", 0.42, _cuau()), _hit("AgCl", "Fm-3m", 0.5, squeezed)]
    ranked = S.rerank_by_stability(hits, lattice, model="fake")
    assert ranked[0].details["spacegroup"] == "P4/mmm" and "overlap" in ranked[1].details["stability_note"]


@pytest.mark.slow
def test_agent_finds_rocksalt_agcl_that_projects_like_cuau():
    from napari_automat.agent import run_agent
    from napari_automat.config import PipelineConfig
    from napari_automat.simulate import incoherent_image

    image = incoherent_image(_rocksalt(), (0, 0, 1), pixel_size_A=0.12, field_of_view_A=35, dose=1e5, seed=2)
    config = PipelineConfig(elements=("Ag", "Cl"), energy_model="chgnet", relax=False)
    result = run_agent(image, config).result
    assert result.reconstruction.structure.get_space_group_info()[0] == "Fm-3m"
    checked = [h for h in result.hits if "formation_energy_eV" in h.details]
    assert len(checked) >= 2 and checked[0] is result.hits[0]


def test_volume_scan_finds_the_minimum_of_a_compressed_cell():
    from napari_automat.energy.backends import get_calculator

    calc = get_calculator("chgnet")
    rs = _rocksalt().get_primitive_structure()
    squeezed = rs.copy()
    squeezed.scale_lattice(rs.volume * 0.95 ** 3)
    e_eq = S.scan_energy_per_atom(rs, calc)
    assert S.scan_energy_per_atom(squeezed, calc) == pytest.approx(e_eq, abs=0.01)  # the scan undoes 5%
