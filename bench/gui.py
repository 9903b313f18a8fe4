"""Annotation panel latency on real photos: image switches, and GUI stalls while proposals compute.

Builds a throw-away project from MSRC-v2 photos (``--data DIR``: the datasets folder
holding ``msrc_v2/``, or ``msrc_v2`` itself; default the ``WSSS_DATA`` setting; seeded
synthetic images with 23 classes when absent), at their own size (320 x 213) or resized
to ``--size H W`` (e.g. ``2000 3000``). Each image gets full-resolution smooth CAMs of
its labels, CAM / CRF / RW masks (its ground truth) and a few corrections, status
``prelabelled``. The project opens in a real napari window with the panel docked.

* **switch**: ``next_image`` (what Alt+Right and the "next" button call) plus the Qt
  event processing that draws the result, a stroke saved on every image left; the
  panel reads the neighbours ahead, as in annotation. Also timed: jumps to an image
  not read ahead (a click far down the list).
* **stall**: while "Compute proposals" runs on one image (MobileNetV2 classifier with
  random weights: the cost is the architecture's; default pipeline: 4-scale x flip
  CAMs, dense CRF, random walk), a 20 ms Qt timer ticks; the longest gap between ticks
  is how long the GUI thread could not respond.

Needs a display; on a headless machine::

    xvfb-run -a -s '-screen 0 1600x1000x24' python bench/gui.py --data "$WSSS_DATA"

``--json`` prints exactly one line: ``{"switch_ms": {"median": ..., "p95": ...},
"stall_ms_max": ..., "classes": ..., "image_size": [h, w]}`` (next-image switches).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


WINDOW = (1200, 800)
"""napari window size (``--window``): with software OpenGL (llvmpipe under Xvfb) a frame's
cost grows with the canvas's pixel count, so the table also times a bare redraw."""


def _msrc_root(data: str | None) -> Path | None:
    if not data:
        return None
    d = Path(data)
    for cand in (d / "msrc_v2", d):
        if (cand / "image_labels.csv").exists() and (cand / "images").is_dir():
            return cand
    raise SystemExit(f"{data}: no MSRC-v2 folder (image_labels.csv and images/) there or in msrc_v2/")


