"""Benchmark the shared training loop: throughput vs a bare PyTorch loop; correction quality.

Throughput: the same classifier, the same batch, the same optimiser; the bare loop is the
textbook ``forward / loss / zero_grad / backward / step`` on a pre-normalised tensor, ours is
``trainer.loop.train_one_epoch`` with everything it does per step (device transfer and
normalisation, loss parts, scheduler, global loss, JSON progress line). Rounds alternate
between the two loops so load from other processes hits both alike.

    python bench/loop.py                       # CPU defaults: mobilenet_v2, 8 x 160 px
    python bench/loop.py --device cuda --batch 32 --size 320 --amp

Correction quality on MSRC-v2 (``--quality``, :func:`correction_quality`): classifiers trained
on the 70 % split with image labels only and with ground-truth corrections on 5 % / 20 % of
its images (pixel loss on the CAMs), scored on the held-back 30 % (mAP, CAM+TTA and +CRF
mIoU). Projects, checkpoints and CAMs are cached in ``--work``::

    python bench/loop.py --quality                          # 3 runs x 6 epochs (~30 min, 2 CPU cores)
    python bench/loop.py --quality --subset 40 --epochs 1   # smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_wsss.models import Classifier, normalize
from trainer.classifier import ClassifierModule
from trainer.distributed import autocast, choose_device
from trainer.loop import ProgressLogger, train_one_epoch
from trainer.losses import ClassifierLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _msrc import read_gt, split_ids, split_project  # noqa: E402
from quality import TUNED_CRF, _digest, _log, _pipeline, _Scores, _train_stage  # noqa: E402

from napari_wsss.models import to_tensor  # noqa: E402
from napari_wsss.pipeline import PipelineConfig  # noqa: E402
from trainer import load_classifier  # noqa: E402
from trainer.classifier import MeanAveragePrecision  # noqa: E402


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


def _corrected_project(path, train_ids, corrected):
    """Train-split project whose images ``corrected`` carry their ground truth as corrections.

    Every other image has none (a reused project is checked, so a cached run cannot mix
    correction sets).
    """
    project = split_project(path, train_ids)
    wanted = set(corrected)
    for i in train_ids:
        has = bool(np.any(np.asarray(project.read_corrections(i)) != 255))
        if i in wanted and not has:
            project.write_corrections(i, read_gt(i))
        elif i not in wanted and has:
            raise RuntimeError(f"{project.path}: image {i!r} has corrections but should not; "
                               "delete the project folder to rebuild it")
    return project


def _score_run(train_proj, test_proj, test_ids, *, cfg, cache_root) -> dict:
    """Classifier mAP and CAM+TTA / +CRF mIoU of one trained project on the test split."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classes = list(test_proj.classes)
    model = load_classifier(train_proj, device, classes=classes)
    version = f"{train_proj.path.name}-{train_proj.checkpoints('classifier')[-1]}"
    pipe, cache = _pipeline(model, classes, version, cfg, cache_root,
                            "tta-" + "-".join(f"{s:g}" for s in cfg.scales) + ("-flip" * cfg.flip))
    scores, amap = _Scores(len(classes)), MeanAveragePrecision(list(range(len(classes))))
    for image_id in test_ids:
        image, labels, gt = test_proj.image(image_id), test_proj.image_labels(image_id), read_gt(image_id)
        y = torch.zeros(1, len(classes))
        y[0, labels] = 1
        with torch.inference_mode():
            amap.update({"logits": model(to_tensor(image, device))}, {"labels": y})
        cache.image_id = image_id
        props = pipe.run(image, labels)
        scores.add("cam", props.masks["cam"], gt)
        scores.add("crf", props.masks["crf"], gt)
    return {"mAP": amap.compute()["mAP"], "cam": scores.get("cam").miou, "crf": scores.get("crf").miou}


