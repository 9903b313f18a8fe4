"""Benchmark the shared training loop: throughput and memory vs a bare PyTorch loop; correction quality.

Throughput: the same classifier, the same batch, the same optimiser; the bare loop is the
textbook ``forward / loss / zero_grad / backward / step`` on a tensor already normalised on
the device, ours is ``trainer.loop.train_one_epoch`` with everything it does per step (host
-> device transfer and normalisation, loss parts, scheduler, global loss, JSON progress line).
Rounds alternate between the two loops so load from other processes hits both alike; the
best round counts. With AMP both loops autocast to the same dtype (fp16 with a GradScaler
on CUDA, bf16 on CPU, or ``--amp-dtype``); with channels_last both run NHWC.

Peak memory is what a loop's first steps allocate above what was there before them (the
weights and the input batch): activations, gradients, optimiser state, workspace. On CUDA
``torch.cuda.max_memory_allocated``; on CPU the growth of the peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs``) of a fresh subprocess per loop and
setting, so no freed-but-kept heap of an earlier run hides it.

    python bench/loop.py --matrix                       # AMP off/on x channels_last off/on
    python bench/loop.py --matrix --device cuda --batch 32 --size 320
    OMP_NUM_THREADS=1 python bench/loop.py --matrix --batch 4 --size 96   # small CPU run
    python bench/loop.py --amp --channels-last          # one setting

Correction quality on MSRC-v2 (``--quality``, :func:`correction_quality`): classifiers trained
on the 70 % split with image labels only and with ground-truth corrections on 5 % / 20 % of
its images (pixel loss on the CAMs), scored on the held-back 30 % (mAP, CAM+TTA and +CRF
mIoU). Projects, checkpoints and CAMs are cached in ``--work``. ``--seeds`` repeats it with
other splits and initialisations and reports mean ± standard deviation::

    python bench/loop.py --quality                          # 3 runs x 6 epochs (~30 min, 2 CPU cores)
    python bench/loop.py --quality --seeds 0 1 2            # mean ± std over three splits
    python bench/loop.py --quality --subset 40 --epochs 1   # smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from napari_wsss.device import choose_device
from napari_wsss.models import Classifier, normalize
from trainer.classifier import ClassifierModule
from trainer.distributed import autocast, choose_amp_dtype
from trainer.loop import ProgressLogger, train_one_epoch
from trainer.losses import ClassifierLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import add_data_argument, work_dir  # noqa: E402
from _loop_quality import (  # noqa: E402
    correction_quality,
    quality_table,
    shapes_correction_quality,
    shapes_table,
    summarize_seeds,
)
from _msrc import use_data  # noqa: E402

__all__ = ["throughput", "matrix", "memory_probe", "PeakRSS", "correction_quality", "summarize_seeds"]

AMP_NAMES = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16 + GradScaler"}
LOOPS = ("trainer.loop", "bare PyTorch")


def _batch(n: int, size: int, classes: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, classes, generator=g) < 0.2).float()
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "labels": labels,
        "mask": torch.full((n, size, size), 255, dtype=torch.long),
        "has_pixels": torch.zeros(n, dtype=torch.bool),
    }


def _model(backbone: str, classes: int, device, channels_last: bool) -> Classifier:
    torch.manual_seed(0)
    net = Classifier(backbone, classes, weights=None).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareLoop:
    """The textbook loop; the input is normalised (and made NHWC) on the device once."""

    def __init__(self, net, batch, *, device, amp_dtype=None, channels_last=False, compile=False):
        self.net, self.device, self.amp_dtype = net, device, amp_dtype
        self.forward = torch.compile(net) if compile else net
        self.opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        x = normalize(batch["image"].to(device))
        self.x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        self.y = batch["labels"].to(device)

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        self.net.train()
        t = time.perf_counter()
        for _ in range(steps):
            with autocast(self.device, self.amp_dtype):
                logits = self.forward(self.x)
                loss = F.binary_cross_entropy_with_logits(logits.float(), self.y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        float(loss.detach())
        _sync(self.device)
        return time.perf_counter() - t


class OurLoop:
    """``train_one_epoch`` on a host batch (pinned on CUDA, as the trainer's DataLoader does)."""

    def __init__(self, net, batch, *, device, amp_dtype=None, channels_last=False, compile=False):
        self.device, self.amp_dtype, self.channels_last = device, amp_dtype, channels_last
        module = ClassifierModule(net)
        self.module = torch.compile(module) if compile else module
        self.opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        self.total = 10**6
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: (1 - s / self.total) ** 0.9)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.loss_fn = ClassifierLoss(batch["labels"].shape[1])
        self.batch = {k: v.pin_memory() for k, v in batch.items()} if device.type == "cuda" else batch
        self.step = 0

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps (progress logging on, into a string)."""
        logger = ProgressLogger("bench", self.total, epochs=1, stream=io.StringIO())
        t = time.perf_counter()
        r = train_one_epoch(self.module, [self.batch] * steps, self.loss_fn, self.opt, self.sched,
                            device=self.device, step=self.step, total_steps=self.total,
                            scaler=self.scaler, amp_dtype=self.amp_dtype,
                            channels_last=self.channels_last, logger=logger)
        _sync(self.device)
        self.step += r.steps
        return time.perf_counter() - t


def _loop(name: str, *, backbone, batch, size, classes, device, amp_dtype, channels_last, compile):
    cls = {"trainer.loop": OurLoop, "bare PyTorch": BareLoop}[name]
    net = _model(backbone, classes, device, channels_last)
    return cls(net, _batch(batch, size, classes), device=device, amp_dtype=amp_dtype,
               channels_last=channels_last, compile=compile)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith(field + ":")))


class PeakRSS:
    """``with PeakRSS() as m: ...`` -> ``m.mib``: peak resident set size above the start (MiB).

    Resets the kernel's high-water mark (``VmHWM``) through ``/proc/self/clear_refs``; where
    that file cannot be written, ``ru_maxrss`` is used (``method`` says so), which also
    counts earlier peaks of the process.
    """

    def __enter__(self):
        self.base = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "peak RSS growth (VmHWM)"
        except OSError:
            self.method = "peak RSS growth (ru_maxrss)"
        return self

    def __exit__(self, *exc):
        peak = (_status_kib("VmHWM") if "VmHWM" in self.method
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        self.mib = (peak - self.base) / 1024
        return False


def memory_probe(name: str, *, steps: int = 2, **setting) -> dict:
    """Peak memory of the first ``steps`` steps of loop ``name`` in this process.

    CUDA: ``max_memory_allocated`` above the allocation before the steps. CPU: peak RSS
    above the RSS before the steps (:class:`PeakRSS`). Meant for a fresh process (see
    :func:`matrix`).

    Returns
    -------
    dict
        ``peak_mib`` and ``method``.
    """
    loop = _loop(name, **setting)
    device = setting["device"]
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        loop.run(steps)
        return {"peak_mib": (torch.cuda.max_memory_allocated(device) - base) / 2**20,
                "method": "torch.cuda.max_memory_allocated"}
    with PeakRSS() as m:
        loop.run(steps)
    return {"peak_mib": m.mib, "method": m.method}


def _probe_in_subprocess(name: str, a: argparse.Namespace, amp: bool, channels_last: bool) -> dict:
    cmd = [sys.executable, __file__, "--memory-probe", name, "--backbone", a.backbone,
           "--batch", str(a.batch), "--size", str(a.size), "--device", a.device,
           "--amp-dtype", a.amp_dtype, "--threads", str(torch.get_num_threads())]
    cmd += ["--amp"] * amp + ["--channels-last"] * channels_last + ["--compile"] * a.compile
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if out.returncode:
        raise RuntimeError(f"memory probe {' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(*, backbone="mobilenet_v2", batch=8, size=160, classes=23, steps=5, rounds=6,
               device="auto", amp=False, amp_dtype="auto", channels_last=False,
               compile=False) -> dict:
    """Images per second of both loops at one setting (best of alternating rounds).

    The best round estimates each loop's own cost; other processes only ever add time.

    Returns
    -------
    dict
        ``amp`` (name of the autocast setting), ``channels_last``, ``<loop> images/s`` for
        both loops and ``ratio`` (ours / bare).
    """
    dev = choose_device(device)
    dtype = choose_amp_dtype(dev, amp, amp_dtype)
    setting = dict(backbone=backbone, batch=batch, size=size, classes=classes, device=dev,
                   amp_dtype=dtype, channels_last=channels_last, compile=compile)
    loops = {name: _loop(name, **setting) for name in LOOPS}
    for loop in loops.values():  # warm-up (allocator, kernels, compilation)
        loop.run(2)
    times = {name: [] for name in loops}
    for r in range(rounds):
        for name in (LOOPS if r % 2 == 0 else LOOPS[::-1]):
            times[name].append(loops[name].run(steps))
    row = {"amp": AMP_NAMES[dtype], "channels_last": channels_last}
    for name in LOOPS:
        row[f"{name} images/s"] = batch * steps / min(times[name])
    row["ratio"] = row["trainer.loop images/s"] / row["bare PyTorch images/s"]
    return row


def matrix(a: argparse.Namespace, settings) -> tuple[list[dict], str]:
    """:func:`throughput` and, per loop, :func:`memory_probe` (CPU: in a fresh subprocess)
    for each ``(amp, channels_last)`` of ``settings``; returns the rows and the memory method."""
    rows, method = [], ""
    dev = choose_device(a.device)
    for amp, cl in settings:
        row = throughput(backbone=a.backbone, batch=a.batch, size=a.size, steps=a.steps,
                         rounds=a.rounds, device=a.device, amp=amp, amp_dtype=a.amp_dtype,
                         channels_last=cl, compile=a.compile)
        for name in LOOPS:
            if dev.type == "cuda":
                probe = memory_probe(name, backbone=a.backbone, batch=a.batch, size=a.size, classes=23,
                                     device=dev, amp_dtype=choose_amp_dtype(dev, amp, a.amp_dtype),
                                     channels_last=cl, compile=a.compile)
            else:
                probe = _probe_in_subprocess(name, a, amp, cl)
            row[f"{name} peak MiB"], method = probe["peak_mib"], probe["method"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows, method


def matrix_table(rows: list[dict]) -> str:
    """Markdown table of :func:`matrix` rows."""
    out = ["| AMP | channels_last | trainer.loop images/s | bare images/s | ratio "
           "| trainer.loop peak MiB | bare peak MiB |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['amp']} | {'on' if r['channels_last'] else 'off'} "
                   f"| {r['trainer.loop images/s']:.2f} | {r['bare PyTorch images/s']:.2f} "
                   f"| {r['ratio']:.3f} | {r['trainer.loop peak MiB']:.0f} "
                   f"| {r['bare PyTorch peak MiB']:.0f} |")
    return "\n".join(out)


def _describe(a: argparse.Namespace) -> str:
    dev = choose_device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    return (f"{a.backbone}, batch {a.batch} x {a.size} px, {a.steps} steps x {a.rounds} rounds "
            f"(best round), {name}, torch {torch.__version__}" + (", torch.compile" if a.compile else ""))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="one setting: mixed precision")
    p.add_argument("--amp-dtype", default="auto", choices=("auto", "float16", "bfloat16"),
                   help="autocast dtype (auto: fp16 + GradScaler on CUDA, bf16 on CPU)")
    p.add_argument("--channels-last", action="store_true", help="one setting: NHWC")
    p.add_argument("--compile", action="store_true", help="torch.compile both loops' models")
    p.add_argument("--matrix", action="store_true", help="AMP off/on x channels_last off/on")
    p.add_argument("--memory-probe", choices=LOOPS, help=argparse.SUPPRESS)
    p.add_argument("--quality", action="store_true",
                   help="run the MSRC-v2 correction benchmark instead of the throughput one")
    p.add_argument("--dataset", choices=("msrc", "shapes"), default="msrc",
                   help="quality: MSRC-v2 (no background) or the shapes sample (background; pseudo-masks "
                        "at the project's default threshold, pixel-loss background rules compared)")
    add_data_argument(p)  # only --quality reads MSRC-v2
    p.add_argument("--work", default=work_dir("wsss-loop"), help="quality: projects, checkpoints, CAMs")
    p.add_argument("--epochs", type=int, default=6, help="quality: classifier epochs")
    p.add_argument("--subset", type=int, default=None, help="quality: use only this many images")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.05, 0.2],
                   help="quality: shares of the train split with corrections")
    p.add_argument("--pixel-weight", type=float, default=0.1, help="quality: classifier.pixel_weight")
    p.add_argument("--crf", default=None, help="quality: JSON kwargs of crf_refine (default: tuned)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="quality: several seeds (split, corrected images, initialisation); mean ± std")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (quality default 2; throughput default: torch's)")
    return p


def _quality(a: argparse.Namespace) -> None:
    seeds = a.seeds if a.seeds is not None else [a.seed]
    if a.dataset == "shapes":
        rows = [r for s in seeds for r in shapes_correction_quality(
            work=a.work, fractions=a.fractions, epochs=a.epochs, seed=s, pixel_weight=a.pixel_weight,
            threads=a.threads or 1)]
        print(f"shapes correction quality: {a.epochs} epochs, seed(s) {' '.join(map(str, seeds))}, "
              f"pixel_weight {a.pixel_weight}")
        print(shapes_table(rows), flush=True)
        return
    use_data(a.data)
    runs = [correction_quality(work=a.work, fractions=a.fractions, epochs=a.epochs, subset=a.subset,
                               seed=s, pixel_weight=a.pixel_weight, threads=a.threads or 2,
                               crf=None if a.crf is None else json.loads(a.crf))
            for s in seeds]
    spread = " (mean ± sample std over seeds)" if len(seeds) > 1 else ""
    print(f"MSRC-v2 correction quality: {a.epochs} epochs, subset {a.subset}, "
          f"seed(s) {' '.join(map(str, seeds))}{spread}, pixel_weight {a.pixel_weight}")
    print(quality_table(summarize_seeds(runs) if len(seeds) > 1 else runs[0]), flush=True)


def main(argv=None) -> None:
    a = _parser().parse_args(argv)
    if a.quality:
        _quality(a)
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.memory_probe:
        dev = choose_device(a.device)
        print(json.dumps(memory_probe(
            a.memory_probe, backbone=a.backbone, batch=a.batch, size=a.size, classes=23, device=dev,
            amp_dtype=choose_amp_dtype(dev, a.amp, a.amp_dtype), channels_last=a.channels_last,
            compile=a.compile)))
        return
    settings = ([(amp, cl) for amp in (False, True) for cl in (False, True)] if a.matrix
                else [(a.amp, a.channels_last)])
    rows, method = matrix(a, settings)
    print(_describe(a) + f"; peak memory: {method} above the weights and input batch")
    print(matrix_table(rows), flush=True)


if __name__ == "__main__":
    main()
