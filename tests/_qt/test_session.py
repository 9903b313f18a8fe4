"""AnnotationSession without Qt: listing, navigation, corrections, accept/reset/skip."""

import numpy as np
import pytest

from napari_wsss._qt.session import AnnotationSession, merge_accept
from napari_wsss.conventions import IGNORE_LAYER
from napari_wsss.store import Project


def test_filters_and_counts(project):
    s = AnnotationSession(project)
    assert s.image_ids == ["a", "b", "c", "d"]
    assert s.filtered_ids(class_index=0) == ["a", "c"]
    assert s.filtered_ids(class_index=2) == ["c", "d"]
    project.set_status("b", "skipped")
    s = AnnotationSession(project)
    assert s.filtered_ids(status="skipped") == ["b"]
    assert s.filtered_ids(status="new", class_index=1) == ["a"]
    assert s.counts() == {"new": 3, "prelabelled": 0, "accepted": 0, "corrected": 0, "skipped": 1}
    with pytest.raises(ValueError, match="valid: new, prelabelled"):
        s.filtered_ids(status="done")


def test_step_and_next_unreviewed(project):
    s = AnnotationSession(project)
    ids = s.image_ids
    assert s.step("a", 1, ids) == "b"
    assert s.step("a", -1, ids) == "a"  # clamped
    assert s.step("d", 1, ids) == "d"
    # "b" is filtered out: next is the first listed id after it, previous the last before it
    listed = ["a", "c", "d"]
    assert s.step("b", 1, listed) == "c"
    assert s.step("b", -1, listed) == "a"
    assert s.step("d", 1, ["a", "c"]) is None
    s.skip("b")
    s.skip("c")
    assert s.next_unreviewed("a") == "d"
    assert s.next_unreviewed("d") == "a"  # wraps around
    s.skip("d")
    assert s.next_unreviewed("a") is None


def test_corrections_round_trip_through_store(project):
    s = AnnotationSession(project)
    layer = np.zeros((48, 64), np.uint8)
    layer[1:3, 1:4] = 2  # class 1
    layer[10, 10] = IGNORE_LAYER
    s.save_corrections("a", layer)
    stored = Project.open(project.path, mode="r").read_corrections("a")
    expected = np.full((48, 64), 255, np.uint8)
    expected[1:3, 1:4] = 1
    expected[10, 10] = 254  # painted "ignore", distinct from 255 "unlabeled"
    np.testing.assert_array_equal(stored, expected)
    view = s.load("a")
    assert view.corrections[1, 1] == 2 and view.corrections[10, 10] == IGNORE_LAYER
    assert view.corrections[0, 0] == 0
    assert view.masks == {} and view.cams is None


def test_merge_accept_by_hand():
    corr = np.array([[0, 3, 0], [255, 0, 1]], np.uint8)
    prop = np.array([[2, 2, 1], [1, 1, 1]], np.uint8)
    assert merge_accept(corr, prop, only_unpainted=True).tolist() == [[2, 3, 1], [255, 1, 1]]
    assert merge_accept(corr, prop, only_unpainted=False).tolist() == prop.tolist()
    with pytest.raises(ValueError, match="differ"):
        merge_accept(corr, prop[:, :2], only_unpainted=True)


def test_accept_reset_skip_statuses(project):
    s = AnnotationSession(project)
    with pytest.raises(ValueError, match="no 'crf' proposal"):
        s.accept("a", np.zeros((48, 64), np.uint8), "crf", only_unpainted=True)
    prop = np.zeros((48, 64), np.uint8)
    prop[:, 32:] = 1
    project.write_mask("a", "crf", prop, model_version="imagenet:test")
    corr = np.zeros((48, 64), np.uint8)
    corr[0, 0] = 3  # painted class 2 stays
    new = s.accept("a", corr, "crf", only_unpainted=True)
    assert new[0, 0] == 3 and new[0, 1] == 1 and new[0, 40] == 2
    assert project.status("a").status == "accepted" and s.status("a") == "accepted"
    s.mark_corrected("a")
    assert project.status("a").status == "corrected"
    s.reset("a")
    assert project.status("a").status == "prelabelled"  # it has a proposal
    s.reset("b")
    assert project.status("b").status == "new"
    s.skip("c")
    assert Project.open(project.path, mode="r").status("c").status == "skipped"


def test_display_cams_are_block_means_with_their_pixel_size(project):
    from napari_wsss._qt.session import _display_cams

    # a ramp along x: the mean of columns 3j..3j+2 is 3j + 1; rows are not blocked (5 <= 256)
    ramp = np.broadcast_to(np.arange(600, dtype=np.float32), (1, 5, 600))
    out, block = _display_cams(ramp, 256)
    assert block == (1, 3) and out.shape == (1, 5, 200)
    np.testing.assert_allclose(out[0, 2, :4], [1.0, 4.0, 7.0, 10.0])
    # 520 rows in blocks of 3: 173 blocks, the last row (a partial block) is dropped
    col = np.broadcast_to(np.arange(520, dtype=np.float32)[:, None], (1, 520, 4))
    out, block = _display_cams(col, 256)
    assert block == (3, 1) and out.shape == (1, 173, 4)
    assert out[0, 172, 0] == (516 + 517 + 518) / 3
    # through the session: CAMs stored at the 48 x 64 image size, shown at <= 20 px
    cams = np.stack([np.tile(np.arange(64, dtype=np.float32), (48, 1))] * 2) / 63
    project.write_cams("a", "gradcam", cams, [0, 1], model_version="v")
    view = AnnotationSession(project).load("a", cam_side=20)
    assert view.cams.shape == (2, 16, 16) and view.cam_pixel == (3.0, 4.0)
    np.testing.assert_allclose(view.cams[1, 0, :2], [1.5 / 63, 5.5 / 63], rtol=1e-6)
