"""Explainer stage: a trained explainer finds known evidence; the stage runs through
``trainer.train``, its checkpoint loads, and the pipeline / prelabel / evaluate use it."""

import io

import numpy as np
import pytest
import torch

from napari_wsss.evaluate import evaluate_project
from napari_wsss.maskio import write_mask_file
from napari_wsss.models import Classifier, build_segmenter, explainer_maps, load_explainer, predict_explainer, to_tensor
from napari_wsss.models.explainer import ExplainerLoss
from napari_wsss.pipeline import Pipeline, PipelineConfig, prelabel
from trainer import TrainingDataError, save_classifier, train
from trainer.cli import STAGE_CHOICES
from trainer.explainer import ExplainerStageLoss
from trainer.loop import train_one_epoch
from trainer.run import STAGES
from trainer.stage import TrainingModule

from conftest import synthetic_source, tiny_config, to_project

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
COLOURS = np.array([[230, 30, 30], [30, 200, 30], [40, 60, 230]], np.uint8)


class ColourClassifier(torch.nn.Module):
    """Frozen toy Explanandum: ``logit_c = 50 * mean relu(<x, u_c> - 1) - 3`` on normalised
    images. Only pixels of colour ``c`` count (projection >= 2.5; the 80-110 grey noise
    <= 0.87), so the evidence for ``c`` is exactly its square."""

    def __init__(self):
        super().__init__()
        c = torch.from_numpy(COLOURS / 255.0).float()
        u = torch.sign((c[:, :, None, None] - MEAN) / STD)[:, :, 0, 0]
        self.register_buffer("u", u / u.norm(dim=1, keepdim=True))

    def forward(self, x):
        return 50.0 * torch.relu(torch.einsum("bchw,kc->bkhw", x, self.u) - 1.0).mean((2, 3)) - 3.0


def _squares(n, *, seed, size=64, side=20):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(80, 111, (size, size, 3)).astype(np.uint8)
        y, x = rng.integers(0, size - side, 2)
        img[y:y + side, x:x + side] = COLOURS[i % 3]
        truth = np.zeros((size, size), bool)
        truth[y:y + side, x:x + side] = True
        out.append((img, i % 3, truth))
    return out


def _batches(data, batch_size, epochs, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(data))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            images = torch.stack([torch.from_numpy(data[i][0]).permute(2, 0, 1).float() / 255 for i in idx])
            labels = torch.zeros(batch_size, 3)
            labels[torch.arange(batch_size), torch.as_tensor([data[i][1] for i in idx])] = 1
            yield {"image": images, "labels": labels}


def test_trained_explainer_masks_cover_the_evidence():
    """60 steps of the shared loop on 24 images; held-out images' masks (> 0.5) vs the square.

    IoU > 0.5 per image: DeepLabV3+ predicts at stride 4 and upsamples, so a mask one
    output cell (4 px) too large on every side of the 20 px square scores 400 / 28**2 = 0.51;
    a mask of the whole image scores 400 / 4096 = 0.10, one of the wrong place 0.
    """
    torch.manual_seed(0)
    net = build_segmenter("mobilenet_v2", 3, weights="IMAGENET1K_V1")
    module = TrainingModule(net, frozen_part=net)  # the stage's freeze_bn
    clf = ColourClassifier()
    loss = ExplainerStageLoss(ExplainerLoss(), clf)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    res = train_one_epoch(module, list(_batches(_squares(24, seed=0), 4, 10)), loss, opt,
                          device=torch.device("cpu"))
    assert res.steps == 60
    # The toy optimum: BCE ~0.04 on the masked image, entropy -log(3)/3 = -0.37, small areas.
    assert res.losses[-1] < -0.2 < 0.5 < res.losses[0]
    net.eval()
    ious, others = [], []
    for img, c, truth in _squares(12, seed=5):
        maps = explainer_maps(net, to_tensor(img, "cpu"), [0, 1, 2]).numpy()
        mask = maps[c] > 0.5
        ious.append((mask & truth).sum() / (mask | truth).sum())
        others.append((np.delete(maps, c, axis=0) > 0.5).mean())
    assert min(ious) > 0.5 and np.mean(ious) > 0.6, ious
    # Absent classes, pushed down only by the non-target area and TV terms, keep less than half
    # the square's 10 % of the image after these few steps.
    assert max(others) < 0.05 and np.mean(others) < 0.02, others


