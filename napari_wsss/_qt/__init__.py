"""Qt widgets of napari-wsss: the only package that imports napari and Qt."""

from ._compat import isolate_triton

isolate_triton()  # before any model code loads it next to napari's OpenGL (see _compat)

from .widget import AnnotationWidget  # noqa: E402

__all__ = ["AnnotationWidget"]
