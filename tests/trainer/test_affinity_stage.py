"""AffinityNet stage: confident CAM labels -> pair targets -> the paper's loss, in the shared loop."""

import io
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from napari_wsss.refine import build_affinity, downsample_labels
from napari_wsss.models import load_affinity
from napari_wsss.store import CheckpointError
from trainer import DirectoryCheckpoints, TrainingDataError, fit, train
from trainer.affinity import AffinityLoss, AffinityPairMetric, affinity_labels, build_affinity_stage
from trainer.config import AffinityConfig

from conftest import synthetic_source, tiny_config, to_project


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blob_cams(truth, classes, sigma):
    """CAMs of the image's labels: blurred truth indicators, each divided by its maximum."""
    cams = np.stack([gaussian_filter((truth == c).astype(np.float32), sigma) for c in classes])
    return cams / cams.max(axis=(1, 2), keepdims=True)


def cam_source(n=6, size=64, *, background=True, seed=0, half=False):
    """Synthetic blobs (see conftest) with stored "gradcam" CAMs and the pixel truth.

    ``half`` stores the CAMs at half the image size (the stage resizes them).
    """
    src = synthetic_source(n, size=size, background=background, masks=True, seed=seed)
    truth = {}
    for iid in src.image_ids():
        truth[iid] = src.masks.pop((iid, "rw"))
        cams = _blob_cams(truth[iid], src.labels[iid], size / 16)
        src.cams[(iid, "gradcam")] = (cams[:, ::2, ::2] if half else cams, np.array(src.labels[iid]))
    return src, truth


def cam_project(path, **kw):
    src, truth = cam_source(**kw)
    project = to_project(src, path)
    for (iid, method), (cams, classes) in src.cams.items():
        project.write_cams(iid, method, cams, classes, model_version="synthetic")
    return project, truth


def aff_config(**kw):
    """Whole 64 px images, batch of all 6, constant schedule: every step sees the same batch.

    Keywords as :func:`conftest.tiny_config` (``affinity__epochs=3``, ``resume=True``).
    """
    cfg = tiny_config()
    a = cfg.affinity
    a.epochs, a.batch_size, a.crop_size, a.lr, a.scheduler = 2, 6, 64, 0.05, "constant"
    a.scale_range, a.hflip, a.color_jitter = (1.0, 1.0), False, 0.0
    for k, v in kw.items():
        section, _, key = k.partition("__")
        setattr(cfg.stage(section), key, v) if key else setattr(cfg, section, v)
    return cfg


def _fit(src, cfg, root):
    return fit(src, "affinity", cfg, checkpoints=DirectoryCheckpoints(root), log_dir=root / "log",
               stream=io.StringIO())


def _within_across(net, image, truth):
    """Mean affinity of the pairs inside one object and of the pairs across a boundary."""
    graph = build_affinity(image, model=net)
    grid = downsample_labels(truth, graph.shape).ravel()
    a, b = grid[graph.ind_from.numpy()], grid[graph.ind_to.numpy()]
    w = graph.weights.numpy()
    inside = (a == b) & (a != 0)
    across = a != b
    assert inside.sum() > 100 and across.sum() > 100
    return float(w[inside].mean()), float(w[across].mean())


@pytest.mark.parametrize("background", [True, False])
def test_affinity_loss_falls(tmp_path, background):
    src, _ = cam_source(background=background)
    res = _fit(src, aff_config(affinity__epochs=6), tmp_path)
    assert len(res.losses) == 6
    assert all(b < a for a, b in zip(res.losses, res.losses[1:]))
    assert res.losses[-1] < 0.85 * res.losses[0]


def test_trained_affinities_separate_objects_and_round_trip(tmp_path):
    project, _ = cam_project(tmp_path / "p", size=96, half=True)
    cfg = aff_config(affinity__epochs=10, affinity__crop_size=96)
    res = train(project.path, "affinity", cfg, stream=io.StringIO())["affinity"]
    assert res.version == "affinity-0010" == project.checkpoints("affinity")[-1]  # one per epoch
    assert res.losses[-1] < 0.5 * res.losses[0]
    state = torch.load(project.latest_checkpoint("affinity"), weights_only=True)
    assert state["model_config"] == {"backbone": "mobilenet_v2", "radius": 5,
                                     "stage_strides": [8, 16, 32], "stage_channels": [64, 128, 256]}
    assert state["cam_method"] == "gradcam" and state["stage"] == "affinity"
    net = load_affinity(project, "cpu")
    assert net.classes == project.classes and net.background == 0 and not net.training

    torch.manual_seed(0)  # the same architecture before training, for comparison
    from napari_wsss.models.affinity import AffinityNet

    untrained = AffinityNet("mobilenet_v2", "IMAGENET1K_V1").eval()
    held_out, truth = cam_source(3, size=96, seed=7)  # images never trained on
    for iid in held_out.image_ids():
        inside, across = _within_across(net, held_out.image(iid), truth[iid])
        inside0, across0 = _within_across(untrained, held_out.image(iid), truth[iid])
        assert inside > 0.5 and across < 0.2 and inside > 3 * across, (iid, inside, across)
        assert inside0 < 2 * across0  # what training added, not what ImageNet features gave


