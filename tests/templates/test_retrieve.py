"""Retrieval against a small library: true structures projected along known zone axes are found
(with and without an element hint), decorated prototypes stand in for missing compounds, and the
best hit reconstructs to the right 3D structure."""

import math

import pytest

from napari_automat.model import AutomatError, Lattice2D, MotifSite
from napari_automat.reconstruct import reconstruct, structure_summary
from napari_automat.templates import project, retrieve, visible_columns
from napari_automat.templates.projection import to_lattice2d

STO_RATIO = 38 ** 1.7 / (22 ** 1.7 + 8 ** 1.7)


def sto_lattice(a=3.905, b=None, bright=STO_RATIO) -> Lattice2D:
    b = a if b is None else b
    return Lattice2D([0.0, a], [b, 0.0], motif=[MotifSite((0, 0), bright, 0), MotifSite((0.5, 0.5), 1.0, 1)])


def structure(kind: str):
    """True structures (some absent from the library: MgO, GaAs)."""
    from ase.build import bulk, mx2
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = {"Si": lambda: bulk("Si", "diamond", a=5.431, cubic=True),
             "Cu": lambda: bulk("Cu", "fcc", a=3.615, cubic=True),
             "MgO": lambda: bulk("MgO", "rocksalt", a=4.212, cubic=True),
             "NaCl": lambda: bulk("NaCl", "rocksalt", a=5.64, cubic=True),
             "GaAs": lambda: bulk("GaAs", "zincblende", a=5.653, cubic=True),
             "MoS2": lambda: mx2("MoS2", "2H", a=3.17, thickness=3.19, vacuum=7.5),
             "TiS2": lambda: mx2("TiS2", "1T", a=3.41, thickness=2.85, vacuum=7.5)}.get(kind)
    if kind == "FeSe":  # a PbO-type sheet: square Fe net between two Se sheets, 15 Å vacuum
        c = 2.94 + 15.0
        return Structure(Lattice.tetragonal(3.77, c), ["Fe", "Fe", "Se", "Se"],
                         [[0, 0, 0.5], [0.5, 0.5, 0.5], [0, 0.5, 0.5 + 1.47 / c], [0.5, 0, 0.5 - 1.47 / c]])
    if atoms is None:  # intermetallics: half-Heusler TiNiSn (Ni on the tetrahedral site) and B2 AlNi
        if kind == "TiNiSn":
            return Structure.from_spacegroup(216, Lattice.cubic(5.92), ["Ti", "Sn", "Ni"],
                                             [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
        return Structure.from_spacegroup(221, Lattice.cubic(2.88), ["Al", "Ni"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    atoms = atoms()
    atoms.pbc = True
    return AseAtomsAdaptor.get_structure(atoms)


def equivalent_axes(u, v) -> bool:
    return sorted(map(abs, u)) == sorted(map(abs, v))


def test_srtio3_with_hint_is_found_and_reconstructed(small_library):
    lat = sto_lattice()
    hits = retrieve(lat, ("Sr", "Ti", "O"), library=small_library)
    top = hits[0]
    assert top.formula == "SrTiO3" and top.zone_axis == (0, 0, 1)
    assert 0.9 < top.score <= 1.0 and all(0 <= h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    # The Ti-on-Sr antisite of the same formula loses on Z-contrast.
    antisite = [h for h in hits if h.details["decoration"] and h.details["decoration"].get("Sr") == "Ti"]
    assert all(h.details["z_contrast"] < top.details["z_contrast"] for h in antisite)
    assert {tuple(sorted(c)) for c in top.details["site_composition"]} == {("Sr",), ("O", "Ti")}
    # CaTiO3 shows its O columns (Ca is light); decorated with Sr they fade below 10%: 2 columns.
    deco = next(h for h in hits if h.template_id == "aflow:AB3C_cP5_221_a_c_b|Sr,Ti,O")
    assert deco.details["n_template_columns"] == 2 and deco.score < top.score
    assert deco.structure.composition.reduced_formula == "SrTiO3"
    rec = reconstruct(top, lat)
    summary = structure_summary(rec.structure, rec.symprec_A)
    assert summary["spacegroup_number"] == 221 and summary["reduced_formula"] == "SrTiO3"
    assert summary["a"] == pytest.approx(3.905, rel=0.005)


def test_srtio3_without_hint_ranks_the_perovskite_first(small_library):
    hits = retrieve(sto_lattice(), library=small_library)
    assert hits[0].formula == "SrTiO3"
    assert hits[0].details["ambiguity_gap"] > 0.05


def test_srtio3_strained_cell_is_still_found(small_library):
    hits = retrieve(sto_lattice(a=3.905 * 1.03), ("Sr", "Ti", "O"), library=small_library)
    assert hits[0].formula == "SrTiO3" and hits[0].details["scale"] == pytest.approx(1.03, abs=0.005)
    assert hits[0].score < 0.95  # the rescaling is penalised
    far = retrieve(sto_lattice(a=3.905 * 1.15), library=small_library)
    assert all(h.formula != "SrTiO3" for h in far)  # beyond the ±8% window of the real compound


def test_intensity_order_matters(small_library):
    # Bright site at the centre instead: the Sr/TiO assignment is the swapped one, same geometry.
    normal = retrieve(sto_lattice(), ("Sr", "Ti", "O"), library=small_library)[0]
    swapped = retrieve(sto_lattice(bright=1 / STO_RATIO), ("Sr", "Ti", "O"), library=small_library)[0]
    assert normal.details["z_contrast"] > 0.95
    # Origin shift puts the bright site on the Sr column either way: geometry cannot tell them apart.
    assert swapped.formula == "SrTiO3" and swapped.details["z_contrast"] > 0.95
    flat = retrieve(sto_lattice(bright=1.0), ("Sr", "Ti", "O"), library=small_library)[0]
    assert flat.details["z_contrast"] < 0.5  # equal intensities contradict Sr vs TiO columns


def test_geometry_only_lattice_finds_the_subcell(small_library):
    # A lattice found from positions alone: SrTiO3 [001] as the a/√2 square with one site.
    a = 3.905 / math.sqrt(2)
    lat = Lattice2D([0.0, a], [a, 0.0], motif=[MotifSite((0, 0), 1.0, 0)])
    hits = retrieve(lat, ("Sr", "Ti", "O"), library=small_library)
    sto = next(h for h in hits if h.template_id == "pymatgen:SrTiO3")
    assert sto.zone_axis == (0, 0, 1) and sto.details["cell_variant"] == "geometric"
    assert sto.score < 0.8  # Sr and TiO columns differ by 2x: taking them as equal is penalised


CASES = [  # (structure, zone axis, hint, expected formula)
    ("Si", (1, 1, 0), ("Si",), "Si"),
    ("Cu", (0, 0, 1), ("Cu",), "Cu"),
    ("NaCl", (0, 0, 1), ("Na", "Cl"), "NaCl"),
    ("MgO", (0, 0, 1), ("Mg", "O"), "MgO"),
    ("GaAs", (1, 1, 0), ("Ga", "As"), "GaAs"),
    ("MoS2", (0, 0, 1), ("Mo", "S"), "MoS2"),
    ("TiS2", (0, 0, 1), ("Ti", "S"), "TiS2"),
    ("TiNiSn", (1, 1, 0), ("Ti", "Ni", "Sn"), "TiNiSn"),
    ("AlNi", (0, 0, 1), ("Al", "Ni"), "AlNi"),
]


@pytest.mark.parametrize("kind, axis, hint, formula", CASES)
def test_projected_true_structures_are_retrieved(small_library, kind, axis, hint, formula):
    truth = structure(kind)
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    conv = SpacegroupAnalyzer(truth, symprec=0.1).get_conventional_standard_structure()
    vis = visible_columns(project(conv, axis))
    lat = to_lattice2d(vis)
    hits = retrieve(lat, hint, library=small_library)
    top = hits[0]
    assert top.formula == formula, [(h.formula, h.zone_axis, round(h.score, 3)) for h in hits[:5]]
    assert equivalent_axes(top.zone_axis, axis)
    if kind == "MoS2":
        assert top.details["is_2d"]  # the monolayer, not bulk 2H-MoS2 (mixed Mo+S columns)
    if kind == "TiS2":  # a 1T sheet projects like bulk CdI2-type TiS2: the monolayer ranks first
        assert top.details["is_2d"] and top.template_id.startswith("2d:aflow:AB2_hP3_164_a_d|")
        bulk = next(h for h in hits if h.template_id.startswith("aflow:AB2_hP3_164_a_d|"))
        assert bulk.details["plan_view"] < 1 and bulk.score == pytest.approx(top.score * bulk.details["plan_view"])
        from napari_automat.decision import alike_in_image

        assert alike_in_image(top, bulk)  # the verdict names the bulk crystal as fitting alike
        z = top.structure.cart_coords[:, 2]  # decorated at scale ~0.8: the vacuum keeps its 15 Å
        assert top.details["scale"] < 0.9
        assert top.structure.lattice.c - (z.max() - z.min()) == pytest.approx(15.0, abs=0.01)
    if kind in ("MgO", "GaAs", "TiNiSn", "AlNi", "TiS2"):
        assert top.details["decoration"] is not None  # from the rocksalt, zincblende, MgAgAs, FeCo prototypes
    rec = reconstruct(top, lat)
    assert rec.structure.composition.reduced_formula == formula
    assert SpacegroupAnalyzer(rec.structure, symprec=0.1).get_space_group_number() == \
        SpacegroupAnalyzer(conv, symprec=0.1).get_space_group_number()
    ratio = rec.structure.lattice.a / conv.lattice.a
    assert ratio == pytest.approx(1.0, abs=0.01)
    if top.details["is_2d"]:  # the vacuum and the layer's thickness, not scaled away
        assert rec.structure.lattice.c == pytest.approx(conv.lattice.c, abs=0.3)


def test_tetragonal_sheet_is_reached_through_an_exfoliated_prototype(small_library):
    # A PbO-type FeSe sheet (Fe square net between Se sheets) along [001] projects like B2 "FeSe"
    # [001] (a Se column in each Fe square), which this small library ranks first; the sheet
    # decorated from the monolayer of tetragonal mackinawite FeS is among the hits and rebuilds the truth.
    from napari_automat.bench.metrics import structures_match

    truth = structure("FeSe")
    lat = to_lattice2d(visible_columns(project(truth, (0, 0, 1))))
    hits = retrieve(lat, ("Fe", "Se"), library=small_library)
    sheet = next(h for h in hits if h.template_id == "2d:jarvis:Mackinawite-JVASP-12104|Fe,Se")
    assert sheet.details["is_2d"] and sheet.zone_axis == (0, 0, 1)
    assert structures_match(reconstruct(sheet, lat).structure, truth)


def test_cached_retrieval_gives_the_same_hits(small_library):
    """The per-hint caches (decorations, element scores, index) change no result (the speed is a
    benchmark figure: scripts/retrieval_speed.py)."""
    lat = sto_lattice()
    first = retrieve(lat, ("Sr", "Ti", "O"), library=small_library)
    again = retrieve(lat, ("Sr", "Ti", "O"), library=small_library)
    assert [(h.template_id, h.zone_axis, h.score) for h in first] == [(h.template_id, h.zone_axis, h.score)
                                                                     for h in again]


def test_bad_input(small_library):
    with pytest.raises(AutomatError):
        retrieve(Lattice2D([0, 3.9], [0, 7.8]), library=small_library)
    with pytest.raises(AutomatError, match="element"):
        retrieve(sto_lattice(), ("Sr", "Xx"), library=small_library)
    assert retrieve(Lattice2D([0, 30.0], [31.0, 0]), library=small_library) == []


def test_intermetallic_decorations():
    """Intermetallics need no charge balance: metals and metalloids swap freely, and a prototype
    with no balanced states of its own (Cr2AlC) is decorated kind for kind; ionic prototypes still
    need a balanced result."""
    from napari_automat.templates.retrieve import _decorations

    def mappings(elements, formula, hint):
        return [d["mapping"] for d in _decorations({"elements": elements, "reduced_formula": formula}, hint)]

    assert {"As": "Ni", "Mg": "Ti", "Ag": "Sn"} in mappings(["Mg", "Ag", "As"], "MgAgAs", ("Ti", "Ni", "Sn"))
    assert mappings(["Cs", "Cl"], "CsCl", ("Al", "Fe")) == []  # no AlFe on the ionic CsCl prototype
    assert mappings(["Fe", "Co"], "FeCo", ("Al", "Fe"))  # but on the metallic B2 FeCo
    assert {"Al": "Al", "Cr": "Ti", "C": "N"} in mappings(["Al", "Cr", "C"], "AlCr2C", ("Ti", "Al", "N"))
    assert {"Al": "Sr", "Cr": "Ti", "C": "O"} not in mappings(["Al", "Cr", "C"], "AlCr2C", ("Sr", "Ti", "O"))


def test_light_columns_bring_in_every_column(small_library):
    """Annular bright field shows SrTiO3 [111] with its O columns, a kagome net around the Sr+Ti
    columns. Told the signal shows light columns, retrieval matches templates with every column
    visible and finds the perovskite; taken as HAADF, those columns fit no template."""
    from pymatgen.core import Lattice, Structure

    from napari_automat.templates.projection import translation_cell
    from napari_automat.templates.retrieve import ScoreParams

    sto = Structure.from_spacegroup(221, Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    lat = to_lattice2d(translation_cell(project(sto, (1, 1, 1), z_exponent=ScoreParams().light_z_exponent)))
    assert len(lat.motif) == 4
    light = retrieve(lat, ("Sr", "Ti", "O"), library=small_library, light_columns=True)
    assert light[0].formula == "SrTiO3" and equivalent_axes(light[0].zone_axis, (1, 1, 1))
    assert light[0].score > 0.8
    haadf = retrieve(lat, ("Sr", "Ti", "O"), library=small_library)
    assert not haadf or haadf[0].score < 0.1
    unknown = retrieve(lat, ("Sr", "Ti", "O"), library=small_library, light_columns=None)  # signal not recorded
    assert unknown[0].formula == "SrTiO3" and unknown[0].details["light_columns"]
    unknown = retrieve(sto_lattice(), ("Sr", "Ti", "O"), library=small_library, light_columns=None)
    assert unknown[0].formula == "SrTiO3" and not unknown[0].details["light_columns"]


def test_element_score_follows_the_hint():
    """Light elements may be left out of a hint; a heavy element it does not name rules a template out."""
    from napari_automat.templates.retrieve import _element_score

    assert _element_score(["Sr", "Ti", "O"], ("Sr", "Ti", "O")) == 1.0
    assert _element_score(["Sr", "Ti", "O"], ("Sr", "Ti")) == 0.8
    assert 0 < _element_score(["Sr", "O"], ("Sr", "Ti", "O")) < 0.1
    assert _element_score(["Cs", "Pd", "S"], ("Pd",)) == 0.0
    assert _element_score(["Cs", "Pd", "S"], ()) == 1.0


def test_score_parameters_are_one_object_that_a_config_overrides(small_library):
    """Every number of the score lives in ScoreParams: a hint that leaves out O scores the SrTiO3
    templates at ``light_left_out``, and an override changes exactly that factor."""
    from pymatgen.core import Lattice, Structure

    from napari_automat.config import PipelineConfig
    from napari_automat.templates.projection import translation_cell
    from napari_automat.templates.retrieve import ScoreParams

    sto = Structure.from_spacegroup(221, Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    lat = to_lattice2d(translation_cell(project(sto, (0, 0, 1))))
    default = next(h for h in retrieve(lat, ("Sr", "Ti"), library=small_library) if h.formula == "SrTiO3")
    assert default.details["elements"] == pytest.approx(0.8)
    params = ScoreParams.from_dict(PipelineConfig(score={"light_left_out": 0.4}).score)
    assert params.light_left_out == 0.4 and ScoreParams.from_dict(params.to_dict()) == params
    changed = retrieve(lat, ("Sr", "Ti"), library=small_library, params=params)
    same = next(h for h in changed if h.template_id == default.template_id)
    assert same.details["elements"] == pytest.approx(0.4)
    assert same.score == pytest.approx(default.score * 0.5, rel=1e-6)
