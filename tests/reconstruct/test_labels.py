"""Columns get species labels from the template sites matched to their sublattice."""

import numpy as np

from napari_automat.reconstruct.labels import column_label


def test_label_puts_the_heaviest_element_first():
    assert column_label({"O": 1.0, "Ti": 1.0}) == "Ti+O"
    assert column_label({"Sr": 1.0}) == "Sr"


def test_srtio3_columns_are_labelled_by_z_contrast(srtio3_result):
    result = srtio3_result
    cols = result.columns
    labels = np.array(cols.species)
    assert set(labels) == {"Sr", "Ti+O"}
    # Sr columns (Z=38) are the bright ones in HAADF; Ti+O columns (22 + 8) the dim ones.
    assert cols.intensity[labels == "Sr"].mean() > 1.5 * cols.intensity[labels == "Ti+O"].mean()
    assert np.all((cols.species_confidence > 0) & (cols.species_confidence <= 1))
    assert {m.species for m in result.lattice.motif} == {"Sr", "Ti+O"}
