"""Project store: API round trips, validation errors, layout readable by plain zarr."""

import re
from datetime import datetime, timezone

import numpy as np
import pytest
import zarr

from napari_wsss.store import Project, ProjectError, ReadOnlyError, Status

CLASSES = ["cat", "dog", "sky"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def project(tmp_path, rng):
    p = Project.create(tmp_path / "p.zarr", CLASSES, background=True)
    p.add_image("img0", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), ["cat"])
    return p


def test_create_open_roundtrip(tmp_path):
    p = Project.create(tmp_path / "p.zarr", CLASSES, background=True)
    assert p.classes == ["background", "cat", "dog", "sky"]
    assert p.background == 0 and p.foreground == [1, 2, 3]
    q = Project.open(tmp_path / "p.zarr", mode="r")
    assert q.classes == p.classes and q.background == 0 and q.image_ids() == []
    n = Project.create(tmp_path / "n.zarr", CLASSES)
    assert n.classes == CLASSES and n.background is None and n.foreground == [0, 1, 2]
    with pytest.raises(FileExistsError, match="p.zarr"):
        Project.create(tmp_path / "p.zarr", CLASSES)


def test_create_rejects_bad_classes(tmp_path):
    with pytest.raises(ValueError, match="background=True"):
        Project.create(tmp_path / "a.zarr", ["background", "cat"])
    with pytest.raises(ValueError, match=r"duplicated class names \['cat'\]"):
        Project.create(tmp_path / "b.zarr", ["cat", "dog", "cat"])
    with pytest.raises(ValueError, match="at least one foreground"):
        Project.create(tmp_path / "c.zarr", [], background=True)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    # 254 (painted "ignore" in corrections) and 255 (unlabeled) are reserved: 254 classes at most
    names = [f"c{i}" for i in range(255)]
    with pytest.raises(ValueError, match="at most 254 classes .*254 and 255 are reserved.*got 255"):
        Project.create(tmp_path / "d.zarr", names)
    with pytest.raises(ValueError, match="at most 254 classes .*got 255"):
        Project.create(tmp_path / "e.zarr", names[:254], background=True)
    assert Project.create(tmp_path / "f.zarr", names[:254]).classes[-1] == "c253"


def test_painted_ignore_only_in_corrections(tmp_path):
    p = Project.create(tmp_path / "p.zarr", ["cat", "dog"])
    p.add_image("x", np.zeros((2, 2), np.uint8), ["cat"])
    corr = np.array([[0, 254], [255, 1]], np.uint8)
    p.write_corrections("x", corr)
    np.testing.assert_array_equal(Project.open(p.path, mode="r").read_corrections("x"), corr)
    with pytest.raises(ValueError, match=r"crf mask holds values \[254\].*0..1 nor 255"):
        p.write_mask("x", "crf", corr, model_version="v")
    with pytest.raises(ValueError, match=r"corrections holds values \[7\].*254 \(painted ignore\)"):
        p.write_corrections("x", np.array([[0, 7], [255, 1]], np.uint8))


def test_images_labels_dtypes_and_order(tmp_path, rng):
    p = Project.create(tmp_path / "p.zarr", CLASSES)
    images = {
        "rgb": rng.integers(0, 256, (7, 9, 3), dtype=np.uint8),
        "gray16": rng.integers(0, 65536, (5, 4), dtype=np.uint16),
        "rgba": rng.integers(0, 256, (6, 6, 4), dtype=np.uint8),
        "float": rng.random((3, 8)).astype(np.float32),
    }
    for i, (name, img) in enumerate(images.items()):
        p.add_image(name, img, [CLASSES[i % 3], (i + 1) % 3])
    assert p.image_ids() == list(images)
    q = Project.open(tmp_path / "p.zarr", mode="r")
    for name, img in images.items():
        got = q.image(name)
        assert got.dtype == img.dtype and np.array_equal(got, img)
    # labels given as names and indices come back sorted, unique, int64
    assert q.image_labels("rgb").tolist() == [0, 1]
    assert q.image_labels("gray16").tolist() == [1, 2]
    assert q.image_labels("rgb").dtype == np.int64
    p.set_image_labels("rgb", ["sky", "sky", 0])
    assert q.image_labels("rgb").tolist() == [0, 2]


def test_add_image_errors(project, rng):
    img = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="'img0' is already in project"):
        project.add_image("img0", img, [1])
    with pytest.raises(ValueError, match="unknown class name 'horse'; valid: background, cat, dog, sky"):
        project.add_image("new", img, ["horse"])
    with pytest.raises(ValueError, match="background class is implied"):
        project.add_image("new", img, [0])
    with pytest.raises(ValueError, match=r"class index 9 out of range 0..3"):
        project.add_image("new", img, [9])
    with pytest.raises(ValueError, match=r"got \(4, 4, 7\)"):
        project.add_image("new", np.zeros((4, 4, 7), np.uint8), [1])
    with pytest.raises(KeyError, match="no image 'nope'"):
        project.image("nope")
    assert project.image_ids() == ["img0"]


