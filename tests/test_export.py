"""export_project: formats read back, fallback accounting, skipped / empty images."""

import json
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_wsss.evaluate import evaluate_project
from napari_wsss.export import export_project, fill_corrections, mask_relpath
from napari_wsss.store import Project

V = 255


@pytest.fixture
def project(tmp_path):
    """Background project (background, cat, dog), 3x4 images.

    ``a/one``: corrections in row 0, rw in row 1 (void elsewhere), crf everywhere.
    ``two``: crf only.  ``three``: nothing.  ``four``: skipped, crf only.
    """
    rng = np.random.default_rng(0)
    p = Project.create(tmp_path / "p.zarr", ["cat", "dog"], background=True)
    for image_id in ("a/one", "two", "three", "four"):
        p.add_image(image_id, rng.integers(0, 256, (3, 4, 3), dtype=np.uint8), ["cat"])
    corr = np.full((3, 4), V, np.uint8)
    corr[0] = [2, 2, 0, V]  # three painted pixels
    p.write_corrections("a/one", corr)
    rw = np.full((3, 4), V, np.uint8)
    rw[:2] = 1  # rw covers rows 0-1
    p.write_mask("a/one", "rw", rw, model_version="affinity-0001")
    p.write_mask("a/one", "crf", np.zeros((3, 4), np.uint8), model_version="classifier-0002")
    p.write_mask("two", "crf", np.array([[0, 1, 2, V]] * 3, np.uint8), model_version="classifier-0002")
    p.write_mask("four", "crf", np.ones((3, 4), np.uint8), model_version="classifier-0002")
    p.set_status("four", "skipped")
    return p


# row 0: corrections 2 2 0 + rw 1; row 1: rw; row 2: crf (0)
ONE = np.array([[2, 2, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], np.uint8)


def test_fill_corrections_per_pixel_order():
    corr = np.array([[3, V, V, V]], np.uint8)
    props = {"rw": np.array([[1, 1, V, V]], np.uint8), "crf": np.array([[2, 2, 2, V]], np.uint8)}
    mask, pixels = fill_corrections(corr, props, fallback=("segmenter", "rw", "crf"))
    assert mask.tolist() == [[3, 1, 2, V]]
    assert pixels == {"corrections": 1, "rw": 1, "crf": 1, "void": 1}
    mask, pixels = fill_corrections(corr, props, fallback=("crf", "rw"))
    assert mask.tolist() == [[3, 2, 2, V]] and pixels == {"corrections": 1, "crf": 2, "rw": 0, "void": 1}


def test_painted_ignore_is_void_and_never_filled(tmp_path):
    # 254 = the annotator painted "ignore": void in the output even where proposals say a class
    corr = np.array([[3, 254, V, 254]], np.uint8)
    props = {"crf": np.array([[2, 2, 2, V]], np.uint8)}
    mask, pixels = fill_corrections(corr, props, fallback=("crf",))
    assert mask.tolist() == [[3, V, 2, V]]
    assert pixels == {"corrections": 1, "ignored": 2, "crf": 1, "void": 0}
    p = Project.create(tmp_path / "p.zarr", ["cat", "dog"], background=True)
    p.add_image("x", np.zeros((2, 3, 3), np.uint8), ["cat"])
    p.write_corrections("x", np.array([[254, 254, V], [2, V, V]], np.uint8))
    p.write_mask("x", "crf", np.ones((2, 3), np.uint8), model_version="v")
    rep = export_project(p, tmp_path / "out", format="png")
    assert np.asarray(Image.open(tmp_path / "out" / "x.png")).tolist() == [[V, V, 1], [2, 1, 1]]
    assert rep.pixels["x"] == {"corrections": 1, "ignored": 2, "crf": 3, "void": 0}


def test_progress_callback_reports_and_can_stop(project, tmp_path):
    calls = []
    export_project(project, tmp_path / "all", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]

    def stop_after_one(done, total):
        if done == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        export_project(project, tmp_path / "stopped", progress=stop_after_one)
    written = sorted(p.relative_to(tmp_path / "stopped").as_posix()
                     for p in (tmp_path / "stopped").rglob("*") if p.is_file())
    assert written == ["a/one.png"]  # the first image only; no export.json / classes files


def test_png_export_palette_classes_and_accounting(project, tmp_path):
    out = tmp_path / "out"
    rep = export_project(project, out)
    assert list(rep.files) == ["a/one", "two"]
    assert rep.skipped == ["four"] and list(rep.missing) == ["three"]
    assert "no corrections and no proposal" in rep.missing["three"]
    im = Image.open(out / "a" / "one.png")
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), ONE)
    pal = np.array(im.getpalette()).reshape(-1, 3)
    # background black, cat and dog the first two Glasbey colours, void cream
    assert pal[[0, 1, 2, 255]].tolist() == [[0, 0, 0], [215, 0, 0], [140, 60, 255], [224, 224, 192]]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "two.png")), [[0, 1, 2, V]] * 3)

    assert (out / "classes.txt").read_text().splitlines() == ["background", "cat", "dog"]
    classes = json.loads((out / "classes.json").read_text())
    assert classes["void"] == 255 and classes["background"] == 0
    assert [(c["name"], c["color"]) for c in classes["classes"]] == [
        ("background", [0, 0, 0]), ("cat", [215, 0, 0]), ("dog", [140, 60, 255])]

    meta = json.loads((out / "export.json").read_text())
    one = meta["images"]["a/one"]
    assert one["file"] == "a/one.png"
    assert one["pixels"] == {"corrections": 3, "rw": 5, "crf": 4, "void": 0}
    assert one["model_versions"] == {"rw": "affinity-0001", "crf": "classifier-0002"}
    assert meta["images"]["two"]["pixels"] == {"corrections": 0, "crf": 9, "void": 3}
    assert meta["missing"] == {"three": rep.missing["three"]} and meta["skipped"] == ["four"]
    assert meta["totals"] == {"corrections": 3, "rw": 5, "crf": 13, "void": 3}
    assert meta["fallback"] == ["segmenter", "rw", "crf", "cam"]
    assert "three: no corrections" in str(rep)


