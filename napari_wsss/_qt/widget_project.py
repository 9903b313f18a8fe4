"""Opening and creating projects for `AnnotationWidget`, and adopting the layers the
npe2 project reader added (File > Open) in place of the panel's own."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QTimer

from .layers import LayerSet
from .project_info import project_opened
from .session import AnnotationSession, config_from_settings

__all__ = ["ProjectFlow", "PROJECT_METADATA_KEY"]

PROJECT_METADATA_KEY = "napari_wsss"
"""Layers from the project reader carry ``metadata[PROJECT_METADATA_KEY]`` with the
``project`` path and ``image_id``; the panel replaces them with its own layers."""


class ProjectFlow:
    """`AnnotationWidget` methods that open or create a project (a mixin: it uses the
    widget's session, layers, panels, viewer and I/O)."""

    def open_project(self, project) -> None:
        """Open a project (a path or a `napari_wsss.store.Project`) and show its first image."""
        from napari_wsss.store import Project

        if self.session is not None:
            self.flush()
            self.io.forget()
            self.layers.clear()
            self.session.close()
        if not isinstance(project, Project):
            project = Project.open(Path(project))
        self.session = AnnotationSession(project, pipeline_factory=self._factory,
                                         config=config_from_settings(None, self.proposal_controls.settings()))
        self.layers = LayerSet(self.viewer, project.classes, background=project.background)
        self.current = None
        self.uncertainty = {}
        bg = project.background
        self.project_panel.set_project(project.path)
        self.picker.set_classes(project.classes, background=bg)
        self.nav.set_choices(project.STATUSES, project.classes, background=bg)
        project_opened(self, project)  # calibration, classes needing strokes, model versions
        self._refresh_list()
        start = self.session.resume_id(self.visible_ids())
        if start is not None:
            self.show_image(start)

    def create_project(self, folder: str, csv: str, out: str, background: bool | str = False):
        """Ingest an image folder (+ labels CSV, or one sub-folder per class) into a project
        at ``out`` (new or existing), open it, and return the ingest report. ``background``:
        add a background class, or the labels' background class name (``--background-class``)."""
        from napari_wsss.ingest import ingest_folder

        report = ingest_folder(Path(out), Path(folder), Path(csv) if csv else None,
                               background=bool(background),
                               background_class=background if isinstance(background, str) else None)
        self.open_project(report.project)
        problems = [f"{i.where}: {i.message}" for i in (*report.errors, *report.warnings)]
        self.message.setText(
            f"added {len(report.added)} images, {len(report.errors)} errors, "
            f"{len(report.warnings)} warnings" + ("\n" + "\n".join(problems[:5]) if problems else "")
            + (f"\n{report.background_note}" if report.background_note else "")
        )
        return report

    def _reader_layers(self) -> list[tuple[object, dict]]:
        """Layers a project reader added (``metadata["napari_wsss"]["project"]``), not ours."""
        ours = set(map(id, self.layers._layers())) if self.layers is not None else set()
        out = []
        for layer in self.viewer.layers:
            meta = layer.metadata.get(PROJECT_METADATA_KEY) if hasattr(layer, "metadata") else None
            if isinstance(meta, dict) and meta.get("project") and id(layer) not in ours:
                out.append((layer, meta))
        return out

    def _on_layer_inserted(self, event=None) -> None:
        if not self._adopt_pending and self._reader_layers():
            # The reader adds several layers one by one: adopt them once, afterwards.
            self._adopt_pending = True
            QTimer.singleShot(0, self._adopt_reader_layers)

    def _on_layer_removing(self, event) -> None:
        # Closing the viewer removes every layer first: save the corrections before
        # they go (also when the user deletes the corrections layer).
        layers = self.viewer.layers
        if self.layers is None or not 0 <= event.index < len(layers):
            return
        if layers[event.index] is self.layers.corrections:
            self.flush(wait=True)

    def _adopt_reader_layers(self) -> None:
        """Replace layers opened by File > Open (the npe2 reader) by the panel's own."""
        self._adopt_pending = False
        found = self._reader_layers()
        if not found or self._closed:
            return
        meta = found[0][1]
        for layer, _ in found:
            self.viewer.layers.remove(layer)
        path = Path(meta["project"])
        if self.session is None or Path(self.session.project.path) != path:
            self.open_project(path)
        if meta.get("image_id") in self.session.image_ids:
            self.show_image(meta["image_id"])