def test_awkward_ids_map_to_safe_distinct_keys(tmp_path, rng):
    p = Project.create(tmp_path / "p.zarr", CLASSES)
    ids = ["a/b.png", "a_b.png", "..", "__init__", "Case", "case", "ünï cödé", "x" * 300, "a\\b:c?"]
    imgs = {i: rng.integers(0, 256, (3, 3), dtype=np.uint8) for i in ids}
    for i in ids:
        p.add_image(i, imgs[i], [0])
    q = Project.open(tmp_path / "p.zarr", mode="r")
    assert q.image_ids() == ids
    for i in ids:
        assert np.array_equal(q.image(i), imgs[i])
    keys = [d.name for d in (tmp_path / "p.zarr" / "images").iterdir() if d.is_dir()]
    assert len(keys) == len(ids)
    assert len({k.lower() for k in keys}) == len(ids)  # safe on case-insensitive file systems
    for k in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", k) and not k.startswith("__")
        assert len(k) <= 120
    assert (tmp_path / "p.zarr" / "images" / "Case").is_dir()  # plain ids are kept readable


def test_masks_roundtrip_and_validation(project, rng):
    mask = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    mask[0, :5] = 255
    assert project.read_mask("img0", "crf") is None and project.mask_stages("img0") == []
    project.write_mask("img0", "crf", mask, model_version="classifier-0001")
    project.write_mask("img0", "cam", mask.astype(np.int64), model_version="imagenet:mobilenet_v2")
    got = project.read_mask("img0", "crf")
    assert got.dtype == np.uint8 and np.array_equal(got, mask)
    assert project.mask_stages("img0") == ["crf", "cam"]
    assert project.array_info("img0", "mask/cam").model_version == "imagenet:mobilenet_v2"
    with pytest.raises(ValueError, match=r"image's shape \(20, 30\), got \(30, 20\)"):
        project.write_mask("img0", "crf", mask.T, model_version="x")
    bad = mask.copy()
    bad[3, 3] = 7
    with pytest.raises(ValueError, match=r"values \[7\].*0..3 nor 255"):
        project.write_mask("img0", "crf", bad, model_version="x")
    with pytest.raises(ValueError, match="unknown mask stage 'dcrf'; valid: cam, crf, rw, segmenter, explainer"):
        project.write_mask("img0", "dcrf", mask, model_version="x")
    assert np.array_equal(project.read_mask("img0", "crf"), mask)  # failed writes changed nothing


def test_rewrite_replaces_and_collects_old_array(project, rng):
    folder = project.path / "images" / "img0"
    for k in (1, 3, 2):
        cams = rng.random((k, 4 * k, 5)).astype(np.float32)
        project.write_cams("img0", "gradcam++", cams, list(range(1, k + 1)), model_version=f"v{k}")
        got, classes = project.read_cams("img0", "gradcam++")
        assert np.array_equal(got, cams) and classes.tolist() == list(range(1, k + 1))
        assert len([d for d in folder.iterdir() if d.name.startswith("cam-")]) == 1
    assert project.array_info("img0", "cam/gradcam++").model_version == "v2"
    assert project.cam_methods("img0") == ["gradcam++"]
    project.write_cams("img0", "layercam", np.zeros((0, 4, 4)), [], model_version="v")
    assert project.read_cams("img0", "layercam")[0].shape == (0, 4, 4)
    with pytest.raises(ValueError, match="2 CAM slices but 1 class indices"):
        project.write_cams("img0", "gradcam", np.zeros((2, 4, 4)), [1], model_version="v")
    with pytest.raises(ValueError, match="invalid CAM method name 'grad/cam'"):
        project.write_cams("img0", "grad/cam", np.zeros((1, 4, 4)), [1], model_version="v")
    assert project.read_cams("img0", "gradcam") is None


def test_corrections_default_and_roundtrip(project):
    corr = project.read_corrections("img0")
    assert corr.shape == (20, 30) and corr.dtype == np.uint8 and (corr == 255).all()
    corr[2:5, 3:4] = 2
    project.write_corrections("img0", corr)
    back = project.read_corrections("img0")
    assert np.array_equal(back, corr) and (back == 2).sum() == 3


def test_status(project):
    st = project.status("img0")
    assert st.status == "new" and st.model_version is None
    project.set_status("img0", "prelabelled", model_version="classifier-0002")
    st = project.status("img0")
    assert isinstance(st, Status) and (st.status, st.model_version) == ("prelabelled", "classifier-0002")
    t = datetime.fromisoformat(st.time)
    assert t.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - t).total_seconds()) < 60
    with pytest.raises(ValueError, match="unknown status 'done'; valid: new, prelabelled, accepted, corrected, skipped"):
        project.set_status("img0", "done")


