"""Pixels the annotator painted "ignore" (stored as 254) are ignore (255) in every stage's targets."""

import numpy as np
import torch

from napari_wsss.conventions import IGNORE_PAINTED
from trainer.affinity import affinity_labels
from trainer.classifier import build_classifier_stage
from trainer.config import AffinityConfig
from trainer.data import MemorySource
from trainer.segmenter import build_segmenter_stage

from conftest import synthetic_source, tiny_config, to_project

P = IGNORE_PAINTED


def _corrections(size=64):
    corr = np.full((size, size), 255, np.uint8)
    corr[8:24, 8:24] = P  # "don't care" block
    corr[40, 40] = 2  # one painted class pixel
    return corr


def test_segmenter_painted_ignore_overrides_the_pseudo_mask_with_255(tmp_path):
    src = synthetic_source(1, masks=False)
    iid = src.image_ids()[0]
    src.masks[(iid, "rw")] = np.ones((64, 64), np.uint8)
    src.corrections[iid] = _corrections()
    project = to_project(src, tmp_path / "p.zarr")  # through the real store
    cfg = tiny_config().segmenter
    cfg.pseudo_stages = ("rw",)
    for source in (src, project):
        st = build_segmenter_stage(source, cfg, [iid], [])
        mask = st.train_set[0]["mask"].numpy()
        expected = np.ones((64, 64), np.int64)
        expected[8:24, 8:24] = 255  # ignored by cross_entropy(ignore_index=255)
        expected[40, 40] = 2
        np.testing.assert_array_equal(mask, expected)


def test_classifier_mask_has_255_and_no_class_254():
    src = synthetic_source(1)
    iid = src.image_ids()[0]
    src.labels[iid] = [0]
    src.corrections[iid] = _corrections()
    st = build_classifier_stage(src, tiny_config().classifier, [iid], [])
    item = st.train_set[0]
    # the painted class 2 joins the labels; 254 is not taken for a class
    assert item["labels"].tolist() == [1.0, 0.0, 1.0] and bool(item["has_pixels"])
    mask = item["mask"].numpy()
    assert set(np.unique(mask).tolist()) == {2, 255}
    assert (mask[8:24, 8:24] == 255).all() and mask[40, 40] == 2


def test_classifier_only_ignore_painted_has_no_pixel_supervision():
    src = synthetic_source(1)
    iid = src.image_ids()[0]
    corr = np.full((64, 64), P, np.uint8)
    src.corrections[iid] = corr
    item = build_classifier_stage(src, tiny_config().classifier, [iid], []).train_set[0]
    assert not bool(item["has_pixels"]) and (item["mask"] == 255).all()
    assert torch.equal(item["labels"], torch.tensor([float(c in src.labels[iid]) for c in range(3)]))


def test_affinity_labels_painted_ignore_is_neutral():
    # one label, no background: the confident label map is that class everywhere
    src = MemorySource(classes=["a", "b", "c"], background=None)
    src.images["x"] = np.zeros((64, 64, 3), np.uint8)
    src.labels["x"] = [1]
    src.cams[("x", "gradcam")] = (np.ones((1, 64, 64), np.float32), np.array([1]))
    src.corrections["x"] = _corrections()
    got = affinity_labels(src, "x", "gradcam", AffinityConfig())
    expected = np.ones((64, 64), np.uint8)
    expected[8:24, 8:24] = 255
    expected[40, 40] = 2
    np.testing.assert_array_equal(got, expected)
