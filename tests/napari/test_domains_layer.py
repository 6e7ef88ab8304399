"""The agent widget shows the domains of a run as a Labels layer, and a domain's layers where its
crop lies in the image."""

from types import SimpleNamespace

import numpy as np

from napari_automat._napari.layers import DOMAINS_KEY
from napari_automat._napari.widgets.agent import AgentWidget
from napari_automat.config import PipelineConfig
from napari_automat.model import Micrograph
from napari_automat.pipeline import run

PIXEL_A, A_PX = 0.2, 19.5  # a 3.9 Å square cell


def bicrystal(shape=(160, 320), boundary_x=170):
    """Bright A columns with B columns at 0.15 of them left of ``boundary_x`` [px], 0.85 right."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.full(shape, 0.1)
    for (dy, dx), amps in (((0, 0), (1.0, 1.0)), ((0.5, 0.5), (0.15, 0.85))):
        for y in np.arange(3 + dy * A_PX, shape[0], A_PX):
            for x in np.arange(5 + dx * A_PX, shape[1], A_PX):
                amp = amps[0] if x < boundary_x else amps[1]
                img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 2.2 ** 2))
    noisy = np.random.default_rng(0).poisson(img * 100) / 100
    return Micrograph(noisy, (PIXEL_A, PIXEL_A), True, path="bicrystal")


def test_domains_become_a_labels_layer(make_napari_viewer):
    viewer = make_napari_viewer(show=False)
    widget = AgentWidget(viewer)
    assert not widget.config().domains
    widget.domains.setChecked(True)
    assert widget.config().domains
    mg = bicrystal()
    result = run(mg, PipelineConfig(domains=True), stop_after="lattice")
    widget.show_result(SimpleNamespace(result=result), "bi")
    labels = viewer.layers["bi domains (agent)"]
    assert labels.data.shape == mg.shape and set(np.unique(labels.data)) == {1, 2}
    assert [e["label"] for e in labels.metadata[DOMAINS_KEY]] == [1, 2]
    columns = viewer.layers["bi columns (agent)"]
    y0, y1, x0, x1 = result.to_dict()["input"]["roi"]
    world_px = (columns.data * PIXEL_A + np.asarray(columns.translate)) / PIXEL_A
    assert np.all((world_px >= [y0 - 1, x0 - 1]) & (world_px <= [y1, x1]))  # drawn over its own domain
    main = labels.data[tuple(np.clip(np.rint(world_px).astype(int), 0, np.array(mg.shape) - 1).T)]
    assert np.mean(main == 1) > 0.9
