"""Pre-label throughput and peak memory for growing projects, the CRF wrapper's overhead, and
the Explainer's per-image inference time next to CAM + CRF.

Each project size runs in a fresh subprocess (``napari-wsss prelabel`` on a synthetic project
of that many 160 px shapes images, MobileNetV2 classifier) so peak RSS is that run's own; flat
memory means the peak does not grow with the number of images. The CRF part times
``napari_wsss.refine.dense_crf`` against a bare ``pydensecrf`` call on the same input. The
explainer part times, per image of the same shapes sample, single-scale CAMs, CAMs + dense CRF
and one forward pass of an Explainer (DeepLabV3+ MobileNetV2; timing does not depend on its
training) with its label mask.

    python bench/pipeline.py                  # 100 and 500 images
    python bench/pipeline.py --sizes 20 50    # quicker
    python bench/pipeline.py --only-prelabel --sizes 100 --batch-size 1   # unbatched CAMs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def make_project(path: Path, n: int) -> None:
    import torch

    from napari_wsss.models import Classifier
    from napari_wsss.sample import SHAPES_CLASSES, make_shapes
    from napari_wsss.store import Project
    from trainer import save_classifier

    project = Project.create(path, SHAPES_CLASSES[1:], background=True)
    for s in make_shapes(n, size=160, seed=1):
        project.add_image(s.image_id, s.image, s.labels)
    torch.manual_seed(0)
    model = Classifier("mobilenet_v2", len(project.classes), weights="IMAGENET1K_V1")
    save_classifier(project, model)


def run_size(n: int, workdir: Path, refine: str, batch_size: int) -> dict:
    path = workdir / f"p{n}.zarr"
    make_project(path, n)
    report = workdir / f"r{n}.json"
    child = (
        "import resource, sys; from napari_wsss.cli import main; rc = main(sys.argv[1:]); "
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", child, "prelabel", "--project", str(path), "--quiet", "--refine", refine,
         "--scales", "1", "--no-flip", "--batch-size", str(batch_size), "--report", str(report)],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    rss_kb = int(next(line.split()[1] for line in res.stdout.splitlines() if line.startswith("MAXRSS")))
    done = len(json.loads(report.read_text())["done"])
    secs = json.loads(report.read_text())["seconds"]
    return dict(n=n, done=done, seconds=secs, wall=wall, rss_mb=rss_kb / 1024)


def crf_table(repeats: int) -> list[tuple]:
    from crf_overhead import bare, load_image, smooth_scores

    from napari_wsss.refine import dense_crf

    img, name = load_image(None)
    rows = []
    for k in (3, 21):
        scores = smooth_scores(k, img.shape[:2])
        t_bare, t_ours = [], []
        for _ in range(repeats):
            t = time.perf_counter(); bare(img, scores, 10); t_bare.append(time.perf_counter() - t)
            t = time.perf_counter(); dense_crf(img, scores, n_iter=10); t_ours.append(time.perf_counter() - t)
        rows.append((name, k, min(t_bare), min(t_ours)))
    return rows


def explainer_table(n: int, size: int) -> list[tuple[str, float]]:
    """Median seconds per image: CAM, CAM + CRF, Explainer masks (+ label mask), Explainer + CRF."""
    import numpy as np
    import torch

    from napari_wsss.models import Classifier
    from napari_wsss.pipeline import Pipeline, PipelineConfig
    from napari_wsss.sample import SHAPES_CLASSES, make_shapes
    from napari_wsss.models import build_segmenter

    torch.manual_seed(0)
    classes = list(SHAPES_CLASSES)  # background first, as in make_project
    model = Classifier("mobilenet_v2", len(classes), weights="IMAGENET1K_V1")
    explainer = build_segmenter("mobilenet_v2", len(classes), weights=None)
    one = dict(scales=(1.0,), flip=False, max_side=None)
    pipes = {
        "CAM (single scale)": PipelineConfig(refine=(), **one),
        "CAM + dense CRF": PipelineConfig(refine=("crf",), **one),
        "Explainer masks (one forward)": PipelineConfig(method="explainer", refine=(), **one),
        "Explainer + dense CRF": PipelineConfig(method="explainer", refine=("crf",), **one),
    }
    samples = list(make_shapes(n + 1, size=size, seed=2))
    rows = []
    for name, cfg in pipes.items():
        pipe = Pipeline(model, classes, 0, cfg, model_version="bench", explainer=explainer, device="cpu")
        secs = []
        for i, s in enumerate(samples):
            t = time.perf_counter()
            pipe.run(s.image, s.labels)
            if i:  # the first image warms up
                secs.append(time.perf_counter() - t)
        rows.append((name, float(np.median(secs))))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--refine", default="crf,rw")
    ap.add_argument("--batch-size", type=int, default=4, help="prelabel --batch-size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--explainer-images", type=int, default=20, help="images timed per method")
    ap.add_argument("--explainer-size", type=int, default=320, help="side of the timed images")
    ap.add_argument("--only-explainer", action="store_true", help="skip the prelabel and CRF parts")
    ap.add_argument("--only-prelabel", action="store_true", help="skip the explainer and CRF parts")
    args = ap.parse_args(argv)

    if not args.only_prelabel:
        _print_explainer(args)
    if args.only_explainer:
        return 0
    _print_prelabel(args)
    if not args.only_prelabel:
        _print_crf(args)
    return 0


def _print_explainer(args) -> None:
    print(f"\n### per-image inference, {args.explainer_size} px shapes images, MobileNetV2, CPU "
          f"(median of {args.explainer_images})\n")
    print("| proposal | seconds / image |")
    print("|---|---:|")
    for name, sec in explainer_table(args.explainer_images, args.explainer_size):
        print(f"| {name} | {sec:.3f} |")


def _print_prelabel(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_size(n, Path(tmp), args.refine, args.batch_size) for n in args.sizes]
    print(f"\n### napari-wsss prelabel (160 px images, MobileNetV2, CAM + {args.refine}, "
          f"batch {args.batch_size}, CPU)\n")
    print("| images | done | seconds | images/s | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['done']} | {r['seconds']:.1f} | {r['done'] / r['seconds']:.2f} | {r['rss_mb']:.0f} |")


def _print_crf(args) -> None:
    print("\n### dense CRF: our wrapper vs a bare pydensecrf call (10 iterations, best of "
          f"{args.repeats})\n")
    print("| image | labels | bare s | ours s | overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, k, b, o in crf_table(args.repeats):
        print(f"| {name} | {k} | {b:.3f} | {o:.3f} | {100 * (o - b) / b:+.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
