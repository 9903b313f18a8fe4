"""Screenshot of napari with the WSSS annotation panel docked on a project.

Opens a real napari window, docks the panel, opens PROJECT (a ``.zarr`` project),
optionally computes proposals for the shown image first, and saves the whole window
(``viewer.screenshot(path, canvas_only=False)``). Needs a display; on a headless
machine::

    xvfb-run -a -s '-screen 0 1600x1000x24' python scripts/screenshot.py PROJECT out.png
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
    _wait(app, lambda: False, 1.0)  # let the canvas draw
    args.output.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.output), canvas_only=False)
    print(f"wrote {args.output} ({widget.current}, status {widget.session.status(widget.current)})")
    widget.cleanup()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
