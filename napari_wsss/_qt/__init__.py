"""Qt widgets of napari-wsss: the only package that imports napari and Qt."""

from .widget import AnnotationWidget

__all__ = ["AnnotationWidget"]
