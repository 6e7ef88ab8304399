"""A small template library (common structures and distractors) built once per session."""

import pytest

#: Source ids of the small library: the test targets plus look-alike distractors.
SMALL = {
    "ase:Cu-fcc", "aflow:A_cF4_225_a", "ase:Ni-fcc", "ase:Al-fcc", "ase:Au-fcc", "ase:Pd-fcc", "ase:Si-diamond", "ase:Ge-diamond",
    "ase:Fe-bcc", "ase:W-bcc", "ase:Mg-hcp", "ase:Ti-hcp",
    "2d:MoS2-2H", "2d:WS2-2H", "2d:graphene", "2d:hBN",
    "pymatgen:SrTiO3", "pymatgen:CsCl", "pymatgen:TiO2",
    "aflow:AB_cF8_225_a_b", "aflow:AB_cF8_216_c_a", "aflow:AB3C_cP5_221_a_c_b", "aflow:AB2_hP6_194_c_f",
    "aflow:AB_hP4_186_b_b", "aflow:AB2_hP3_164_a_d", "jarvis:Mackinawite-JVASP-12104", "aflow:A2B_tP6_136_f_a", "aflow:A3BC_tP5_99_bc_a_b",
    "aflow:ABC_cF12_216_b_c_a", "jarvis:Wairauite-JVASP-20576", "aflow:AB3_cP4_221_a_c",
}


@pytest.fixture(scope="session")
def small_sources():
    from napari_automat.templates.sources import all_sources

    sources = [s for s in all_sources() if s.id in SMALL]
    assert len(sources) == len(SMALL), SMALL - {s.id for s in sources}
    return sources


@pytest.fixture(scope="session")
def small_library(tmp_path_factory, small_sources):
    from napari_automat.templates import build_library

    return build_library(tmp_path_factory.mktemp("lib") / "templates.npz", sources=small_sources)
