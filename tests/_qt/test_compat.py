"""Opening the panel after napari's OpenGL canvas exists, then loading torchvision models,
must not crash (triton's LLVM vs Mesa's; see napari_wsss/_qt/_compat.py)."""

import os
import subprocess
import sys

SCRIPT = """
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=True)
QApplication.instance().processEvents()   # the GL context exists now
from napari_wsss._qt import AnnotationWidget   # what napari does when the panel opens
import torchvision.models
net = torchvision.models.mobilenet_v2(weights=None)
print("loaded", sum(p.numel() for p in net.parameters()))
viewer.close()
"""


def test_models_load_after_the_canvas_exists():
    env = {**os.environ, "NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL": "error"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # torchvision's MobileNetV2 (ImageNet head) has 3,504,872 parameters
    assert "loaded 3504872" in proc.stdout
