"""Every per-column feature survives subsets, refinement, labelling and the file/dict round trips."""

import numpy as np

from napari_automat.io.write import read_columns_csv, write_columns_csv
from napari_automat.model import COLUMN_FEATURES, Columns


def _full(n=5):
    rng = np.random.default_rng(0)
    return Columns(rng.uniform(5, 50, (n, 2)), (0.1, 0.2), intensity=rng.uniform(1, 2, n), sigma_px=np.full(n, 1.5),
                   sublattice=np.arange(n) % 2, species=["Sr", "Ti+O"] * (n // 2) + ["Sr"] * (n % 2),
                   species_confidence=np.linspace(0.5, 1, n), provenance=["detected"] * (n - 1) + ["added"],
                   displacement_pm=rng.normal(0, 3, (n, 2)), flag=["", "dim"] + [""] * (n - 2),
                   position_sigma_px=np.full(n, 0.03), fit_r2=np.full(n, 0.95))


def _same(a: Columns, b: Columns) -> None:
    np.testing.assert_allclose(a.positions_px, b.positions_px, atol=1e-6)
    for name, (kind, _) in COLUMN_FEATURES.items():
        va, vb = getattr(a, name), getattr(b, name)
        if kind == "str":
            assert va == vb, name
        else:
            np.testing.assert_allclose(va, vb, atol=1e-6, err_msg=name)


def test_subset_keeps_every_feature():
    cols = _full()
    _same(cols.subset([4, 1]), Columns.from_flat(cols.positions_px[[4, 1]], cols.pixel_size_A,
                                                 {k: [v[4], v[1]] for k, v in cols.flat_features().items()}))
    _same(cols.subset(np.ones(5, bool)), cols)


def test_round_trips_keep_every_feature(tmp_path):
    cols = _full()
    _same(Columns.from_dict(cols.to_dict(full=True)), cols)
    write_columns_csv(tmp_path / "c.csv", cols)
    _same(read_columns_csv(tmp_path / "c.csv"), cols)


def test_refinement_and_labelling_keep_the_lattice_features(srtio3_result):
    from napari_automat.detect import refine_columns

    result = srtio3_result
    cols = result.columns  # labelled by the reconstruct stage
    assert np.all(np.isfinite(cols.displacement_pm[cols.sublattice >= 0]))
    assert np.all(np.isfinite(cols.position_sigma_px)) and np.all(np.isfinite(cols.fit_r2))
    refined = refine_columns(result.analysed, cols, indices=[0])
    np.testing.assert_array_equal(refined.displacement_pm, cols.displacement_pm)
    assert refined.flag == cols.flag and refined.species == cols.species
