"""npe2 reader and writer as plain functions (no viewer), as the napari plugin template tests."""

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from napari_wsss._reader import napari_get_reader
from napari_wsss._writer import write_labels
from napari_wsss.store import Project


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def project(tmp_path, rng):
    p = Project.create(tmp_path / "p.zarr", ["cat", "dog"], background=True)
    p.add_image("first", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), ["cat"])
    p.add_image("second", rng.integers(0, 256, (4, 4), dtype=np.uint8), ["dog"])
    return p


def test_reader_opens_project_first_image_and_masks(project, rng):
    mask = np.array([[0, 1, 2, 255, 0]] * 6, np.uint8)
    project.write_mask("first", "crf", mask, model_version="v")
    corr = np.full((6, 5), 255, np.uint8)
    corr[0, 0] = 2
    project.write_corrections("first", corr)
    reader = napari_get_reader(str(project.path))
    assert callable(reader)
    layers = reader(str(project.path))
    (img, img_kw, img_type), *labels = layers
    assert img_type == "image" and img_kw["name"] == "first" and img_kw["rgb"] is True
    assert np.array_equal(img, project.image("first"))
    by_name = {kw["name"]: (data, kw, t) for data, kw, t in labels}
    assert set(by_name) == {"first crf", "first corrections"}
    data, kw, t = by_name["first crf"]
    assert t == "labels"
    # class c -> layer value c + 1, ignore (255) -> 0, worked out by hand
    assert data[0].tolist() == [1, 2, 3, 0, 1]
    assert kw["metadata"]["napari_wsss"]["stage"] == "crf"
    assert kw["metadata"]["napari_wsss"]["classes"] == ["background", "cat", "dog"]
    corr_layer = by_name["first corrections"][0]
    assert corr_layer[0, 0] == 3 and (corr_layer.ravel()[1:] == 0).all()


def test_reader_declines_what_it_cannot_read(tmp_path, rng):
    zarr.open_group(tmp_path / "other.zarr", mode="w")  # a zarr group, not a project
    assert napari_get_reader(str(tmp_path / "other.zarr")) is None
    Project.create(tmp_path / "empty.zarr", ["a"])
    assert napari_get_reader(str(tmp_path / "empty.zarr")) is None
    Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(tmp_path / "one.png")
    assert napari_get_reader(str(tmp_path / "one.png")) is None  # single files: napari's own reader
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    assert napari_get_reader(str(tmp_path / "text")) is None
    assert napari_get_reader([str(tmp_path / "a"), str(tmp_path / "b")]) is None


def test_reader_image_folder_stack_or_first(tmp_path, rng):
    same = tmp_path / "same"
    same.mkdir()
    imgs = [rng.integers(0, 256, (5, 6, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(same / f"im{i}.png")
    (same / "notes.txt").write_text("ignored")
    data, kw, t = napari_get_reader(str(same))(str(same))[0]
    assert t == "image" and data.shape == (3, 5, 6, 3) and kw["name"] == "same"
    assert all(np.array_equal(data[i], imgs[i]) for i in range(3))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(imgs[0]).save(mixed / "a.png")
    Image.fromarray(imgs[1][:4]).save(mixed / "b.png")
    layers = napari_get_reader([str(mixed)])([str(mixed)])
    assert len(layers) == 1 and layers[0][1]["name"] == "a" and np.array_equal(layers[0][0], imgs[0])


def test_writer_indexed_png_with_palette(tmp_path):
    layer = np.array([[0, 1, 2], [3, 0, 1]], np.uint8)
    meta = {"metadata": {"napari_wsss": {"classes": ["background", "cat", "dog"], "background": 0}}}
    out = write_labels(str(tmp_path / "m.png"), layer, meta)
    assert out == [str(tmp_path / "m.png")]
    im = Image.open(out[0])
    assert im.mode == "P"
    # layer 0 -> 255 (unlabeled), v -> v - 1
    assert np.asarray(im).tolist() == [[255, 0, 1], [2, 255, 0]]
    pal = np.array(im.getpalette()).reshape(-1, 3)
    # VOC colours: background black, class 1 (128, 0, 0), class 2 (0, 128, 0); void cream
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0] and pal[255].tolist() == [224, 224, 192]
    # without a background class, class 0 takes VOC entry 1 so no class is black
    write_labels(str(tmp_path / "n.png"), layer, {"metadata": {"napari_wsss": {"classes": ["a", "b", "c"]}}})
    assert np.array(Image.open(tmp_path / "n.png").getpalette()).reshape(-1, 3)[0].tolist() == [128, 0, 0]


def test_writer_ignore_brush_is_void(tmp_path):
    # layer 255 = painted "ignore" (stored 254 in a project) is void (255) in a file like 0
    write_labels(str(tmp_path / "i.png"), np.array([[255, 0, 2]], np.uint8), {})
    assert np.asarray(Image.open(tmp_path / "i.png")).tolist() == [[255, 255, 1]]


def test_writer_tiff_and_errors(tmp_path):
    stack = np.array([[[0, 1], [2, 0]], [[1, 1], [0, 3]]], np.int32)
    write_labels(str(tmp_path / "s.tif"), stack, {})
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        got = tif.asarray()
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE
    assert got.dtype == np.uint8 and got.tolist() == [[[255, 0], [1, 255]], [[0, 0], [255, 2]]]
    with pytest.raises(ValueError, match=r"s.png: labels of shape \(2, 2, 2\).*save stacks as .tif"):
        write_labels(str(tmp_path / "s.png"), stack, {})
    with pytest.raises(ValueError, match=r"big.png: .*0..255, got 0..300"):
        write_labels(str(tmp_path / "big.png"), np.array([[0, 300]]), {})
    with pytest.raises(ValueError, match=r"x.jpg: cannot write labels as '.jpg'"):
        write_labels(str(tmp_path / "x.jpg"), np.zeros((2, 2), np.uint8), {})


def test_written_png_reads_back_through_the_store_convention(tmp_path, project):
    """reader -> writer round trip: the PNG holds exactly the stored class mask."""
    mask = np.array([[0, 1, 2, 255, 0]] * 6, np.uint8)
    project.write_mask("first", "rw", mask, model_version="v")
    layers = napari_get_reader(str(project.path))(str(project.path))
    data, kw, _ = next(layer for layer in layers if layer[1]["name"] == "first rw")
    write_labels(str(tmp_path / "rw.png"), data, kw)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rw.png")), mask)


def test_reader_colours_build_a_napari_labels_layer(project):
    """The reader's plain colour dict (no napari import in the reader) becomes napari's
    direct colour map: layer value c + 1 -> VOC entry c (background project), 0 clear."""
    from napari.layers import Labels

    project.write_mask("first", "crf", np.array([[0, 1, 2, 255, 0]] * 6, np.uint8), model_version="v")
    (_, *labels) = napari_get_reader(str(project.path))(str(project.path))
    data, kw, _ = next(x for x in labels if x[1]["name"] == "first crf")
    layer = Labels(data, **kw)
    rgba = layer.colormap.map(np.array([1, 2, 3, 0]))
    # VOC palette entries 0, 1, 2: black, (128, 0, 0), (0, 128, 0); 0 is transparent
    np.testing.assert_allclose(rgba[:3, :3], [[0, 0, 0], [128 / 255, 0, 0], [0, 128 / 255, 0]], atol=1e-6)
    assert rgba[:3, 3].tolist() == [1.0, 1.0, 1.0] and rgba[3, 3] == 0.0
