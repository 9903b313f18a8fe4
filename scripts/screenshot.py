"""Screenshot of napari with the WSSS annotation panel docked on a project.

Opens a real napari window, docks the panel, opens PROJECT (a ``.zarr`` project, e.g.
MSRC-v2 photos ingested with a trained classifier), optionally computes proposals for
the shown image, paints a correction stroke (``--stroke CLASS``: a real brush stroke
through the image centre, saved like any other), shows the heatmap of one class, and
saves the whole window (``viewer.screenshot(path, canvas_only=False)``). Needs a
display; on a headless machine::

    xvfb-run -a -s '-screen 0 1600x1000x24' python scripts/screenshot.py PROJECT out.png \
        --image 1_19_s --compute --stroke grass --heatmap cow
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _wait(app, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path, help="a napari-wsss project (.zarr folder)")
    ap.add_argument("output", type=Path, help="PNG file to write")
    ap.add_argument("--image", help="image id to show (default: the first)")
    ap.add_argument("--compute", action="store_true", help="compute proposals for it first")
    ap.add_argument("--size", type=int, nargs=2, default=(1500, 950), metavar=("W", "H"))
    ap.add_argument("--stroke", metavar="CLASS", help="paint a correction stroke with this class")
    ap.add_argument("--heatmap", metavar="CLASS", help="show this class's heatmap (default: the brush's)")
    ap.add_argument("--contour", action="store_true", help="draw the proposal as contours")
    args = ap.parse_args(argv)
    if not args.project.exists():
        ap.error(f"{args.project}: no such project")
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_wsss._qt import AnnotationWidget

    viewer = napari.Viewer(title="napari-wsss", show=True)
    viewer.window.resize(*args.size)
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="WSSS annotation panel", area="right")
    widget.open_project(args.project)
    if args.image:
        widget.show_image(args.image)
    app = QApplication.instance()
    if args.compute:
        done = []
        widget.proposals_ready.connect(done.append)
        if widget.recompute() is None or not _wait(app, lambda: bool(done), 600):
            print(f"proposals for {widget.current} did not finish: {widget.message.text()}",
                  file=sys.stderr)
            return 1
    classes = widget.session.classes
    for name in (args.stroke, args.heatmap):
        if name is not None and name not in classes:
            print(f"{args.project}: no class {name!r} (classes: {', '.join(classes)})", file=sys.stderr)
            return 2
    if args.heatmap:
        widget.choose_class(classes.index(args.heatmap))
    if args.stroke:
        import numpy as np

        layer = widget.layers.corrections
        h, w = layer.data.shape
        layer.brush_size = max(6, min(h, w) // 25)
        value = classes.index(args.stroke) + 1  # layer value of the class
        for t in np.linspace(0.3, 0.7, 40):  # a diagonal stroke through the centre
            layer.paint((int(h * (0.35 + 0.3 * t)), int(w * t)), value, refresh=False)
        layer.refresh()  # each dab is one edit: saved and marked corrected like a stroke
        if not args.heatmap:
            widget.choose_class(classes.index(args.stroke))
    if args.contour:
        widget.toggle_contour()
    _wait(app, lambda: False, 0.5)
    viewer.reset_view()  # fit the image to the canvas the docked panel left
    _wait(app, lambda: False, 1.5)  # let the canvas draw and the save land
    args.output.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.output), canvas_only=False)
    print(f"wrote {args.output} ({widget.current}, status {widget.session.status(widget.current)})")
    widget.cleanup()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
