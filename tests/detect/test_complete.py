"""Motif sites merged into brighter neighbours (light columns in dumbbells) are found from the
cell-averaged residual of the fitted columns; nothing is added where there is nothing."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.spatial import cKDTree

from napari_automat.detect import detect_columns, find_lattice
from napari_automat.detect.complete import find_lattice_completed
from napari_automat.simulate import incoherent_image


def _scores(columns, micrograph, tolerance_A=0.3, border_A=1.5):
    """Recall and precision away from the image border (columns cut by it are left out)."""
    border = border_A / micrograph.mean_pixel_size_A
    shape = np.array(micrograph.data.shape)

    def inner(p):
        return p[np.all((p > border) & (p < shape - 1 - border), axis=1)]

    truth, found = micrograph.true_columns_px, columns.positions_px
    d, _ = cKDTree(found).query(inner(truth))
    recall = float(np.mean(d * micrograph.mean_pixel_size_A < tolerance_A))
    d, _ = cKDTree(truth).query(inner(found))
    precision = float(np.mean(d * micrograph.mean_pixel_size_A < tolerance_A))
    return recall, precision


def _zincblende(a, cation, anion):
    return Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])


def test_light_dumbbell_partner_is_added_from_the_residual():
    # SiC [011]: Si and C 1.09 Å apart, C at 23% of Si's Σ Z^1.7; the first pass sees one column per dumbbell
    mg = incoherent_image(_zincblende(4.36, "Si", "C"), (0, 1, 1), pixel_size_A=0.1, field_of_view_A=30,
                          dose=2e4, seed=4)
    first = detect_columns(mg)
    assert _scores(first, mg)[0] < 0.6
    lattice, columns, changes = find_lattice_completed(first, mg)
    sites = changes["sites"]
    recall, precision = _scores(columns, mg)
    assert len(sites) == 1 and recall >= 0.99 and precision >= 0.99
    added = columns.count - first.count
    assert added > 0.8 * first.count and len(lattice.motif) == 2
    assert set(columns.provenance) == {"detected"}


@pytest.mark.parametrize("structure, axis", [
    (Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
               [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]), (0, 0, 1)),
    (_zincblende(6.096, "Ga", "Sb"), (0, 1, 1)),
])
def test_nothing_is_added_when_every_column_was_found(structure, axis):
    mg = incoherent_image(structure, axis, pixel_size_A=0.1, field_of_view_A=30, dose=2e4, seed=5)
    first = detect_columns(mg)
    _, plain = find_lattice(first, image=mg)
    _, columns, changes = find_lattice_completed(first, mg)
    sites = changes["sites"]
    if sites:  # only true columns may be added (e.g. faint O next to Ti in SrTiO3)
        assert _scores(columns, mg)[1] >= 0.99
    else:
        assert columns.count == plain.count


def test_pipeline_keeps_added_sites_only_when_a_template_explains_them(monkeypatch):
    from napari_automat import pipeline
    from napari_automat.config import PipelineConfig
    from napari_automat.model import TemplateHit
    from napari_automat.templates import retrieve as real_retrieve

    mg = incoherent_image(_zincblende(4.36, "Si", "C"), (0, 1, 1), pixel_size_A=0.1, field_of_view_A=30,
                          dose=2e4, seed=4)
    config = PipelineConfig(elements=("Si", "C"))

    def run(score_with_sites):
        result = pipeline.start(mg, config)
        for stage in (pipeline.detect_stage, pipeline.lattice_stage):
            stage(result, config)
        assert result.first_pass is not None and len(result.lattice.motif) == 2
        first_count = result.first_pass[1].count

        def fake(lattice, **kwargs):
            hits = real_retrieve(lattice, **kwargs)
            if len(lattice.motif) == 2:  # the completed motif
                hits = [TemplateHit(h.template_id, h.formula, h.zone_axis, score_with_sites, h.details, h.structure)
                        for h in hits]
            return hits

        monkeypatch.setattr("napari_automat.templates.retrieve", fake)
        pipeline.retrieve_stage(result, config)
        return result, first_count

    kept, first_count = run(0.5)
    assert kept.columns.count > 1.8 * first_count and len(kept.lattice.motif) == 2
    assert kept.hits[0].formula == "SiC"
    dropped, first_count = run(0.01)  # nothing explains the added sites: back to the first pass
    assert dropped.columns.count == first_count and len(dropped.lattice.motif) == 1
    assert any("'without the completed sites' explains the image best" in w for w in dropped.warnings)
    assert dropped.hits[0].details["reading"] == "without the completed sites"
    assert dropped.hits[0].details["reading_prior"] == 0.5


def _two_sublattices(dim_offset_A, dim_fraction, dim_r2, bright_r2):
    """Bright columns on a triangular lattice (a = 2.5 Å) and a dim sublattice at ``dim_offset_A``."""
    from napari_automat.model import Columns

    a = 2.5
    ij = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2)
    bright = ij @ np.array([[a, 0.0], [a / 2, a * np.sqrt(3) / 2]])
    positions_A = np.vstack([bright, bright + dim_offset_A])
    sub = np.repeat([0, 1], len(bright))
    return Columns.from_positions(positions_A / 0.1, (0.1, 0.1), sublattice=sub,
                                  intensity=np.where(sub == 0, 100.0, 100.0 * dim_fraction),
                                  fit_r2=np.where(sub == 0, bright_r2, dim_r2))


CENTROID = np.array([1.25, 2.5 * np.sqrt(3) / 6])  # amid three bright columns
BESIDE = np.array([0.0, 0.8])  # a dumbbell partner


@pytest.mark.parametrize("offset, dim_fraction, dim_r2, bright_r2, dropped", [
    (CENTROID, 0.12, 0.70, 0.98, [1]),  # tails adding up amid columns (BeO [0001], graphene channels)
    (CENTROID, 0.12, 0.95, 0.98, []),   # shaped like a column: a light atom column
    (CENTROID, 0.40, 0.70, 0.98, []),   # not faint
    (CENTROID, 0.12, 0.70, 0.90, []),   # noisy image: nothing fits well, no verdict
    (BESIDE, 0.12, 0.70, 0.98, []),     # beside one column: a poorly fitted dumbbell partner is kept
])
def test_tail_artefact_sublattices(offset, dim_fraction, dim_r2, bright_r2, dropped):
    from napari_automat.detect.complete import drop_tail_artefacts

    columns = _two_sublattices(offset, dim_fraction, dim_r2, bright_r2)
    kept, gone = drop_tail_artefacts(columns)
    assert gone == dropped
    assert kept.count == (columns.count // 2 if dropped else columns.count)


def test_pipeline_drops_faint_sites_no_template_explains():
    from ase.build import mx2
    from pymatgen.io.ase import AseAtomsAdaptor

    from napari_automat import pipeline
    from napari_automat.config import PipelineConfig

    atoms = mx2("MoS2", "2H", a=3.16, thickness=3.17, vacuum=7.5)
    atoms.pbc = True
    sheet = AseAtomsAdaptor.get_structure(atoms)
    occupied = {tuple(np.round(f[:2] % 1 * 3).astype(int) % 3) for f in sheet.frac_coords}
    empty = next(s for s in ((0, 0), (1, 2), (2, 1)) if s not in occupied)
    # An Al column in the empty hexagon centres: 14% of Mo's Σ Z^1.7, a site no MoS2 template has.
    sheet.append("Al", [empty[0] / 3, empty[1] / 3, 0.5])
    mg = incoherent_image(sheet, (0, 0, 1), pixel_size_A=0.1, field_of_view_A=30, dose=1e5, seed=3)
    config = PipelineConfig(elements=("Mo", "S"))
    result = pipeline.start(mg, config)
    for stage in (pipeline.detect_stage, pipeline.lattice_stage):
        stage(result, config)
    assert len(result.lattice.motif) == 3
    before = result.columns.count
    pipeline.retrieve_stage(result, config)
    assert any("'without the faint motif sites' explains the image best" in w for w in result.warnings)
    assert len(result.lattice.motif) == 2 and result.columns.count < 0.8 * before
    assert result.hits[0].formula == "MoS2" and result.hits[0].details["is_2d"]