def test_resume_mid_epoch_is_exact(tmp_path):
    # augmentation on, poly schedule, momentum, two steps per epoch
    src, _ = cam_source(4, size=32)
    kw = dict(affinity__epochs=2, affinity__scheduler="poly", affinity__batch_size=2,
              affinity__crop_size=32, affinity__scale_range=(0.7, 1.3), affinity__hflip=True,
              affinity__color_jitter=0.2)
    full = _fit(src, aff_config(**kw), tmp_path / "full")
    assert len(full.losses) == 4

    cut = _fit(src, aff_config(max_steps=3, **kw), tmp_path / "cut")
    assert cut.stopped and cut.step == 3 and cut.losses == full.losses[:3]
    rest = _fit(src, aff_config(resume=True, **kw), tmp_path / "cut")
    assert rest.losses == full.losses[3:] and rest.epoch == 2 and rest.step == 4
    a = torch.load(DirectoryCheckpoints(tmp_path / "full").latest_checkpoint("affinity"), weights_only=True)
    b = torch.load(DirectoryCheckpoints(tmp_path / "cut").latest_checkpoint("affinity"), weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_confident_labels_from_half_size_cams_with_corrections():
    # no background, two labels: CAM 1 on the left half of a 16 x 16 grid, CAM 2 on the right
    src, _ = cam_source(2, size=32, background=False)
    iid = src.image_ids()[0]
    src.labels[iid] = [0, 2]
    left = np.zeros((16, 16), np.float32)
    left[:, :8] = 1.0
    src.cams[(iid, "gradcam")] = (np.stack([left, 1 - left, left]), np.array([0, 2, 1]))
    corr = np.full((32, 32), 255, np.uint8)
    corr[3, 4] = 1
    src.corrections[iid] = corr
    got = affinity_labels(src, iid, "gradcam", AffinityConfig(crf=False))  # the CAM band alone
    # bilinear 2x upsampling (half-pixel centres): column x reads source column (x + .5) / 2 - .5,
    # so columns 0-14 are pure CAM 0, 17-31 pure CAM 2; 15 and 16 mix 3:1 (second >= low: 255)
    expected = np.full((32, 32), 255, np.uint8)
    expected[:, :15] = 0
    expected[:, 17:] = 2
    expected[3, 4] = 1  # the correction wins; class 1 is no label of the image: its CAM is dropped
    np.testing.assert_array_equal(got, expected)


def test_background_thresholds_without_crf():
    # m = 0.9: (1 - m)^4 < m, foreground; m = 0.02: (1 - m)^32 = 0.52 > m, background;
    # m = 0.15: (1 - m)^4 = 0.52 > m but (1 - m)^32 = 0.006 < m: neither, 255
    src, _ = cam_source(1, size=32, background=True)
    iid = src.image_ids()[0]
    src.labels[iid] = [2]
    cam = np.full((32, 32), 0.02, np.float32)
    cam[:, 10:20] = 0.15
    cam[:, 20:] = 0.9
    src.cams[(iid, "cam")] = (cam[None], np.array([2]))
    got = affinity_labels(src, iid, "cam", AffinityConfig(crf=False))
    expected = np.zeros((32, 32), np.uint8)
    expected[:, 10:20] = 255
    expected[:, 20:] = 2
    np.testing.assert_array_equal(got, expected)


def test_loss_on_labels_downsampled_to_the_grid():
    # a 1 x 3 feature grid (radius 2: pairs (0, 1) and (1, 2)), labels given at 2 x 6
    feats = torch.tensor([[[[0.0, 0.0, 3.0]]]])
    w = math.exp(-3.0)
    mask = torch.tensor([[[1, 1, 1, 1, 2, 2]] * 2])
    loss, parts = AffinityLoss(radius=2, background=None)(feats, {"mask": mask})
    # fg pair (0, 1) has W = 1: -log(1 + eps) ~ 0; the negative pair (1, 2) has W = e^-3
    assert loss.item() == pytest.approx(0.5 * -math.log(1 - w), rel=1e-3)
    assert set(parts) == {"fg_pos", "neg"}
    bg_mask = torch.tensor([[[0, 0, 0, 0, 2, 2]] * 2])
    loss, parts = AffinityLoss(radius=2, background=0)(feats, {"mask": bg_mask})
    assert loss.item() == pytest.approx(0.5 * -math.log(1 - w), rel=1e-3)  # no fg pairs: 0
    assert parts["bg_pos"].item() == pytest.approx(0.0, abs=1e-4)


def test_pair_metric_by_hand():
    feats = torch.tensor([[[[0.0, 0.0, 3.0]]]]).repeat(2, 1, 1, 1)
    mask = torch.tensor([[[1, 1, 2]], [[1, 2, 255]]])
    m = AffinityPairMetric(radius=2, background=None)
    m.update(feats, {"mask": mask})
    out = m.compute()
    # fg pairs: W = 1 (hit); negatives: e^-3 (hit) and 1 (miss); no background pairs
    assert out["fg_pos_affinity"] == pytest.approx(1.0)
    assert out["neg_affinity"] == pytest.approx((1 + math.exp(-3)) / 2)
    assert math.isnan(out["bg_pos_affinity"])
    assert out["pair_accuracy"] == pytest.approx((1.0 + 0.5) / 2)


def test_validation_reports_pair_accuracy(tmp_path):
    src, _ = cam_source(6)
    stream = io.StringIO()
    fit(src, "affinity", aff_config(affinity__epochs=1, affinity__val_fraction=0.3),
        checkpoints=DirectoryCheckpoints(tmp_path), log_dir=tmp_path / "log", stream=stream)
    import json

    evals = [json.loads(x) for x in stream.getvalue().splitlines() if '"eval"' in x]
    assert len(evals) == 1 and 0.0 <= evals[0]["pair_accuracy"] <= 1.0


def test_no_cams_is_a_clear_error(tmp_path):
    project = to_project(synthetic_source(2), tmp_path / "nocams")
    with pytest.raises(TrainingDataError, match=r"nocams has no stored CAMs .* run `napari-wsss prelabel"):
        train(project.path, "affinity", aff_config(), stream=io.StringIO())
    src, _ = cam_source(2)
    cfg = AffinityConfig(cam_method="scorecam")
    with pytest.raises(TrainingDataError, match=r"no 'scorecam' CAMs \(stored methods: gradcam\)"):
        build_affinity_stage(src, cfg, src.image_ids(), [])


def test_cams_out_of_range_name_the_image():
    src, _ = cam_source(2, background=False)
    iid = src.image_ids()[1]  # two labels
    cams, classes = src.cams[(iid, "gradcam")]
    src.cams[(iid, "gradcam")] = (cams * 3.0, classes)
    with pytest.raises(ValueError, match=rf"image '{iid}', 'gradcam' CAMs"):
        affinity_labels(src, iid, "gradcam", AffinityConfig())


def test_class_list_and_checkpoint_checks(tmp_path):
    src, _ = cam_source(2)
    _fit(src, aff_config(affinity__epochs=1, affinity__batch_size=2), tmp_path)
    path = DirectoryCheckpoints(tmp_path).latest_checkpoint("affinity")
    with pytest.raises(ValueError, match=r"trained on classes \['background', 'red', 'green', 'blue'\] "
                                         r"but the caller has classes \['background', 'cat'\]"):
        load_affinity(path, "cpu", classes=["background", "cat"])
    other, _ = cam_source(2, background=False)  # classes red, green, blue
    with pytest.raises(ValueError, match=r"trained on classes .* has classes \['red', 'green', 'blue'\]"):
        _fit(other, aff_config(affinity__epochs=2, affinity__batch_size=2, resume=True), tmp_path)
    state = torch.load(path, weights_only=True)
    del state["model_config"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt lacks the AffinityNet config"):
        load_affinity(tmp_path / "old.pt", "cpu")
    fresh = to_project(synthetic_source(2), tmp_path / "fresh")
    with pytest.raises(FileNotFoundError, match=r"fresh has no affinity checkpoint"):
        load_affinity(fresh.path)