def correction_quality(*, work="/tmp/wsss-loop", fractions=(0.0, 0.05, 0.2), epochs=6,
                       subset=None, seed=0, test_fraction=0.3, crop=224, batch=16,
                       pixel_weight=0.1, scales=None, crf=None, max_side=512,
                       threads=2) -> list[dict]:
    """MSRC-v2: pseudo-mask quality after training with corrections on a share of the images.

    The 70/30 split of ``bench/quality.py`` (same ``seed``); one classifier per entry of
    ``fractions``, trained on the image labels of the train split plus the ground-truth masks
    of ``round(fraction * n_train)`` of its images written with ``Project.write_corrections``
    (a stand-in for an annotator; the sets are nested: the first images of one seeded
    permutation). The classifier stage uses them through its pixel loss on the CAMs
    (``classifier.pixel_weight``). Each run is scored on the test split: classifier mAP,
    mIoU of the TTA CAMs and of their dense-CRF refinement (``TUNED_CRF`` unless ``crf``).
    Projects, checkpoints and CAMs are cached under ``work``.

    Returns
    -------
    list of dict
        One per fraction: ``fraction``, ``corrected`` (images), ``mAP``, ``cam``, ``crf``
        (mIoU in [0, 1]), ``train_s`` (seconds of training, 0 when reused).
    """
    work = Path(work)
    torch.set_num_threads(threads)
    train_ids, test_ids = split_ids(test_fraction=test_fraction, seed=seed, subset=subset)
    tag = f"s{seed}-n{len(train_ids)}"
    _log(f"split: {len(train_ids)} train / {len(test_ids)} test images; work dir {work}")
    test_proj = split_project(work / f"test-{tag}", test_ids)
    order = [train_ids[i] for i in np.random.default_rng(seed).permutation(len(train_ids))]
    over = [f"classifier.{k}" for k in ("optimizer=adamw", "lr=0.0003", "head_lr_mult=10",
                                        f"batch_size={batch}", f"crop_size={crop}",
                                        f"pixel_weight={pixel_weight}")]
    cfg = PipelineConfig(scales=tuple(scales or PipelineConfig().scales), flip=True, refine=("crf",),
                         crf=dict(TUNED_CRF if crf is None else crf), max_side=max_side)
    rows = []
    for fraction in fractions:
        n_corr = int(round(fraction * len(train_ids)))
        proj = _corrected_project(work / f"train-{tag}-e{epochs}-c{n_corr}-{_digest(over)}",
                                  train_ids, order[:n_corr])
        t = time.perf_counter()
        _train_stage(proj, "classifier", over, epochs, threads=threads, seed=seed)
        train_s = time.perf_counter() - t
        res = _score_run(proj, test_proj, test_ids, cfg=cfg, cache_root=work / "cams")
        rows.append({"fraction": fraction, "corrected": n_corr, "train_s": train_s, **res})
        _log(f"{n_corr} corrected: mAP {res['mAP']:.3f}, CAM+TTA {res['cam']:.3f}, +CRF {res['crf']:.3f}")
    return rows


def _quality_table(rows: list[dict]) -> str:
    out = ["| run | corrected images | classifier mAP % | CAM+TTA mIoU % | +CRF mIoU % |",
           "|---|---:|---:|---:|---:|"]
    for r in rows:
        name = "image labels only" if r["corrected"] == 0 else f"+ corrections on {100 * r['fraction']:g} %"
        out.append(f"| {name} | {r['corrected']} | {100 * r['mAP']:.1f} | {100 * r['cam']:.1f} "
                   f"| {100 * r['crf']:.1f} |")
    return "\n".join(out)


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
    p.add_argument("--quality", action="store_true",
                   help="run the MSRC-v2 correction benchmark instead of the throughput one")
    p.add_argument("--work", default="/tmp/wsss-loop", help="quality: projects, checkpoints, CAMs")
    p.add_argument("--epochs", type=int, default=6, help="quality: classifier epochs")
    p.add_argument("--subset", type=int, default=None, help="quality: use only this many images")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.05, 0.2],
                   help="quality: shares of the train split with corrections")
    p.add_argument("--pixel-weight", type=float, default=0.1, help="quality: classifier.pixel_weight")
    p.add_argument("--crf", default=None, help="quality: JSON kwargs of crf_refine (default: tuned)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    if a.quality:
        rows = correction_quality(work=a.work, fractions=a.fractions, epochs=a.epochs, subset=a.subset,
                                  seed=a.seed, pixel_weight=a.pixel_weight, threads=a.threads,
                                  crf=None if a.crf is None else json.loads(a.crf))
        print(f"MSRC-v2 correction quality: {a.epochs} epochs, subset {a.subset}, seed {a.seed}, "
              f"pixel_weight {a.pixel_weight}")
        print(_quality_table(rows), flush=True)
        return
    rows = throughput(backbone=a.backbone, batch=a.batch, size=a.size, steps=a.steps,
                      rounds=a.rounds, device=a.device, amp=a.amp)
    print(f"{a.backbone}, batch {a.batch} x {a.size} px, {a.steps} steps x {a.rounds} rounds, "
          f"device {choose_device(a.device)}, amp {a.amp}")
    print(_table(rows))


if __name__ == "__main__":
    main()
