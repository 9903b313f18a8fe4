"""Review order: disagreement between stage masks, most uncertain unreviewed image first."""

import numpy as np
import pytest

from napari_wsss.review import disagreement, image_uncertainty, review_order
from napari_wsss.store import Project


def test_disagreement_counts_pixels_where_the_masks_differ():
    a = np.zeros((4, 5), np.uint8)
    b = a.copy()
    b[0, :] = 1  # 5 of 20 pixels differ
    c = a.copy()
    c[1, :2] = 2  # 2 more
    assert disagreement([a, a, a]) == 0.0
    assert disagreement([a, b]) == pytest.approx(5 / 20)
    assert disagreement([a, b, c]) == pytest.approx(7 / 20)
    # Void in one mask: the pixel still counts through the other two.
    v = b.copy()
    v[0, :] = 255
    assert disagreement([a, v, a]) == 0.0
    # Void in all but one mask: the pixel is not counted.
    assert disagreement([v, v, b]) == pytest.approx(0.0)
    assert disagreement([a]) == 0.0


def _project(tmp_path):
    p = Project.create(tmp_path / "p.zarr", ["a", "b", "c"])
    rng = np.random.default_rng(0)
    for name in ("im0", "im1", "im2", "im3"):
        p.add_image(name, rng.integers(0, 256, (8, 10, 3), dtype=np.uint8), ["a", "b"])
    base = np.zeros((8, 10), np.uint8)
    # im0: stages agree; im1: 40 of 80 pixels differ; im2: 8 of 80; im3: no proposals yet.
    for name, rows in (("im0", 0), ("im1", 4), ("im2", 1)):
        other = base.copy()
        other[:rows] = 1
        p.write_mask(name, "cam", base, model_version="v")
        p.write_mask(name, "crf", other, model_version="v")
        p.write_mask(name, "rw", base, model_version="v")
        p.set_status(name, "prelabelled", model_version="v")
    return p


def test_review_order_most_uncertain_first_then_unscored(tmp_path):
    p = _project(tmp_path)
    assert review_order(p) == ["im1", "im2", "im0", "im3"]
    assert review_order(p, order="file") == ["im0", "im1", "im2", "im3"]
    p.set_status("im1", "accepted")
    assert review_order(p) == ["im2", "im0", "im3"]
    assert review_order(p, unreviewed_only=False)[0] == "im1"
    with pytest.raises(ValueError, match="unknown review order"):
        review_order(p, order="random")


def test_review_order_cache_is_filled_and_reused(tmp_path):
    p = _project(tmp_path)
    cache = {}
    assert review_order(p, cache=cache) == ["im1", "im2", "im0", "im3"]
    for image_id in ("im0", "im1", "im2"):  # each score is the one of its stored masks
        masks = {s: p.read_mask(image_id, s) for s in ("cam", "crf", "rw")}
        assert cache[image_id] == image_uncertainty(masks)
    assert cache["im3"] is None  # no stage masks
    # A cached entry is used instead of the masks: the stored masks are not read again.
    cache["im0"] = 1.0
    assert review_order(p, cache=cache)[0] == "im0"
    del cache["im0"]  # dropped (its proposals changed): read again
    assert review_order(p, cache=cache) == ["im1", "im2", "im0", "im3"]
