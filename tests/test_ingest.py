"""Ingest: CSV and folder-per-class layouts, bad inputs reported per file, nothing lost."""

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_wsss.ingest import ingest_folder
from napari_wsss.store import Project


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _write_images(folder, rng):
    """png RGB, jpg, 16-bit tif, grayscale png, RGBA png; returns id -> expected array."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "rgb": rng.integers(0, 256, (12, 10, 3), dtype=np.uint8),
        "gray": rng.integers(0, 256, (8, 9), dtype=np.uint8),
        "rgba": rng.integers(0, 256, (7, 7, 4), dtype=np.uint8),
        "deep": rng.integers(0, 65536, (6, 11), dtype=np.uint16),
    }
    for name in ("rgb", "gray", "rgba"):
        Image.fromarray(arrays[name]).save(folder / f"{name}.png")
    tifffile.imwrite(folder / "deep.tif", arrays["deep"])
    photo = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    Image.fromarray(np.stack([photo] * 3, -1)).save(folder / "photo.jpg", quality=95)
    arrays["photo"] = np.asarray(Image.open(folder / "photo.jpg"))
    return arrays


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_csv_with_class_columns_creates_project(tmp_path, rng):
    arrays = _write_images(tmp_path / "imgs", rng)
    table = _csv(tmp_path / "labels.csv", ["id", "cat", "dog", "sky"], [
        ["rgb", 1, 0, 1], ["gray", 0, 1, 0], ["rgba", 1, 1, 0], ["deep", 0, 0, 1], ["photo", 1, 0, 0],
    ])
    report = ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs", table, background=True)
    assert report.ok and report.warnings == []
    assert report.added == ["rgb", "gray", "rgba", "deep", "photo"]
    p = Project.open(tmp_path / "p.zarr", mode="r")
    assert p.classes == ["background", "cat", "dog", "sky"]
    expected = {"rgb": [1, 3], "gray": [2], "rgba": [1, 2], "deep": [3], "photo": [1]}
    for image_id, labels in expected.items():
        assert p.image_labels(image_id).tolist() == labels
        got = p.image(image_id)
        assert got.dtype == arrays[image_id].dtype and np.array_equal(got, arrays[image_id])
    assert p.image_info("deep")["source"] == str(tmp_path / "imgs" / "deep.tif")


def test_csv_with_labels_column_and_filenames(tmp_path, rng):
    _write_images(tmp_path / "imgs", rng)
    table = _csv(tmp_path / "l.csv", ["filename", "labels"], [
        ["rgb.png", "sky;cat"], ["deep.tif", " cat "], ["gray.png", ""],
    ])
    report = ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs", table)
    p = report.project
    assert p.classes == ["sky", "cat"]  # order of first appearance
    assert p.image_labels("rgb").tolist() == [0, 1] and p.image_labels("deep").tolist() == [1]
    assert p.image_labels("gray").tolist() == []
    warned = {Path(w.where).name for w in report.warnings}
    assert warned == {"gray.png", "rgba.png", "photo.jpg"}  # empty labels; two not in the CSV
    assert any("no labels in" in w.message and "not added" in w.message for w in report.warnings)
    assert sorted(report.added) == ["deep", "gray", "rgb"]


def test_folder_per_class(tmp_path, rng):
    a = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    for cls, name, img in [("cat", "a.png", a), ("dog", "a.png", a), ("dog", "b.png", b)]:
        (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs" / cls / name)
    Image.fromarray(b).save(tmp_path / "imgs" / "loose.png")
    report = ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs")
    p = report.project
    assert p.classes == ["cat", "dog"] and sorted(p.image_ids()) == ["a", "b"]
    assert p.image_labels("a").tolist() == [0, 1] and p.image_labels("b").tolist() == [1]
    assert np.array_equal(p.image("a"), a)
    assert [Path(w.where).name for w in report.warnings] == ["loose.png"]
    assert "not inside a class folder" in report.warnings[0].message
    # the same name with different pixels in two class folders is an error, not two labels
    Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "cat" / "c.png")
    Image.fromarray(a).save(tmp_path / "imgs" / "dog" / "c.png")
    report = ingest_folder(p, tmp_path / "imgs")
    assert "c" not in p.image_ids()
    assert any("dog/c.png" in e.where and "different pixels" in e.message for e in report.errors)
    assert sorted(report.unchanged) == ["a", "b"] and report.added == []


@pytest.fixture
def annotated(tmp_path, rng):
    """A project with one ingested image that has a mask, corrections and a status."""
    _write_images(tmp_path / "imgs", rng)
    table = _csv(tmp_path / "l.csv", ["id", "cat", "dog"], [["rgb", 1, 0]])
    p = ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs", table).project
    mask = np.zeros((12, 10), np.uint8)
    p.write_mask("rgb", "crf", mask, model_version="classifier-0001")
    corr = np.full((12, 10), 255, np.uint8)
    corr[1:3, 1:3] = 1
    p.write_corrections("rgb", corr)
    p.set_status("rgb", "corrected")
    return p, mask, corr


def _assert_intact(p, mask, corr, tmp_path):
    p = Project.open(p.path, mode="r")
    assert p.image_labels("rgb").tolist() == [0]
    assert np.array_equal(p.read_mask("rgb", "crf"), mask)
    assert np.array_equal(p.read_corrections("rgb"), corr)
    assert p.status("rgb").status == "corrected"
    assert np.array_equal(p.image("rgb"), np.asarray(Image.open(tmp_path / "imgs" / "rgb.png")))


def test_bad_rows_are_reported_and_earlier_data_kept(tmp_path, annotated):
    p, mask, corr = annotated
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    table = _csv(tmp_path / "bad.csv", ["id", "labels"], [
        ["rgb", "cat"],          # already there: unchanged
        ["gray", "cat;horse"],   # unknown class
        ["rgba", "dog"], ["rgba", "cat"],  # duplicated id
        ["ghost", "dog"],        # no image file
        ["broken", "dog"],       # unreadable
        ["deep", "dog"],         # fine
    ])
    report = ingest_folder(p, tmp_path / "imgs", table)
    assert report.added == ["deep"] and report.unchanged == ["rgb"]
    errors = [str(e) for e in report.errors]
    assert any("bad.csv:3" in e and "unknown class names ['horse']" in e and "valid: cat, dog" in e for e in errors)
    assert any("id 'rgba' appears on lines [4, 5]" in e for e in errors)
    assert any("broken.png: unreadable" in e and "truncated or corrupt" in e for e in errors)
    warnings = [str(w) for w in report.warnings]
    assert any("bad.csv:6" in w and "'ghost' but no image file" in w for w in warnings)
    assert any("photo.jpg: no labels in" in w for w in warnings)
    assert sorted(report.project.image_ids()) == ["deep", "rgb"]
    _assert_intact(p, mask, corr, tmp_path)


def test_changed_file_and_labels_are_reported_not_replaced(tmp_path, annotated, rng):
    p, mask, corr = annotated
    old = np.asarray(Image.open(tmp_path / "imgs" / "rgb.png"))
    Image.fromarray(255 - old).save(tmp_path / "imgs" / "rgb.png")
    table = _csv(tmp_path / "l2.csv", ["id", "cat", "dog"], [["rgb", 0, 1]])
    report = ingest_folder(p.path, tmp_path / "imgs", table)
    assert report.changed == ["rgb"] and report.added == []
    msgs = [str(w) for w in report.warnings]
    assert any("rgb.png: pixels differ from the stored image 'rgb'" in m and "kept" in m for m in msgs)
    assert any("labels of 'rgb' in the project are ['cat'], the input says ['dog']; kept" in m for m in msgs)
    Image.fromarray(old).save(tmp_path / "imgs" / "rgb.png")
    _assert_intact(p, mask, corr, tmp_path)
    report = ingest_folder(p.path, tmp_path / "imgs", table, update_labels=True)
    assert Project.open(p.path).image_labels("rgb").tolist() == [1]
    assert np.array_equal(Project.open(p.path).read_corrections("rgb"), corr)


def test_whole_input_errors_raise_before_writing(tmp_path, annotated):
    p, mask, corr = annotated
    with pytest.raises(FileNotFoundError, match="labels CSV .*nope.csv does not exist"):
        ingest_folder(p, tmp_path / "imgs", tmp_path / "nope.csv")
    bad = _csv(tmp_path / "b.csv", ["name", "cat"], [["rgb", 1]])
    with pytest.raises(ValueError, match="first column must be 'id' or 'filename', got 'name'"):
        ingest_folder(p, tmp_path / "imgs", bad)
    with pytest.raises(ValueError, match=r"classes \['cat'\] differ from the project's \['cat', 'dog'\]"):
        ingest_folder(p, tmp_path / "imgs", tmp_path / "l.csv", classes=["cat"])
    with pytest.raises(ValueError, match="has no class sub-folders: pass a labels CSV"):
        ingest_folder(p, tmp_path / "imgs")
    values = _csv(tmp_path / "v.csv", ["id", "cat", "dog", "horse"], [["gray", 1, 2, 0], ["deep", 0, 0, 1]])
    report = ingest_folder(p, tmp_path / "imgs", values)
    assert any("v.csv:2" in str(e) and "must be 0 or 1" in str(e) for e in report.errors)
    assert any("unknown classes ['horse']" in str(e) for e in report.errors)
    assert report.added == []
    _assert_intact(p, mask, corr, tmp_path)


@pytest.mark.data
def test_msrc_subset(tmp_path, wsss_data):
    MSRC = wsss_data / "msrc_v2"
    with open(MSRC / "image_labels.csv") as f:
        rows = list(csv.reader(f))
    header, picked = rows[0], rows[1:][::150][:4]
    table = _csv(tmp_path / "subset.csv", header, picked)
    classes = (MSRC / "classes.txt").read_text().split()
    report = ingest_folder(tmp_path / "msrc.zarr", MSRC / "images", table, classes=classes)
    p = report.project
    assert report.ok and report.added == [r[0] for r in picked]
    n_files = len(list((MSRC / "images").glob("*.png")))
    assert len(report.warnings) == n_files - 4  # every other image: "no labels in subset.csv"
    for row in picked:
        assert p.image_labels(row[0]).tolist() == [i for i, v in enumerate(row[1:]) if v == "1"]
        assert np.array_equal(p.image(row[0]), np.asarray(Image.open(MSRC / "images" / f"{row[0]}.png")))


def _null_table(tmp_path, rng):
    _write_images(tmp_path / "imgs", rng)
    return _csv(tmp_path / "null.csv", ["id", "null", "cat", "dog"], [
        ["rgb", 1, 1, 0], ["gray", 1, 0, 1], ["photo", 0, 1, 1],
    ])


def test_background_column_named_null_is_never_a_silent_foreground_class(tmp_path, rng):
    table = _null_table(tmp_path, rng)
    with pytest.raises(ValueError, match=r"class 'null', the usual name of background: pass "
                                         r"--background-class null"):
        ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs", table)
    assert not (tmp_path / "p.zarr").exists()
    for kw in (dict(background_class="null"), dict(background=True)):  # named, or found by its name
        path = tmp_path / f"{len(kw)}{sorted(kw)[0]}.zarr"
        report = ingest_folder(path, tmp_path / "imgs", table, **kw)
        p = report.project
        # the table's column order is kept: cat / dog stay classes 1 / 2 as in a mask with 0 = null
        assert report.ok and p.classes == ["background", "cat", "dog"] and p.background == 0
        assert [p.image_labels(i).tolist() for i in ("rgb", "gray", "photo")] == [[1], [2], [1, 2]]
        assert "class 'null' is the project's class 0 'background'" in str(report)


def test_background_class_errors_name_the_problem(tmp_path, rng):
    table = _null_table(tmp_path, rng)
    with pytest.raises(ValueError, match=r"no class 'void' to use as background .*classes: null, cat, dog"):
        ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs", table, background_class="void")
    two = _csv(tmp_path / "two.csv", ["id", "null", "background", "cat"], [["rgb", 1, 1, 1]])
    with pytest.raises(ValueError, match=r"\['null', 'background'\] all look like background"):
        ingest_folder(tmp_path / "q.zarr", tmp_path / "imgs", two, background=True)
    plain = _csv(tmp_path / "plain.csv", ["id", "cat", "dog"], [["rgb", 1, 0]])
    report = ingest_folder(tmp_path / "r.zarr", tmp_path / "imgs", plain, background=True)
    assert "background: class 0 'background' (no background column" in report.background_note
    report = ingest_folder(tmp_path / "s.zarr", tmp_path / "imgs", plain)
    assert report.background_note.startswith("no background class")
    # an existing project with background maps the table's background column onto it
    again = ingest_folder(tmp_path / "r.zarr", tmp_path / "imgs", table, background_class="null")
    assert again.errors == [] and "class 'null' is the project's class 0" in again.background_note
    with pytest.raises(ValueError, match="has no background class; --background-class null cannot apply"):
        ingest_folder(tmp_path / "s.zarr", tmp_path / "imgs", table, background_class="null")
