"""Open a project in a napari window with the annotation panel docked (``napari-wsss open``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["open_in_napari"]


def open_in_napari(project: Path, *, run: bool = True) -> int:
    """Start napari on ``project`` with the panel docked; blocks until the window closes."""
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    import napari

    from .widget import AnnotationWidget

    viewer = napari.Viewer(title=f"napari-wsss: {Path(project).name}")
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="WSSS annotation panel", area="right")
    widget.open_project(Path(project))
    if run:
        napari.run()
    return 0
