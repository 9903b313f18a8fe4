"""Annotation panel latency: image switches with proposals stored, and one proposal run.

Builds a throw-away project of 512 x 512 images (MSRC-v2 photos resized, or seeded
synthetic images when the dataset is absent) with CAMs, CAM/CRF/RW masks and partial
corrections already stored, opens it in a real napari window with the panel docked, and
times ``AnnotationWidget.show_image`` plus the Qt event processing that draws the
result (save of the previous image included), over ``--switches`` switches. Then
saves a MobileNetV2 classifier (ImageNet backbone, untrained head) in the project and
times ``Pipeline.run`` per stage (CAM, CRF, random walk; single pass and the default
4-scale x flip TTA) on one 512 px image on this machine's device. The numbers depend
on the machine's load and on its OpenGL (software llvmpipe under Xvfb is slow).

Run under a display, e.g.::

    xvfb-run -a -s '-screen 0 1600x1000x24' python bench/gui.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import add_data_argument, dataset_dir  # noqa: E402


def _images(n: int, size: int, rng, msrc: Path | None):
    """(image_id, image (size, size, 3) uint8, labels, mask) tuples: MSRC-v2 if given, else seeded noise."""
    from skimage.transform import resize

    if msrc is not None:
        MSRC = msrc
        import csv

        with open(MSRC / "image_labels.csv") as fh:
            rows = list(csv.reader(fh))
        header, rows = rows[0][1:], rows[1:]
        for row in rows[:n]:
            from skimage.io import imread

            img = imread(MSRC / "images" / f"{row[0]}.png")[..., :3]
            mask = imread(MSRC / "masks" / f"{row[0]}.png")
            img = (resize(img, (size, size), preserve_range=True, anti_aliasing=True)).astype(np.uint8)
            mask = resize(mask, (size, size), order=0, preserve_range=True, anti_aliasing=False)
            labels = [k for k, v in enumerate(row[1:]) if v == "1"]
            yield row[0], img, labels, mask.astype(np.uint8), header
        return
    header = [f"class{k}" for k in range(5)]
    for i in range(n):
        img = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        labels = sorted(rng.choice(5, size=2, replace=False).tolist())
        mask = np.where(np.arange(size)[None, :] < size // 2, labels[0], labels[1]).astype(np.uint8)
        yield f"img{i:03d}", img, labels, np.broadcast_to(mask, (size, size)).copy(), header


def build_project(path: Path, n: int, size: int, msrc: Path | None = None):
    from napari_wsss.store import Project

    rng = np.random.default_rng(0)
    items = list(_images(n, size, rng, msrc))
    project = Project.create(path, items[0][4], background=False)
    for image_id, img, labels, mask, _ in items:
        project.add_image(image_id, img, labels)
        k = len(labels)
        cams = rng.random((k, size, size), dtype=np.float32)
        project.write_cams(image_id, "gradcam", cams, labels, model_version="imagenet:bench")
        for stage in ("cam", "crf", "rw"):
            project.write_mask(image_id, stage, mask, model_version="imagenet:bench")
        corr = np.full((size, size), 255, np.uint8)
        corr[: size // 8, : size // 8] = labels[0]
        project.write_corrections(image_id, corr)
        project.set_status(image_id, "prelabelled")
    return project


def bench_switch(project, switches: int) -> list[float]:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_wsss._qt import AnnotationWidget

    viewer = napari.Viewer(show=True)
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="WSSS annotation panel")
    widget.open_project(project.path)
    app = QApplication.instance()
    ids = project.image_ids()
    for _ in range(3):  # warm-up: first creation of every layer kind, shader compilation
        widget.next_image()
        app.processEvents()
    times = []
    for k in range(switches):
        target = ids[(k + 5) % len(ids)]
        # a stroke on the current image, so each switch also queues a save
        widget.layers.corrections.paint((5, 5), 1)
        t0 = time.perf_counter()
        widget.show_image(target)
        app.processEvents()
        times.append(time.perf_counter() - t0)
    viewer.close()
    return times


def _save_classifier(project, backbone: str = "mobilenet_v2") -> None:
    """An ImageNet backbone with an untrained head as the project's classifier (the
    compute cost is the architecture's, whatever the weights)."""
    import torch

    from napari_wsss.models import Classifier
    from trainer import save_classifier

    torch.manual_seed(0)
    net = Classifier(backbone, len(project.classes), weights="IMAGENET1K_V1")
    save_classifier(project, net)


def bench_proposals(project, repeats: int, *, tta: bool) -> tuple[float, dict, str]:
    """Model load time, and per-stage median seconds of ``Pipeline.run`` on one image."""
    import torch

    from napari_wsss.pipeline import Pipeline, PipelineConfig

    if project.latest_checkpoint("classifier") is None:
        _save_classifier(project)
    config = PipelineConfig() if tta else PipelineConfig(scales=(1.0,), flip=False)
    t0 = time.perf_counter()
    pipe = Pipeline.from_project(project, config, device="cuda" if torch.cuda.is_available() else "cpu")
    load = time.perf_counter() - t0
    image_id = project.image_ids()[0]
    image, labels = project.image(image_id), project.image_labels(image_id)
    pipe.run(image, labels)  # warm-up
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        marks = [(time.perf_counter(), "start")]
        pipe.run(image, labels, progress=lambda s: marks.append((time.perf_counter(), s)))
        marks.append((time.perf_counter(), "end"))
        for (ta, sa), (tb, _) in zip(marks[:-1], marks[1:]):
            if sa != "start":
                runs.setdefault(sa, []).append(tb - ta)
        runs.setdefault("total", []).append(marks[-1][0] - marks[0][0])
    dev = f"{pipe.device}, torch threads {torch.get_num_threads()}"
    return load, {k: statistics.median(v) for k, v in runs.items()}, dev


def _pct(values, q):
    return float(np.percentile(np.asarray(values), q))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--switches", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="timed proposal runs")
    ap.add_argument("--skip-proposals", action="store_true")
    add_data_argument(ap, required=False)
    args = ap.parse_args(argv)
    msrc = dataset_dir(args.data, "msrc_v2", required=False)
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        project = build_project(Path(tmp) / "bench.zarr", args.images, args.size, msrc)
        print(f"project: {args.images} {'MSRC-v2' if msrc else 'synthetic'} images of {args.size} px, built in {time.perf_counter() - t0:.1f} s")
        times = bench_switch(project, args.switches)
        ms = [1000 * t for t in times]
        print(f"image switch ({len(ms)} switches, proposals stored, a stroke saved each time): "
              f"median {statistics.median(ms):.1f} ms, p95 {_pct(ms, 95):.1f} ms, max {max(ms):.1f} ms "
              f"(target p95 < 100 ms: {'met' if _pct(ms, 95) < 100 else 'NOT met'})")
        if not args.skip_proposals:
            for tta in (False, True):
                load, med, dev = bench_proposals(project, args.repeats, tta=tta)
                stages = ", ".join(f"{k} {v:.2f}" for k, v in med.items() if k != "total")
                what = "4 scales x flip TTA (default)" if tta else "single pass"
                print(f"proposals for one {args.size} px image, {what} ({dev}): "
                      f"{med['total']:.2f} s median of {args.repeats} [{stages}]; model load {load:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