def test_load_record(project):
    mask = np.ones((20, 30), np.uint8)
    project.write_mask("img0", "rw", mask, model_version="affinity-0001")
    rec = project.load("img0")
    assert np.array_equal(rec.image, project.image("img0"))
    assert rec.labels.tolist() == [1] and list(rec.masks) == ["rw"]
    assert np.array_equal(rec.masks["rw"], mask) and (rec.corrections == 255).all()
    assert rec.status.status == "new"


def test_read_only_refuses_every_write(project, rng):
    project.write_mask("img0", "crf", np.ones((20, 30), np.uint8), model_version="v")
    ro = Project.open(project.path, mode="r")
    writes = [
        lambda: ro.add_image("b", np.zeros((2, 2), np.uint8), [1]),
        lambda: ro.set_image_labels("img0", [2]),
        lambda: ro.write_mask("img0", "crf", np.zeros((20, 30), np.uint8), model_version="v"),
        lambda: ro.write_cams("img0", "gradcam", np.zeros((1, 2, 2)), [1], model_version="v"),
        lambda: ro.write_corrections("img0", np.zeros((20, 30), np.uint8)),
        lambda: ro.set_status("img0", "accepted"),
        lambda: ro.save_checkpoint("classifier", {"epoch": 1}),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyError, match="open read-only.*mode='r\\+'"):
            write()
    assert ro.image_ids() == ["img0"] and ro.image_labels("img0").tolist() == [1]
    assert (ro.read_mask("img0", "crf") == 1).all() and ro.status("img0").status == "new"
    assert ro.cam_methods("img0") == [] and ro.latest_checkpoint("classifier") is None


def _set_schema(path, version):
    import json

    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["napari_wsss"]["schema_version"] = version
    (path / "zarr.json").write_text(json.dumps(meta))


def test_schema_versions(project, tmp_path):
    _set_schema(project.path, 2)
    with pytest.raises(ProjectError, match="schema version 2.*up to 1: upgrade napari-wsss"):
        Project.open(project.path)
    _set_schema(project.path, 0)
    with pytest.raises(ProjectError, match="schema version 0; this napari-wsss reads version 1 and has no migration from version 0 to 1"):
        Project.open(project.path, mode="r")
    _set_schema(project.path, "1")
    with pytest.raises(ProjectError, match="invalid schema_version '1'"):
        Project.open(project.path)
    _set_schema(project.path, 1)
    assert Project.open(project.path).image_ids() == ["img0"]
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(ProjectError, match="not a napari-wsss project"):
        Project.open(tmp_path / "plain.zarr")
    with pytest.raises(FileNotFoundError, match="no project directory"):
        Project.open(tmp_path / "missing.zarr")


def test_plain_zarr_can_read_the_layout(project, rng):
    mask = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    project.write_mask("img0", "crf", mask, model_version="classifier-0001")
    root = zarr.open(str(project.path), mode="r")
    meta = root.attrs["napari_wsss"]
    assert meta["schema_version"] == 1 and meta["classes"] == project.classes
    (image_id, key), = root["images"].attrs["napari_wsss"]["index"]
    group = root["images"][key]
    pointers = group.attrs["napari_wsss"]["arrays"]
    assert np.array_equal(group[pointers["mask/crf"]][:], mask)
    assert np.array_equal(group[pointers["image"]][:], project.image(image_id))
    assert group[pointers["mask/crf"]].attrs["napari_wsss"]["model_version"] == "classifier-0001"


def test_checkpoints(project):
    import torch

    from napari_wsss.store._checkpoints import load_checkpoint

    assert project.latest_checkpoint("classifier") is None
    state = {"model": {"w": torch.arange(3.0)}, "classes": project.classes, "epoch": 1}
    v1 = project.save_checkpoint("classifier", state)
    # a save killed after mkdir (no zarr.json) is ignored and its number not reused
    (project.path / "models" / "classifier" / "classifier-0002").mkdir()
    v2 = project.save_checkpoint("classifier", {**state, "epoch": 7})
    assert (v1, v2) == ("classifier-0001", "classifier-0003")
    assert project.checkpoints("classifier") == [v1, v2]
    assert project.latest_checkpoint("classifier") == project.checkpoint_path(v2)
    assert project.load_checkpoint("classifier")["epoch"] == 7
    assert torch.equal(project.load_checkpoint(v1)["model"]["w"], torch.arange(3.0))
    with pytest.raises(ValueError, match=r"differ from the project's \['background'"):
        project.save_checkpoint("classifier", {**state, "classes": ["a", "b"]})
    with pytest.raises(ValueError, match="unknown checkpoint stage 'cls'; valid: classifier, explainer, affinity, segmenter"):
        project.save_checkpoint("cls", state)
    other = Project.create(project.path.parent / "o.zarr", ["x"], background=True)
    with pytest.raises(ValueError, match=r"trained on classes \['background', 'cat'.*has \['background', 'x'\]"):
        load_checkpoint(project.checkpoint_path(v1), other.classes)


