"""CAM speed: napari_wsss.cams against pytorch-grad-cam, per image, in one run.

Usage::

    python bench/cams.py [--size 448] [--labels 1 3 6] [--repeats 3]
                         [--score-model resnet18] [--score-size 64]
                         [--score-batch 32] [--their-score-batch 16] [--skip-score]

Part 1 (ResNet-50, random init, ``--size`` px, batch of 1): Grad-CAM, Grad-CAM++ and
Layer-CAM for 1, 3 and 6 labels, plus our CAM / MinMax-CAM / D-MinMax-Grad-CAM. Ours
explains all labels of the image with one forward pass and one batched backward through
the head; pytorch-grad-cam explains one label per call (a forward and a full backward
each). Every timing is the minimum over ``--repeats`` interleaved runs, and each one is
interleaved with a plain ``torch.no_grad`` forward pass: "/ fwd" divides by the fastest
of those forwards (the machine is shared; the minimum is the least disturbed run).
"min r" is the smallest per-label Pearson r between our maps and theirs, ours
post-processed as pytorch-grad-cam does (ReLU, min-max, bilinear resize, min-max; for
Grad-CAM++ with their epsilon ``eps=1e-6``).

Part 2 (Score-CAM): pytorch-grad-cam's Score-CAM runs one masked forward per channel *per
label* (~860 s per label for ResNet-50 at 448 px on this machine), so this part uses
``--score-model`` at ``--score-size`` px (default ResNet-18 at 64 px: 512 channels of
2x2) and says so in its rows. Ours runs with pytorch-grad-cam's weighting
(``weighting="softmax", align_corners=True``), so both produce the same maps ("min r").
Each library runs at its default masked-forward batch (ours 32, theirs 16); one more row
uses the same batch for both.

Part 3: our methods on MobileNetV2 and EfficientNet-Lite0 at ``--size`` px.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from napari_wsss import cams
from napari_wsss.device import choose_device
import napari_wsss.cams._hooks  # noqa: F401  (LayerCapture, to count constant channels)
from napari_wsss.models import build_torchvision_model

THEIRS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM}
OURS_ONLY = ("cam", "minmax-cam", "d-minmax-gradcam")  # no pytorch-grad-cam counterpart


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def labels_for(k: int, num_classes: int, seed: int = 0) -> list[int]:
    return sorted(np.random.default_rng(seed + k).choice(num_classes, size=k, replace=False).tolist())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; two flat (all-zero) maps count as identical."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def their_style(maps: torch.Tensor, size) -> np.ndarray:
    return cams.normalize(cams.upsample(cams.normalize(maps), size)).cpu().numpy()


def row(model, size, method, k, ours, fwd, theirs=None, note="", r=None) -> str:
    cells = [model, str(size), method, str(k), f"{ours:.3f}", f"{ours / fwd:.2f}x"]
    if theirs is None:
        cells += ["-", "-", "-"]
    else:
        cells += [f"{theirs:.3f}", f"{theirs / fwd:.2f}x", f"{theirs / ours:.1f}x"]
    cells += ["-" if r is None else f"{r:.4f}", note]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | px | method | labels | ours s/img | ours / fwd | pytorch-grad-cam s/img | theirs / fwd "
    "| speed-up | min r | note |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def gradient_family(name: str, size: int, ks, repeats: int, compare: bool, device) -> list[str]:
    """Rows for one backbone; every timing is interleaved with a plain forward pass."""
    torch.manual_seed(0)
    model = build_torchvision_model(name).to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    layer_name, layer = cams.resolve_layer(model)

    def fwd():
        with torch.no_grad():
            model(x)

    for _ in range(3):  # warm-up: the first passes at a new size allocate and pick kernels
        fwd()
    methods = [m for m in (*THEIRS, *OURS_ONLY) if not (m == "cam" and name.startswith("mobilenet_v3"))]
    fwd_t: list[float] = []
    ours_t: dict = {}
    theirs_t: dict = {}
    r: dict = {}
    for rep in range(repeats):
        for k in ks:
            labels = labels_for(k, 1000)
            for method in methods:
                def ours_fn():
                    return cams.compute(model, x, [labels], method=method)

                if rep == 0:
                    ours_fn()  # warm-up
                fwd_t.append(best_time(fwd, 1))
                ours_t.setdefault((method, k), []).append(best_time(ours_fn, 1))
                if not compare or method not in THEIRS:
                    continue
                with THEIRS[method](model, [layer]) as cam:
                    def theirs_fn():
                        return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0] for c in labels]

                    if rep == 0:
                        theirs_maps = theirs_fn()  # warm-up, and the maps to compare
                        opts = {"eps": 1e-6} if method == "gradcam++" else {}
                        ours_maps = their_style(cams.compute(model, x, [labels], method=method, **opts), (size, size))
                        r[(method, k)] = min(pearson(o, t) for o, t in zip(ours_maps[0], theirs_maps))
                    theirs_t.setdefault((method, k), []).append(best_time(theirs_fn, 1))
    f = min(fwd_t)
    rows = [row(name, size, "forward (no_grad)", 0, f, f, note=f"target layer {layer_name}")]
    for k in ks:
        for method in methods:
            t = theirs_t.get((method, k))
            rows.append(row(name, size, method, k, min(ours_t[(method, k)]), f, None if t is None else min(t),
                            r=r.get((method, k))))
    return rows


def score_cam(name: str, size: int, ks, batch_size: int, their_batch: int, device) -> list[str]:
    """Score-CAM rows: ours with pytorch-grad-cam's weighting, so the outputs are the same maps."""
    torch.manual_seed(0)
    model = build_torchvision_model(name).to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    layer_name, layer = cams.resolve_layer(model)

    def fwd():
        with torch.no_grad():
            model(x)

    for _ in range(3):
        fwd()
    f = best_time(fwd, 5)

    def theirs(labels, bs):
        with ScoreCAM(model, [layer]) as cam, contextlib.redirect_stderr(io.StringIO()):
            cam.batch_size = bs
            t0 = time.perf_counter()
            maps = [cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0] for c in labels]
            return maps, time.perf_counter() - t0

    with torch.no_grad(), cams._hooks.LayerCapture(layer, mode="value") as cap:
        model(x)
    flat = cap.output[0].flatten(1)
    dead = int((flat.amax(1) == flat.amin(1)).sum())
    note = (f"{name} {size} px, {layer_name} {tuple(cap.output.shape[1:])}, {dead} constant channels; "
            f"batch ours {batch_size}, theirs {their_batch}")
    rows = []
    for k in ks:
        labels = labels_for(k, 1000)
        t0 = time.perf_counter()
        ours = cams.compute(model, x, [labels], method="scorecam", weighting="softmax", align_corners=True,
                            batch_size=batch_size)
        ours_t = time.perf_counter() - t0
        theirs_maps, theirs_t = theirs(labels, their_batch)
        ours_maps = their_style(ours, (size, size))[0]
        r = min(pearson(o, t) for o, t in zip(ours_maps, theirs_maps))
        rows.append(row(name, size, "scorecam", k, ours_t, f, theirs_t, note=note, r=r))
    if their_batch != batch_size:  # the same batch size for both: the gain is the shared forwards
        labels = labels_for(ks[0], 1000)
        _, theirs_t = theirs(labels, batch_size)
        t0 = time.perf_counter()
        cams.compute(model, x, [labels], method="scorecam", weighting="softmax", align_corners=True,
                     batch_size=batch_size)
        ours_t = time.perf_counter() - t0
        rows.append(row(name, size, "scorecam", ks[0], ours_t, f, theirs_t,
                        note=f"same batch ({batch_size}) for both"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--labels", type=int, nargs="+", default=[1, 3, 6])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--score-model", default="resnet18")
    ap.add_argument("--score-size", type=int, default=64)
    ap.add_argument("--score-batch", type=int, default=32, help="ours (our default: 32)")
    ap.add_argument("--their-score-batch", type=int, default=16, help="pytorch-grad-cam's (its default: 16)")
    ap.add_argument("--skip-score", action="store_true")
    args = ap.parse_args()
    device = choose_device()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch of 1 image\n")
    print(HEADER)
    for line in gradient_family("resnet50", args.size, args.labels, args.repeats, True, device):
        print(line, flush=True)
    if not args.skip_score:
        for line in score_cam(args.score_model, args.score_size, args.labels, args.score_batch,
                              args.their_score_batch, device):
            print(line, flush=True)
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        for line in gradient_family(name, args.size, args.labels, args.repeats, False, device):
            print(line, flush=True)


if __name__ == "__main__":
    main()
