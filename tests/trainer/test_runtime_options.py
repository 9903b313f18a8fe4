"""GPU/scale options take effect: AMP dtype, channels_last, torch.compile, SyncBatchNorm,
TensorBoard scalars, full checkpoints loaded safely."""

import io
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from trainer import CheckpointError, DirectoryCheckpoints, fit
from trainer.classifier import ClassifierModule
from trainer.config import config_from_dict
from trainer.distributed import Runtime, choose_amp_dtype, sync_batchnorm
from trainer.loop import train_one_epoch
from napari_wsss.models import build_segmenter
from trainer.segmenter import SegmenterModule

from conftest import synthetic_source, tiny_config
from napari_wsss.models import Classifier


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit(src, cfg, root, stage="classifier"):
    return fit(src, stage, cfg, checkpoints=DirectoryCheckpoints(root), log_dir=root / "log",
               stream=io.StringIO())


def _checkpoint(root, stage="classifier"):
    return torch.load(DirectoryCheckpoints(root).latest_checkpoint(stage), weights_only=True)


def test_amp_dtype_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert choose_amp_dtype(cpu, False, "bfloat16") is None
    assert choose_amp_dtype(cpu, True) == torch.bfloat16
    assert choose_amp_dtype(cuda, True) == torch.float16
    assert choose_amp_dtype(cuda, True, "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown amp_dtype 'fp8'; valid: auto, float16, bfloat16"):
        choose_amp_dtype(cpu, True, "fp8")
    assert Runtime(cpu, amp_dtype=torch.float16).make_scaler().is_enabled()
    assert not Runtime(cpu, amp_dtype=torch.bfloat16).make_scaler().is_enabled()


def test_fp16_on_cpu_goes_through_the_grad_scaler(tmp_path):
    src = synthetic_source(2)  # one batch, no augmentation, frozen BN: a skipped step repeats the loss
    kw = dict(classifier__epochs=4, classifier__batch_size=2, amp=True)
    bf16 = _fit(src, tiny_config(**kw), tmp_path / "bf16")
    with pytest.warns(UserWarning, match="lr_scheduler.step"):  # a skipped optimizer step
        fp16 = _fit(src, tiny_config(amp_dtype="float16", **kw), tmp_path / "fp16")
    assert fp16.losses[0] != bf16.losses[0]  # fp16 rounding, not bf16
    assert fp16.losses[0] == pytest.approx(bf16.losses[0], abs=0.02)
    # gradients overflow at the initial scale 2**16: the scaler skips the step (same weights,
    # same loss next step) and halves the scale, until a step goes through
    skipped = sum(a == b for a, b in zip(fp16.losses, fp16.losses[1:]))
    assert fp16.losses[1] == fp16.losses[0] and fp16.losses[-1] < fp16.losses[0]
    assert _checkpoint(tmp_path / "fp16")["scaler"]["scale"] == 2.0 ** (16 - skipped)
    assert _checkpoint(tmp_path / "bf16")["scaler"] == {}  # bf16 needs no scaler


