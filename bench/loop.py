"""Benchmark the shared training loop against a bare PyTorch loop (and, later, correction quality).

Throughput: the same classifier, the same batch, the same optimiser; the bare loop is the
textbook ``forward / loss / zero_grad / backward / step`` on a pre-normalised tensor, ours is
``trainer.loop.train_one_epoch`` with everything it does per step (device transfer and
normalisation, loss parts, scheduler, global loss, JSON progress line). Rounds alternate
between the two loops so load from other processes hits both alike.

    python bench/loop.py                       # CPU defaults: mobilenet_v2, 8 x 160 px
    python bench/loop.py --device cuda --batch 32 --size 320 --amp

Correction quality on MSRC-v2 (``correction_quality``) waits for ``napari_wsss.pipeline``.
"""

from __future__ import annotations

import argparse
import io
import time

import torch
import torch.nn.functional as F

from napari_wsss.models import Classifier, normalize
from trainer.classifier import ClassifierModule
from trainer.distributed import autocast, choose_device
from trainer.loop import ProgressLogger, train_one_epoch
from trainer.losses import ClassifierLoss


def _batch(n: int, size: int, classes: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, classes, generator=g) < 0.2).float()
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "labels": labels,
        "mask": torch.full((n, size, size), 255, dtype=torch.long),
        "has_pixels": torch.zeros(n, dtype=torch.bool),
    }


def _model(backbone: str, classes: int, device) -> Classifier:
    torch.manual_seed(0)
    return Classifier(backbone, classes, weights=None).to(device)


def bare_round(net, batch, steps, *, device, amp_dtype) -> float:
    """Seconds for ``steps`` textbook steps (input already normalised on the device)."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = normalize(batch["image"].to(device))
    y = batch["labels"].to(device)
    net.train()
    t = time.perf_counter()
    for _ in range(steps):
        with autocast(device, amp_dtype):
            logits = net(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())
    return time.perf_counter() - t


def ours_round(net, batch, steps, *, device, amp_dtype) -> float:
    """Seconds for ``steps`` steps of ``train_one_epoch`` (host batch, logging on)."""
    module = ClassifierModule(net)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / (10 * steps)) ** 0.9)
    loss_fn = ClassifierLoss(batch["labels"].shape[1])
    logger = ProgressLogger("bench", steps, epochs=1, stream=io.StringIO())
    t = time.perf_counter()
    train_one_epoch(module, [batch] * steps, loss_fn, opt, sched, device=device,
                    total_steps=steps, amp_dtype=amp_dtype, logger=logger)
    return time.perf_counter() - t


def throughput(*, backbone="mobilenet_v2", batch=8, size=160, classes=23, steps=5, rounds=6,
               device="auto", amp=False) -> list[dict]:
    """Images per second of both loops (best of alternating rounds) and their ratio.

    The best round estimates each loop's own cost; other processes only ever add time.
    """
    dev = choose_device(device)
    amp_dtype = (torch.float16 if dev.type == "cuda" else torch.bfloat16) if amp else None
    data = _batch(batch, size, classes)
    nets = {"bare PyTorch": _model(backbone, classes, dev), "trainer.loop": _model(backbone, classes, dev)}
    runs = {"bare PyTorch": bare_round, "trainer.loop": ours_round}
    for name, fn in runs.items():  # warm-up (allocator, kernels)
        fn(nets[name], data, 2, device=dev, amp_dtype=amp_dtype)
    times = {name: [] for name in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            times[name].append(runs[name](nets[name], data, steps, device=dev, amp_dtype=amp_dtype))
    base = batch * steps / min(times["bare PyTorch"])
    rows = []
    for name in runs:
        ips = batch * steps / min(times[name])
        rows.append({"loop": name, "images/s": ips, "steps/s": ips / batch, "ratio": ips / base})
    return rows


def correction_quality(dataset_dir="/work/shared/datasets/msrc_v2", **kwargs) -> list[dict]:
    """MSRC-v2: how much retraining on simulated corrections improves pseudo-masks.

    Protocol (to implement once ``napari_wsss.pipeline`` exists): build a project from
    ``dataset_dir`` (images + image_labels.csv), train the classifier, prelabel, score
    the "crf"/"rw" masks against ``masks/`` (mIoU, 255 = void); then paint simulated
    corrections (a few ground-truth pixels per image where the mask is wrong), retrain
    with ``pixel_weight`` in {0, 0.1, 0.5}, prelabel again and report mIoU and the
    classifier's mAP per weight, next to the uncorrected baseline.
    """
    raise NotImplementedError("correction_quality needs napari_wsss.pipeline (not merged yet)")


def _table(rows: list[dict]) -> str:
    head = f"{'loop':<14} {'images/s':>10} {'steps/s':>9} {'ratio':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['loop']:<14} {r['images/s']:>10.2f} {r['steps/s']:>9.3f} {r['ratio']:>7.3f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--quality", action="store_true", help="also run the MSRC-v2 correction benchmark")
    a = p.parse_args(argv)
    rows = throughput(backbone=a.backbone, batch=a.batch, size=a.size, steps=a.steps,
                      rounds=a.rounds, device=a.device, amp=a.amp)
    print(f"{a.backbone}, batch {a.batch} x {a.size} px, {a.steps} steps x {a.rounds} rounds, "
          f"device {choose_device(a.device)}, amp {a.amp}")
    print(_table(rows))
    if a.quality:
        correction_quality()


if __name__ == "__main__":
    main()
