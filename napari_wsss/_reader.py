"""npe2 reader: a napari-wsss project (``*.zarr``) or a folder of images.

Pure functions returning napari layer-data tuples; no napari or Qt import (the labels
colours are a plain dict napari turns into a colour map).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_wsss.colors import labels_layer_colors
from napari_wsss.conventions import class_to_layer
from napari_wsss.io import is_image_file, read_image
from napari_wsss.store import Project, ProjectError

__all__ = ["napari_get_reader", "read_project", "read_image_folder"]


def napari_get_reader(path):
    """Return a reader for ``path`` or ``None`` when this plugin cannot read it.

    Parameters
    ----------
    path : str or list of str
        A project directory (a zarr group with napari-wsss attributes), or a folder with
        at least one image file. A list is accepted when it holds exactly one path.
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "zarr.json").is_file():
        try:
            project = Project.open(p, mode="r")
        except (ProjectError, OSError, ValueError):
            return None
        return read_project if project.image_ids() else None
    if any(is_image_file(f) for f in p.iterdir()):
        return read_image_folder
    return None


def _labels_kwargs(project: Project, name: str, meta: dict) -> dict:
    colors = labels_layer_colors(len(project.classes), background=project.background)
    return {"name": name, "metadata": {"napari_wsss": meta}, "opacity": 0.5, "colormap": colors}


def read_project(path) -> list[tuple]:
    """Layers of a project's first image: the image, one Labels layer per mask, corrections.

    Labels layers hold napari values (``class + 1``, ``0`` = unlabeled; see
    ``napari_wsss.conventions``); their ``metadata["napari_wsss"]`` names the project,
    image id, stage, classes and background so the writer can colour exports.
    """
    if isinstance(path, (list, tuple)):
        path = path[0]
    project = Project.open(path, mode="r")
    image_id = project.image_ids()[0]
    record = project.load(image_id)
    base = {
        "project": str(project.path),
        "image_id": image_id,
        "classes": list(project.classes),
        "background": project.background,
    }
    image = record.image
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    layers = [(image, {"name": image_id, "rgb": rgb, "metadata": {"napari_wsss": base}}, "image")]
    masks = dict(record.masks)
    masks["corrections"] = record.corrections
    for stage, mask in masks.items():
        name = f"{image_id} {stage}"
        layers.append((class_to_layer(mask), _labels_kwargs(project, name, {**base, "stage": stage}), "labels"))
    return layers


def read_image_folder(path) -> list[tuple]:
    """The images of a folder as one stack when they share shape and dtype, else the first.

    Only the folder's own files are read (sorted by name; no sub-folders).
    """
    if isinstance(path, (list, tuple)):
        path = path[0]
    files = sorted(f for f in Path(path).iterdir() if is_image_file(f))
    first = read_image(files[0])
    images, names = [first], [files[0].name]
    for f in files[1:]:
        img = read_image(f)
        if img.shape != first.shape or img.dtype != first.dtype:
            images, names = [first], [files[0].name]
            break
        images.append(img)
        names.append(f.name)
    rgb = first.ndim == 3 and first.shape[-1] in (3, 4)
    data = np.stack(images) if len(images) > 1 else first
    name = Path(path).name if len(images) > 1 else files[0].stem
    meta = {"files": [str(Path(path) / n) for n in names]}
    return [(data, {"name": name, "rgb": rgb, "metadata": {"napari_wsss": meta}}, "image")]