def test_explainer_stage_round_trip_pipeline_prelabel_evaluate(tmp_path):
    src = synthetic_source(4, masks=True, background=True)
    project = to_project(src, tmp_path / "p")
    torch.manual_seed(0)
    version = save_classifier(project, Classifier("mobilenet_v2", len(project.classes), weights=None))
    cfg = tiny_config()
    e = cfg.explainer
    e.epochs, e.batch_size, e.crop_size, e.weights = 1, 4, 64, None
    res = train(project.path, "explainer", cfg, stream=io.StringIO())["explainer"]
    assert res.step == 1 and res.version is not None
    state = project.load_checkpoint("explainer")
    assert state["stage"] == "explainer" and state["classifier_version"] == version
    net = load_explainer(project, "cpu")
    assert net.classes == project.classes and net.background == 0 and not net.training
    maps = predict_explainer(net, project.image("img00"), labels=[1, 3])
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32 and 0 <= maps.min() <= maps.max() <= 1

    config = PipelineConfig(scales=(1.0,), flip=False, refine=("explainer",))
    pipe = Pipeline.from_project(project, config, device="cpu")
    labels = project.image_labels("img01")
    props = pipe.run(project.image("img01"), labels)
    expected_maps = predict_explainer(net, project.image("img01"), labels=labels)
    fg = (expected_maps > 0.5).any(0)
    expected = np.where(fg, labels[expected_maps.argmax(0)], 0)
    np.testing.assert_array_equal(props.masks["explainer"], expected)

    # method="explainer": its masks are the class maps the CRF refines.
    ex = Pipeline.from_project(project, config.replace(method="explainer", refine=("crf",)), device="cpu")
    props = ex.run(project.image("img01"), labels)
    np.testing.assert_allclose(props.cams, expected_maps, atol=1e-5)
    assert set(np.unique(props.masks["crf"])) <= {0, *labels.tolist()}

    report = prelabel(project, config=config, progress=False, device="cpu")
    assert not report.failed and len(report.done) == 4
    assert "explainer" in project.mask_stages("img02")
    gt = tmp_path / "gt"
    gt.mkdir()
    for iid in project.image_ids():
        write_mask_file(gt / f"{iid}.png", src.masks[(iid, "rw")], n_classes=4, background=0)
    ev = evaluate_project(project, gt)
    assert ev.stages["explainer"].n_images == 4


def test_stage_needs_a_classifier_with_the_projects_classes(tmp_path):
    src = synthetic_source(2)
    project = to_project(src, tmp_path / "p")
    cfg = tiny_config()
    cfg.explainer.weights = None
    with pytest.raises(TrainingDataError, match="has none; train one first"):
        train(project.path, "explainer", cfg, stream=io.StringIO())
    other = to_project(synthetic_source(2, background=True), tmp_path / "q")
    save_classifier(other, Classifier("mobilenet_v2", len(other.classes), weights=None))
    cfg.explainer.classifier_checkpoint = str(other.latest_checkpoint("classifier"))
    with pytest.raises(ValueError, match=r"\['background', 'red', 'green', 'blue'\]"):
        train(project.path, "explainer", cfg, stream=io.StringIO())


def test_explainer_is_a_stage_of_train_all_and_the_cli():
    assert STAGES.index("classifier") < STAGES.index("explainer") < STAGES.index("affinity")
    assert "explainer" in STAGE_CHOICES
    with pytest.raises(ValueError, match="method 'explainer' needs a trained explainer"):
        Pipeline(Classifier("mobilenet_v2", 3), ["a", "b", "c"], None,
                 PipelineConfig(method="explainer"), model_version="x")
