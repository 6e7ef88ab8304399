"""Session files (``*.automat.json``): image, edited columns and result come back; bad files are
refused with one line."""

import json
from dataclasses import replace

import numpy as np
import pytest

from napari_automat.config import PipelineConfig
from napari_automat.io.datasets import sample_path
from napari_automat.io.session_file import (SessionColumns, SessionDocument, SessionImage, analysed_micrograph,
                                            load_image, read_session, restore_result, session_path, write_session)
from napari_automat.model import AutomatError


@pytest.fixture(scope="module")
def result():
    from napari_automat.pipeline import run

    return run(sample_path("srtio3"), PipelineConfig(energy_model="none", roi=(10, 150, 20, 170)))


def document(result, edited=False):
    columns = result.columns
    if edited:  # one point moved by hand, one added
        pos = columns.positions_px.copy()
        pos[0] += 1.5
        prov = list(columns.provenance)
        prov[0] = "moved"
        columns = replace(columns, positions_px=pos, provenance=prov)
        columns = columns.subset(list(range(columns.count)) + [0])
        columns.provenance[-1] = "added"
    return SessionDocument(SessionImage.of(result.micrograph, "sto"),
                           SessionColumns("sto columns", columns, tuple(result.origin_px), edited), result.to_dict())


def test_session_path_gets_its_ending(tmp_path):
    assert session_path(tmp_path / "a").name == "a.automat.json"
    assert session_path(tmp_path / "a.json").name == "a.automat.json"
    assert session_path(tmp_path / "a.automat.json").name == "a.automat.json"


def test_round_trip_restores_the_result(tmp_path, result):
    path = write_session(tmp_path / "run", document(result))
    assert path.name == "run.automat.json"
    doc = read_session(path)
    assert doc.image.roi == [10, 150, 20, 170] and doc.image.layer_name == "sto" and doc.image.frame is None
    full = load_image(doc.image)
    assert list(full.shape) == result.micrograph.metadata["full_shape"]
    mg = analysed_micrograph(doc.image, full)
    np.testing.assert_array_equal(mg.data, result.micrograph.data)
    back = restore_result(doc, mg)
    np.testing.assert_allclose(back.columns.positions_px, result.columns.positions_px)
    assert list(back.columns.provenance) == list(result.columns.provenance)
    assert back.columns_source == "detected"
    np.testing.assert_allclose(back.lattice.origin_px, result.lattice.origin_px, atol=1e-9)
    assert back.reconstruction.structure.composition.reduced_formula == "SrTiO3"
    assert [h.template_id for h in back.hits] == [h.template_id for h in result.hits]
    assert back.chosen_index == result.chosen_index
    # the verdict and the best candidate are the same; the hits come back without their 3D templates,
    # so the alike statement (which compares templates) may not
    assert back.decision.line().split(" (")[0] == result.decision.line().split(" (")[0]
    # the same bundle again
    out = back.save(tmp_path / "again")
    again = json.loads(out["result"].read_text())
    first = result.to_dict()
    assert again["input"]["path"] == first["input"]["path"] and again["input"]["roi"] == first["input"]["roi"]
    assert again["columns"] == first["columns"]
    np.testing.assert_allclose(again["lattice2d"]["origin_px"], first["lattice2d"]["origin_px"])
    assert again["structure"]["formula"] == first["structure"]["formula"]
    for key in ("spacegroup_number", "a", "b", "c"):  # the CIF text differs only in float round-off
        assert again["structure"][key] == pytest.approx(first["structure"][key], rel=1e-6)
    assert (tmp_path / "again" / "structure.cif").read_text().count("_cell_length_a") == 1


def test_edited_points_come_back_and_stale_structure_is_dropped(tmp_path, result):
    doc = read_session(write_session(tmp_path / "edited", document(result, edited=True)))
    assert doc.columns.edited_after_result
    assert doc.columns.columns.count == result.columns.count + 1
    assert doc.columns.columns.provenance[0] == "moved" and doc.columns.columns.provenance[-1] == "added"
    back = restore_result(doc, analysed_micrograph(doc.image, load_image(doc.image)))
    assert back.columns_source == "user" and back.columns.count == result.columns.count + 1
    assert back.reconstruction is None and back.lattice is None and back.hits  # candidates kept
    assert doc.result["structure"]["formula"]  # the document still shows what was made


def test_the_session_and_its_image_move_together(tmp_path, result):
    import shutil

    image = tmp_path / "a" / "sto.tif"
    image.parent.mkdir()
    shutil.copy(sample_path("srtio3"), image)
    mg = replace(result.micrograph, path=str(image))
    path = write_session(tmp_path / "a" / "s", SessionDocument(SessionImage.of(mg), None, None))
    shutil.move(tmp_path / "a", tmp_path / "b")
    doc = read_session(tmp_path / "b" / path.name)
    assert doc.image.path == str((tmp_path / "b" / "sto.tif").resolve())


def test_an_image_without_a_file_is_written_beside(tmp_path, result):
    mg = replace(result.micrograph, path=None)
    doc = SessionDocument(SessionImage.of(mg), None, None)
    path = write_session(tmp_path / "mem", doc, image=mg)
    tif = tmp_path / "mem.image.tif"
    assert tif.is_file() and read_session(path).image.path == str(tif.resolve())
    back = load_image(read_session(path).image)
    np.testing.assert_allclose(back.pixel_size_A, mg.pixel_size_A, rtol=1e-5)
    np.testing.assert_allclose(back.data, mg.data, rtol=1e-5)


def test_user_pixel_size_is_reapplied(tmp_path, result):
    from napari_automat.io.read import apply_pixel_size, read_micrograph

    mg = apply_pixel_size(read_micrograph(sample_path("srtio3")), 0.3)
    doc = read_session(write_session(tmp_path / "px", SessionDocument(SessionImage.of(mg), None, None)))
    assert doc.image.pixel_size_set_by_user
    assert load_image(doc.image).pixel_size_A == (0.3, 0.3)


def test_missing_image_gives_a_stand_in(tmp_path, result):
    doc = document(result)
    doc.image.path = str(tmp_path / "gone.tif")
    doc = read_session(write_session(tmp_path / "gone", doc))
    with pytest.raises(AutomatError, match="not there any more"):
        load_image(doc.image)
    back = restore_result(doc, analysed_micrograph(doc.image, None))
    assert back.image is None and back.columns.count == result.columns.count
    np.testing.assert_allclose(back.full_frame_columns().positions_px, result.full_frame_columns().positions_px)


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"), ("[]", "not a napari-automat session"), ('{"kind": "other"}', "not a napari-automat session"),
    ('{"kind": "napari-automat session", "version": 99}', "update napari-automat"),
    ('{"kind": "napari-automat session", "version": 1, "columns": {"name": "c"}}', "damaged"),
    ('{"kind": "napari-automat session", "version": 1, "image": {"path": null}}', "damaged"),
])
def test_bad_session_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.automat.json"
    path.write_text(text)
    with pytest.raises(AutomatError, match=message) as info:
        read_session(path)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(AutomatError, match="cannot read"):
        read_session(tmp_path / "none.automat.json")