def _smooth(rng, k: int, h: int, w: int) -> np.ndarray:
    """``k`` smooth score maps in [0, 1] (bilinear upsampling of a coarse random grid)."""
    from skimage.transform import resize

    coarse = rng.random((k, max(2, h // 32), max(2, w // 32))).astype(np.float32)
    return np.stack([resize(c, (h, w), order=1).astype(np.float32) for c in coarse])


def _photos(root: Path | None, n: int, size, rng):
    """(image_id, image (H, W, 3) uint8, labels, gt mask, class names), ``n`` of them."""
    from skimage.transform import resize

    if root is not None:
        from skimage.io import imread

        with open(root / "image_labels.csv", newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
        header, rows = rows[0][1:], [r for r in rows[1:] if r]
        for row in rows[:n]:
            img = imread(root / "images" / f"{row[0]}.png")[..., :3]
            mask = imread(root / "masks" / f"{row[0]}.png")
            if size is not None:
                img = resize(img, size, preserve_range=True, anti_aliasing=True).astype(np.uint8)
                mask = resize(mask, size, order=0, preserve_range=True, anti_aliasing=False)
            labels = [k for k, v in enumerate(row[1:]) if v == "1"]
            yield row[0], img, labels, np.asarray(mask, np.uint8), header
        return
    header = [f"class{k:02d}" for k in range(23)]
    h, w = size or (213, 320)
    for i in range(n):
        labels = sorted(rng.choice(23, size=3, replace=False).tolist())
        img = (_smooth(rng, 3, h, w).transpose(1, 2, 0) * 255).astype(np.uint8)
        mask = np.full((h, w), labels[0], np.uint8)
        mask[:, w // 3:] = labels[1]
        mask[h // 2:, 2 * w // 3:] = labels[2]
        yield f"img{i:03d}", img, labels, mask, header


def build_project(path: Path, root: Path | None, n: int, size):
    from napari_wsss.store import Project

    rng = np.random.default_rng(0)
    project = None
    for image_id, img, labels, mask, header in _photos(root, n, size, rng):
        if project is None:
            project = Project.create(path, header, background=False)
        project.add_image(image_id, img, labels)
        h, w = img.shape[:2]
        project.write_cams(image_id, "gradcam", _smooth(rng, len(labels), h, w), labels,
                           model_version="imagenet:bench")
        for stage in ("cam", "crf", "rw"):
            project.write_mask(image_id, stage, mask, model_version="imagenet:bench")
        corr = np.full((h, w), 255, np.uint8)
        corr[: h // 8, : w // 8] = labels[0]
        project.write_corrections(image_id, corr)
        project.set_status(image_id, "prelabelled")
    return project


def _viewer(project, window=WINDOW):
    import napari

    from napari_wsss._qt import AnnotationWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(*window)
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="WSSS annotation panel")
    widget.open_project(project.path)
    return viewer, widget


def _settle(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)


def bench_switch(project, switches: int, window=WINDOW) -> tuple[list[float], list[float], list[float]]:
    """Seconds per next-image switch, per jump to an image not read ahead, and per bare
    redraw of the same window (napari drawing the canvas with nothing changed: the
    floor of any switch on this display)."""
    from qtpy.QtWidgets import QApplication

    viewer, widget = _viewer(project, window)
    app = QApplication.instance()
    ids = project.image_ids()
    widget.show_image(ids[0])  # (the panel opens at the image edited last: the last one built)
    for _ in range(3):  # warm-up: first texture uploads, shader compilation
        widget.next_image()
        _settle(app, 0.2)
    widget.show_image(ids[0])
    nxt, jump = [], []
    for k in range(switches):
        # a stroke on the current image, so each switch also queues a save
        widget.layers.corrections.paint((5, 5), 1)
        _settle(app, 0.15)  # an annotator looks at an image for longer: the read-ahead lands
        t0 = time.perf_counter()
        if widget.current == ids[-1]:
            widget.show_image(ids[0])
        else:
            widget.next_image()
        app.processEvents()
        nxt.append(time.perf_counter() - t0)
    for k in range(min(switches, len(ids))):
        widget.layers.corrections.paint((5, 5), 1)
        _settle(app, 0.15)
        target = ids[(ids.index(widget.current) + len(ids) // 2) % len(ids)]
        t0 = time.perf_counter()
        widget.show_image(target)
        app.processEvents()
        jump.append(time.perf_counter() - t0)
    redraw = []
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    for _ in range(min(switches, 20)):
        _settle(app, 0.1)
        t0 = time.perf_counter()
        scene.update()
        app.processEvents()
        redraw.append(time.perf_counter() - t0)
    widget.cleanup()
    viewer.close()
    return nxt, jump, redraw


def bench_stall(project, window=WINDOW, tick_ms: int = 20, timeout: float = 900.0):
    """Longest gap (s) of a ``tick_ms`` Qt timer from "Compute proposals" until the
    result is shown; the longest gap while the pipeline stages ran (from the first
    stage to "saving proposals"); the wall time (s); and the outcome."""
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_wsss.models import Classifier
    from trainer import save_classifier

    if project.latest_checkpoint("classifier") is None:
        torch.manual_seed(0)
        save_classifier(project, Classifier("mobilenet_v2", len(project.classes), weights=None))
    viewer, widget = _viewer(project, window)
    app = QApplication.instance()
    _settle(app, 0.5)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(tick_ms)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    done: list[str] = []
    widget.proposals_finished.connect(lambda _i, outcome: done.append(outcome))
    steps: list[tuple[float, str]] = []
    widget.proposal_progress.connect(lambda _s, _n, text: steps.append((time.perf_counter(), text)))
    timer.start()
    t0 = time.perf_counter()
    if widget.recompute() is None:
        raise SystemExit(f"proposals did not start: {widget.message.text()}")
    while not done and time.perf_counter() - t0 < timeout:
        app.processEvents()
        time.sleep(0.001)
    t1 = time.perf_counter()
    timer.stop()
    marks = [t0, *[t for t in ticks if t0 <= t <= t1], t1]
    first = next((t for t, text in steps if ": " in text), t0)
    last = next((t for t, text in steps if text == "saving proposals"), t1)
    inner = [first, *[t for t in ticks if first <= t <= last], last]
    outcome = done[0] if done else "timeout"
    if outcome != "saved":
        print(f"proposals: {outcome}: {widget.message.text()}", file=sys.stderr)
    widget.cleanup()
    viewer.close()
    return float(np.max(np.diff(marks))), float(np.max(np.diff(inner))), t1 - t0, outcome


def _pct(values, q):
    return float(np.percentile(np.asarray(values), q))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("WSSS_DATA"),
                    help="datasets folder (with msrc_v2/) or the msrc_v2 folder; default $WSSS_DATA")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize the photos")
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--window", type=int, nargs=2, default=WINDOW, metavar=("W", "H"),
                    help=f"napari window size (default {WINDOW[0]} {WINDOW[1]})")
    ap.add_argument("--skip-proposals", action="store_true", help="no stall measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    args = ap.parse_args(argv)
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    root = _msrc_root(args.data)
    say = (lambda *a, **k: None) if args.json else print
    # with --json nothing but the JSON line goes to stdout (napari prints notifications there)
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        project = build_project(Path(tmp) / "bench.zarr", root, args.images, args.size)
        h, w = project.image_shape(project.image_ids()[0])
        what = f"MSRC-v2 photos from {root}" if root else "synthetic images (no --data)"
        say(f"project: {args.images} {what}, {h} x {w}, {len(project.classes)} classes, "
            f"built in {time.perf_counter() - t0:.1f} s")
        nxt, jump, redraw = bench_switch(project, args.switches, args.window)
        stall = None
        if not args.skip_proposals:
            gap, inner, wall, outcome = bench_stall(project, args.window)
            stall = 1000 * gap
        ms, jms, rms = ([1000 * t for t in x] for x in (nxt, jump, redraw))
        result = {"switch_ms": {"median": round(statistics.median(ms), 1), "p95": round(_pct(ms, 95), 1)},
                  "stall_ms_max": None if stall is None else round(stall, 1),
                  "classes": len(project.classes), "image_size": [int(h), int(w)]}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'measure':44s} {'median':>8s} {'p95':>8s} {'max':>8s}")
    print(f"{'next image (read ahead), ms':44s} {statistics.median(ms):8.1f} {_pct(ms, 95):8.1f} {max(ms):8.1f}")
    print(f"{'jump to an image not read ahead, ms':44s} {statistics.median(jms):8.1f} "
          f"{_pct(jms, 95):8.1f} {max(jms):8.1f}")
    print(f"{'bare redraw, nothing changed (floor), ms':44s} {statistics.median(rms):8.1f} "
          f"{_pct(rms, 95):8.1f} {max(rms):8.1f}")
    print(f"window {args.window[0]} x {args.window[1]}, {len(ms)} switches, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if stall is not None:
        print(f"longest GUI stall from 'Compute proposals' to the result shown: {stall:.1f} ms; "
              f"while the pipeline stages ran: {1000 * inner:.1f} ms "
              f"(20 ms timer; {wall:.1f} s, {outcome}; the first run starts the proposal process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
