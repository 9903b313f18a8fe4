"""Process-level workarounds the GUI needs (no effect outside a napari process).

Triton (installed with CUDA builds of PyTorch, imported lazily by ``torch._dynamo``
when torchvision's models load) bundles its own LLVM. In a process where Mesa's
software OpenGL (llvmpipe, e.g. under Xvfb or a VM without a GPU) has already loaded
the system LLVM for napari's canvas, loading ``libtriton`` resolves LLVM symbols
against Mesa's copy and crashes the process with a segmentation fault. Loading it with
``RTLD_DEEPBIND`` makes it bind to its own LLVM first.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["isolate_triton"]


def isolate_triton() -> bool:
    """Import ``triton`` with ``RTLD_DEEPBIND`` if it is installed and not yet imported.

    Returns True when it imported triton here. Safe to call repeatedly; does nothing
    on platforms without ``RTLD_DEEPBIND`` (non-glibc).
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or "triton" in sys.modules:
        return False
    try:
        if importlib.util.find_spec("triton") is None:
            return False
    except (ImportError, ValueError):
        return False
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deepbind)
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    finally:
        sys.setdlopenflags(flags)
    return True