def test_second_instance_sees_new_images(project, rng):
    reader = Project.open(project.path, mode="r")
    assert reader.image_ids() == ["img0"]
    project.add_image("img1", rng.integers(0, 256, (4, 4), dtype=np.uint8), ["dog"])
    assert reader.image_ids() == ["img0", "img1"] and "img1" in reader
    assert reader.image_labels("img1").tolist() == [2]


def test_missing_array_is_reported_not_returned_as_fill(project):
    import shutil

    project.write_mask("img0", "crf", np.ones((20, 30), np.uint8), model_version="v")
    name = project.array_info("img0", "mask/crf").name
    shutil.rmtree(project.path / "images" / "img0" / name)
    fresh = Project.open(project.path, mode="r")
    with pytest.raises(FileNotFoundError, match=f"{name}.*project is damaged"):
        fresh.read_mask("img0", "crf")
    with pytest.raises(FileNotFoundError, match="project is damaged"):
        project.read_mask("img0", "crf")  # also with a cached array handle


def test_arrays_written_by_other_zarr_settings_are_read_through_zarr(project, rng):
    """Arrays the fast chunk decoder does not handle (other codecs, several chunks)."""
    from napari_wsss.store._nodes import NodeStore

    data = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    for name, kw in [("gz", {"compressors": zarr.codecs.GzipCodec()}), ("tiled", {"chunks": (8, 8)})]:
        arr = zarr.create_array(str(project.path), name=f"images/img0/{name}", shape=data.shape,
                                dtype=np.uint8, fill_value=255, attributes={"napari_wsss": {"k": 1}},
                                **kw)
        arr[...] = data
        nodes = NodeStore(project.path, read_only=True)
        assert not nodes._array_meta(f"images/img0/{name}").fast
        got, attrs = nodes.read_array(f"images/img0/{name}")
        assert np.array_equal(got, data) and attrs == {"k": 1}


def test_registered_migration_runs_on_open_rw_only(project, monkeypatch):
    """The migration runner: a project at schema 0 is upgraded step by step when writable."""
    import json

    from napari_wsss.store import _schema

    def zero_to_one(path):  # bumps the version in place
        meta = json.loads((path / "zarr.json").read_text())
        meta["attributes"]["napari_wsss"]["schema_version"] = 1
        (path / "zarr.json").write_text(json.dumps(meta))

    _set_schema(project.path, 0)
    monkeypatch.setitem(_schema.MIGRATIONS, 0, zero_to_one)
    with pytest.raises(ProjectError, match="schema version 0 and must be migrated to version 1: open it once with mode='r\\+'"):
        Project.open(project.path, mode="r")
    p = Project.open(project.path, mode="r+")
    assert p.schema_version == 1 and p.image_ids() == ["img0"]
    assert Project.open(project.path, mode="r").schema_version == 1


def test_switching_images_is_fast(tmp_path, rng):
    """Reading a 512 px image with 3 masks and corrections costs a few ms of CPU.

    CPU time of this process (not wall time), so other jobs on the machine do not matter;
    a store that reopened the hierarchy or went through zarr's event loop per array would
    be several times slower.
    """
    import time

    p = Project.create(tmp_path / "p.zarr", CLASSES, background=True)
    yy, xx = np.mgrid[:512, :512]
    mask = ((yy // 128 + xx // 128) % 4).astype(np.uint8)
    for i in range(6):
        p.add_image(f"im{i}", rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), [1])
        for stage in ("cam", "crf", "rw"):
            p.write_mask(f"im{i}", stage, mask, model_version="v")
        p.write_corrections(f"im{i}", np.where(mask == 1, 1, 255).astype(np.uint8))
    reader = Project.open(p.path, mode="r")
    costs = []
    for i in range(6):  # every image read for the first time (cold metadata caches)
        t = time.process_time()
        rec = reader.load(f"im{i}")
        costs.append(time.process_time() - t)
        assert len(rec.masks) == 3 and rec.image.shape == (512, 512, 3)
    assert np.median(costs) < 0.010, costs


def test_pickle_reopens(project):
    import pickle

    ro = Project.open(project.path, mode="r")
    clone = pickle.loads(pickle.dumps(ro))
    assert clone is not ro and clone.mode == "r" and clone.image_ids() == ["img0"]
    assert np.array_equal(clone.image("img0"), project.image("img0"))
    with pytest.raises(ReadOnlyError):
        clone.set_status("img0", "accepted")
