import io
import json

import numpy as np
import pytest
import torch

from napari_wsss.models import load_classifier
from napari_wsss.store import CheckpointError
from trainer import DirectoryCheckpoints, TrainingDataError, fit, train
from trainer.classifier import build_classifier_stage

from conftest import synthetic_source, tiny_config, to_project


def _run(src, cfg, tmp_path, stage="classifier"):
    stream = io.StringIO()
    res = fit(src, stage, cfg, checkpoints=DirectoryCheckpoints(tmp_path / "ck"),
              log_dir=tmp_path / "log", stream=stream)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    return res, lines


def test_classifier_bce_falls(tmp_path):
    src = synthetic_source(4)
    res, lines = _run(src, tiny_config(classifier__epochs=5), tmp_path)
    assert len(res.losses) == 5
    assert res.losses[-1] < 0.75 * res.losses[0]
    steps = [x for x in lines if x["event"] == "step"]
    assert [x["step"] for x in steps] == [1, 2, 3, 4, 5] and steps[0]["steps"] == 5
    assert {"stage", "epoch", "loss", "eta_s"} <= set(steps[-1])
    assert (tmp_path / "log" / "config.yaml").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "log").iterdir())


def test_pixel_guidance_puzzle_and_kur_train_together(tmp_path):
    src = synthetic_source(4, background=True, corrections=4)
    cfg = tiny_config(classifier__epochs=5, classifier__puzzle_pieces=4, classifier__puzzle_warmup=0.0,
                      classifier__kur=True, classifier__pixel_weight=0.5)
    res, lines = _run(src, cfg, tmp_path)
    steps = [x for x in lines if x["event"] == "step"]
    assert {"bce", "pixel", "p_cls", "re"} <= set(steps[0])
    assert res.losses[-1] < res.losses[0] - 0.05
    assert all(b < a for a, b in zip(res.losses, res.losses[1:]))
    assert steps[-1]["pixel"] < steps[0]["pixel"] and steps[-1]["bce"] < steps[0]["bce"]


def test_bf16_autocast_path_trains(tmp_path):
    src = synthetic_source(4)
    res32, _ = _run(src, tiny_config(classifier__epochs=1), tmp_path / "a")
    res16, _ = _run(src, tiny_config(classifier__epochs=4, amp=True), tmp_path / "b")
    assert res16.losses[0] != res32.losses[0]  # bf16 arithmetic, not the fp32 path
    assert res16.losses[0] == pytest.approx(res32.losses[0], abs=0.05)
    assert res16.losses[-1] < 0.8 * res16.losses[0]


def test_train_project_and_load_back(tmp_path):
    src = synthetic_source(4, background=True)
    project = to_project(src, tmp_path / "proj")
    cfg = tiny_config(classifier__epochs=1, classifier__kur=True, classifier__kur_alpha=2.0)
    res = train(project.path, "classifier", cfg, stream=io.StringIO())["classifier"]
    assert res.version == "classifier-0001" and project.checkpoints("classifier") == ["classifier-0001"]
    model = load_classifier(project.path, "cpu")
    assert model.classes == project.classes and not model.training
    state = torch.load(project.latest_checkpoint("classifier"), weights_only=True)
    assert state["stage"] == "classifier" and state["backbone"] == "mobilenet_v2" and state["epoch"] == 1
    # KUR is baked into a plain head: weight = alpha * W * softmax over foreground rows
    w = state["model"]["head.parametrizations.weight.original"]
    fg = w[1:]
    expected = torch.cat([w[:1], 2.0 * fg * torch.softmax(fg, dim=0)])
    assert not hasattr(model.head, "parametrizations")
    torch.testing.assert_close(model.head.weight, expected)


def test_project_without_labels_is_a_clear_error(tmp_path):
    src = synthetic_source(3)
    src.labels = {k: [] for k in src.labels}
    project = to_project(src, tmp_path / "nolabels")
    with pytest.raises(TrainingDataError, match=r"nolabels has no image-level labels"):
        train(project.path, "classifier", tiny_config(), stream=io.StringIO())


def test_bad_checkpoints_name_the_file(tmp_path):
    src = synthetic_source(4)
    res, _ = _run(src, tiny_config(classifier__epochs=1), tmp_path)
    good = tmp_path / "ck" / "classifier" / f"{res.version}.pt"
    with pytest.raises(ValueError, match=r"trained on classes \['red', 'green', 'blue'\] but the caller has classes \['a', 'b', 'c'\]"):
        load_classifier(good, "cpu", classes=["a", "b", "c"])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*broken\.pt"):
        load_classifier(broken, "cpu")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_classifier(garbage, "cpu")
    from napari_wsss.models import load_segmenter

    with pytest.raises(CheckpointError, match=r"is a 'classifier' checkpoint, expected 'segmenter'"):
        load_segmenter(good, "cpu")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_classifier(tmp_path / "missing.pt")


def test_resume_refuses_checkpoint_of_other_classes(tmp_path):
    src = synthetic_source(4)
    _run(src, tiny_config(classifier__epochs=1), tmp_path)
    other = synthetic_source(4)
    other.classes = ["cat", "dog", "cow"]
    cfg = tiny_config(classifier__epochs=2, resume=True)
    with pytest.raises(ValueError, match=r"trained on classes \['red', 'green', 'blue'\] .*\['cat', 'dog', 'cow'\]"):
        _run(other, cfg, tmp_path)


def test_project_without_checkpoint(tmp_path):
    project = to_project(synthetic_source(2), tmp_path / "fresh")
    with pytest.raises(FileNotFoundError, match=r"fresh has no classifier checkpoint"):
        load_classifier(project.path)


def test_correction_classes_join_the_image_labels():
    src = synthetic_source(2)
    corr = np.full((64, 64), 255, np.uint8)
    corr[0, 0] = 1
    src.corrections["img00"] = corr
    src.labels["img00"] = [0]
    st = build_classifier_stage(src, tiny_config().classifier, ["img00"], [])
    item = st.train_set[0]
    assert item["labels"].tolist() == [1.0, 1.0, 0.0] and bool(item["has_pixels"])


def test_channels_last_gives_the_same_step(tmp_path):
    src = synthetic_source(2)  # two steps: the second loss depends on the first update
    kw = dict(classifier__epochs=2, classifier__batch_size=2)
    a, _ = _run(src, tiny_config(**kw), tmp_path / "a")
    b, _ = _run(src, tiny_config(channels_last=True, **kw), tmp_path / "b")
    assert b.losses == pytest.approx(a.losses, abs=1e-4)


def test_occse_against_an_ordinary_classifier(tmp_path):
    src = synthetic_source(4)
    oc, _ = _run(src, tiny_config(classifier__epochs=1), tmp_path / "oc")
    oc_path = tmp_path / "oc" / "ck" / "classifier" / f"{oc.version}.pt"
    cfg = tiny_config(classifier__epochs=4, classifier__occse=True, classifier__occse_warmup=0.0,
                      classifier__occse_checkpoint=str(oc_path))
    res, lines = _run(src, cfg, tmp_path / "cse")
    steps = [x for x in lines if x["event"] == "step"]
    assert "oc" in steps[0] and steps[0]["oc_alpha"] == 1.0
    assert res.losses[-1] < res.losses[0]
    with pytest.raises(TrainingDataError, match="OC-CSE needs a trained ordinary classifier"):
        _run(src, tiny_config(classifier__occse=True), tmp_path / "none")