class _RecordFormat(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return self.conv(x).mean()


def test_channels_last_reaches_the_model(tmp_path):
    def loss_fn(out, batch):
        return out, {}

    batch = {"image": torch.rand(2, 3, 8, 8)}
    for flag in (False, True):
        net = _RecordFormat()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        train_one_epoch(net, [batch], loss_fn, opt, device=torch.device("cpu"), channels_last=flag)
        assert net.seen == [flag]
    # fit converts the weights too: the first 3x3 conv is stored NHWC
    src = synthetic_source(2)
    for flag in (False, True):
        _fit(src, tiny_config(classifier__epochs=1, channels_last=flag), tmp_path / str(flag))
        w = _checkpoint(tmp_path / str(flag))["model"]["backbone.0.0.weight"]
        assert w.shape == (32, 3, 3, 3)
        assert w.is_contiguous(memory_format=torch.channels_last) == flag
        assert w.is_contiguous() != flag


def test_compile_option_compiles_the_training_module(tmp_path):
    from torch._dynamo.utils import counters

    src = synthetic_source(2)
    kw = dict(classifier__epochs=2, classifier__batch_size=2)
    plain = _fit(src, tiny_config(**kw), tmp_path / "plain")
    torch._dynamo.reset()
    counters.clear()
    compiled = _fit(src, tiny_config(compile=True, compile_backend="eager", **kw), tmp_path / "c")
    assert counters["frames"]["ok"] >= 1 and counters["stats"]["calls_captured"] > 100
    assert compiled.losses == pytest.approx(plain.losses, abs=1e-5)
    torch._dynamo.reset()


def test_tensorboard_scalars_are_the_logged_losses(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    src = synthetic_source(6)
    cfg = tiny_config(classifier__epochs=2, classifier__val_fraction=0.34, classifier__pixel_weight=0.0)
    res = _fit(src, cfg, tmp_path)
    acc = EventAccumulator(str(tmp_path / "log"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"classifier/loss", "classifier/lr", "classifier/bce", "classifier/val/mAP"} <= tags
    loss = acc.Scalars("classifier/loss")
    assert [e.step for e in loss] == list(range(1, len(res.losses) + 1))
    assert [e.value for e in loss] == pytest.approx(res.losses, rel=1e-6)
    assert [e.step for e in acc.Scalars("classifier/val/mAP")] == [len(res.losses) // 2, len(res.losses)]
    assert acc.Scalars("classifier/val/mAP")[-1].value == pytest.approx(res.metrics["mAP"], rel=1e-6)


def test_checkpoint_holds_everything_a_resume_needs(tmp_path):
    src = synthetic_source(4)
    cfg = tiny_config(classifier__epochs=1, classifier__scheduler="poly")
    _fit(src, cfg, tmp_path)
    state = _checkpoint(tmp_path)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "batch_in_epoch", "config",
            "classes", "background", "backbone", "stage", "rng"} <= set(state)
    assert state["classes"] == ["red", "green", "blue"] and state["background"] is None
    assert (state["epoch"], state["step"], state["scheduler"]["last_epoch"]) == (1, 1, 1)
    assert len(state["optimizer"]["param_groups"]) == 2  # backbone and head learning rates
    assert state["optimizer"]["state"]  # momentum buffers
    assert config_from_dict(state["config"]) == cfg


class _Touch:
    """Unpickling this (with weights_only=False) would create a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_checkpoints_load_with_weights_only(tmp_path):
    src = synthetic_source(2)
    _fit(src, tiny_config(classifier__epochs=1), tmp_path)
    path = DirectoryCheckpoints(tmp_path).latest_checkpoint("classifier")
    state = torch.load(path, weights_only=True)
    marker = tmp_path / "code-ran"
    state["extra"] = _Touch(marker)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*classifier-0001\.pt"):
        _fit(src, tiny_config(classifier__epochs=2, resume=True), tmp_path)
    assert not marker.exists()


def test_resume_errors_name_the_checkpoint(tmp_path):
    src = synthetic_source(2)
    _fit(src, tiny_config(classifier__epochs=1), tmp_path)
    other = tiny_config(classifier__epochs=2, resume=True)
    other.classifier.backbone, other.classifier.weights = "mobilenet_v3_small", None
    with pytest.raises(CheckpointError, match=r"checkpoint .*classifier-0001\.pt does not fit the model"):
        _fit(src, other, tmp_path)
    path = DirectoryCheckpoints(tmp_path).latest_checkpoint("classifier")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*classifier-0001\.pt: the file is corrupted"):
        _fit(src, tiny_config(classifier__epochs=2, resume=True), tmp_path)


def test_sync_batchnorm_keeps_frozen_layers_in_eval():
    net = Classifier("mobilenet_v2", 3, weights=None)
    module = ClassifierModule(net, freeze_bn=True)
    cuda = Runtime(torch.device("cuda", 0), world_size=2)
    assert sync_batchnorm(module, cuda) is module  # converted in place (no GPU needed for that)
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    assert all(isinstance(m, nn.SyncBatchNorm) for m in net.modules() if "BatchNorm" in type(m).__name__)
    module.train()
    assert module.training and not any(m.training for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())

    seg = SegmenterModule(build_segmenter("mobilenet_v2", 3), freeze_bn=True)
    sync_batchnorm(seg, cuda).train()
    enc = [m for m in seg.net.encoder.modules() if isinstance(m, nn.SyncBatchNorm)]
    dec = [m for m in seg.net.decoder.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert enc and dec and not any(m.training for m in enc) and all(m.training for m in dec)


def test_cpu_ddp_warns_when_batchnorm_trains():
    cpu2 = Runtime(torch.device("cpu"), world_size=2)
    frozen = ClassifierModule(Classifier("mobilenet_v2", 3, weights=None), freeze_bn=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sync_batchnorm(frozen, cpu2) is frozen
    seg = SegmenterModule(build_segmenter("mobilenet_v2", 3), freeze_bn=False)
    with pytest.warns(UserWarning, match=r"BatchNorm layers train with per-process statistics"):
        sync_batchnorm(seg, cpu2)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in seg.modules())



def test_loader_workers_give_the_same_augmented_batches(tmp_path):
    src = synthetic_source(4)
    kw = dict(augment=True, classifier__epochs=2, classifier__batch_size=2)
    main = _fit(src, tiny_config(**kw), tmp_path / "w0")
    workers = _fit(src, tiny_config(num_workers=2, **kw), tmp_path / "w2")
    assert len(main.losses) == 4 and len(set(main.losses)) == 4
    assert workers.losses == pytest.approx(main.losses, abs=1e-6)