def test_include_skipped_and_configurable_fallback(project, tmp_path):
    rep = export_project(project, tmp_path / "o", include_skipped=True, fallback=("crf",), format="tif")
    assert list(rep.files) == ["a/one", "two", "four"] and rep.skipped == []
    got = tifffile.imread(tmp_path / "o" / "a" / "one.tif")
    assert got.dtype == np.uint8
    # crf (all background) now fills everything the annotator left
    np.testing.assert_array_equal(got, [[2, 2, 0, 0], [0] * 4, [0] * 4])
    assert rep.pixels["a/one"] == {"corrections": 3, "crf": 9, "void": 0}
    with tifffile.TiffFile(tmp_path / "o" / "four.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE
        np.testing.assert_array_equal(tif.asarray(), np.ones((3, 4)))


def test_stage_source_reports_images_without_it(project, tmp_path):
    rep = export_project(project, tmp_path / "rw", source="rw")
    assert list(rep.files) == ["a/one"]
    assert set(rep.missing) == {"two", "three"}
    assert "no 'rw' mask (stored stages: crf)" == rep.missing["two"]
    rw = np.asarray(Image.open(tmp_path / "rw" / "a" / "one.png"))
    assert rw.tolist() == [[1] * 4, [1] * 4, [V] * 4]
    assert rep.pixels["a/one"] == {"rw": 8, "void": 4}


def test_ome_zarr_labels_with_class_metadata(project, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    rep = export_project(project, tmp_path / "z", format="ome-zarr", ids=["a/one"])
    path = tmp_path / "z" / "a" / "one.ome.zarr"
    assert rep.files == {"a/one": path}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes = list(Reader(parse_url(str(path)))())
    image = nodes[0]
    np.testing.assert_array_equal(np.asarray(image.data[0]), np.moveaxis(project.image("a/one"), -1, 0))
    label = next(n for n in nodes if n.load(Label) is not None)
    assert label.metadata["name"] == "corrected"
    np.testing.assert_array_equal(np.asarray(label.data[0]), ONE)
    props = label.metadata["properties"]
    assert {v: p["class"] for v, p in props.items()} == {0: "background", 1: "cat", 2: "dog", 255: "void"}
    # colours as RGBA floats: cat (215, 0, 0), void transparent
    assert label.metadata["color"][1] == pytest.approx([215 / 255, 0, 0, 1])
    assert label.metadata["color"][255][3] == 0


def test_unsafe_ids_stay_inside_the_export(tmp_path):
    p = Project.create(tmp_path / "p.zarr", ["x"])
    p.add_image("../evil", np.zeros((2, 2), np.uint8), ["x"])
    p.write_mask("../evil", "cam", np.zeros((2, 2), np.uint8), model_version="v")
    rep = export_project(p, tmp_path / "out")
    written = rep.files["../evil"]
    assert written.resolve().parent == (tmp_path / "out").resolve()
    assert written.name.startswith("evil.") and mask_relpath("dir/ok name") == "dir/ok name"
    assert not (tmp_path / "evil.png").exists()


def test_bad_options_name_valid_choices(project, tmp_path):
    with pytest.raises(ValueError, match="unknown export source 'crff'; valid: corrected, cam, crf"):
        export_project(project, tmp_path / "o", source="crff")
    with pytest.raises(ValueError, match="unknown export format 'jpg'; valid: png, tif, ome-zarr"):
        export_project(project, tmp_path / "o", format="jpg")
    with pytest.raises(ValueError, match=r"unknown fallback stage\(s\) \['crt'\]"):
        export_project(project, tmp_path / "o", fallback=("crt",))
    with pytest.raises(KeyError, match="nope"):
        export_project(project, tmp_path / "o", ids=["nope"])


def test_export_is_valid_ground_truth_for_evaluate(project, tmp_path):
    """The export layout is the ground-truth layout: corrected vs its own export is perfect."""
    export_project(project, tmp_path / "gt", ids=["a/one"])
    with pytest.warns(UserWarning, match="no ground truth for 3"):
        rep = evaluate_project(project, tmp_path / "gt", stages=["corrected", "crf"])
    assert rep.evaluated == ["a/one"]
    assert rep.stages["corrected"].scores.pixel_accuracy == 1.0
    # crf (all background) against ONE: background IoU 5/12 (5 right, 7 wrongly background)
    assert rep.stages["crf"].scores.iou[0] == pytest.approx(5 / 12)


def test_reviewed_only_and_review_counts(project, tmp_path, capsys):
    """The report says which masks an annotator reviewed and which are proposals only;
    ``reviewed_only`` (CLI ``--reviewed-only``) exports the reviewed ones alone."""
    from napari_wsss.cli import main

    project.set_status("a/one", "corrected")
    project.set_status("two", "prelabelled")
    rep = export_project(project, tmp_path / "all")
    assert rep.reviewed == ["a/one"] and rep.unreviewed == ["two"]
    assert "1 reviewed (accepted or corrected), 1 proposals only (never reviewed)" in str(rep)
    meta = json.loads((tmp_path / "all" / "export.json").read_text())
    assert (meta["from_review"], meta["from_proposals_only"], meta["reviewed_only"]) == (1, 1, False)

    rep = export_project(project, tmp_path / "rev", reviewed_only=True)
    assert list(rep.files) == ["a/one"] and rep.not_reviewed == ["two", "three"]
    assert not (tmp_path / "rev" / "two.png").exists()
    assert main(["export", str(project.path), "--out", str(tmp_path / "cli"), "--reviewed-only"]) == 0
    out = capsys.readouterr().out
    assert "exported 1 mask(s)" in out and "left out 2 unreviewed image(s)" in out
    assert sorted(p.name for p in (tmp_path / "cli").rglob("*.png")) == ["one.png"]
