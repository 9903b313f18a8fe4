"""The direction of dependencies, read from the source with ``ast`` (no module is imported).

Layers, bottom to top (``/work/shared/ARCHITECTURE.md``): conventions + io -> store ->
models / cams / refine -> pipeline -> trainer -> apps (cli, demo, _qt). Checked here:

* nothing in ``napari_wsss`` below the app layer imports ``trainer`` (inference runs with
  ``trainer/`` absent) or ``napari_wsss._qt``;
* nothing outside ``napari_wsss/_qt`` imports napari, Qt or the Qt widget libraries: not
  the npe2 entry modules (``_reader``, ``_writer``, ``_sample_data``), not the trainer;
* the parts of ``napari_wsss`` (sub-packages and top-level modules) import each other
  without cycles (``models`` -> ``refine`` and never back).

Every import counts: module level, inside functions, ``TYPE_CHECKING`` blocks, and
``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The app layer of ``napari_wsss``: may import the trainer and Qt-side modules.
APP_MODULES = ("napari_wsss.cli", "napari_wsss.demo", "napari_wsss.__main__")
APP_PACKAGES = ("napari_wsss._qt",)
#: Top-level packages only ``napari_wsss._qt`` may import.
GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(root: Path, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, anywhere in the file.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a module).
    """
    current = module_name(root, path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, current, is_package)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return {name for name in found if name}


def import_graph(root: Path, packages=("napari_wsss", "trainer")) -> dict[str, set[str]]:
    """``{module: imported names}`` of every ``.py`` file of ``packages`` under ``root``."""
    graph = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            graph[module_name(root, path)] = imports_of(root, path)
    return graph


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_app(module: str) -> bool:
    return module in APP_MODULES or any(_within(module, p) for p in APP_PACKAGES)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """One line per forbidden import: ``module imports name (rule)``."""
    bad = []
    for module, names in sorted(graph.items()):
        inside_qt = any(_within(module, p) for p in APP_PACKAGES)
        below_app = _within(module, "napari_wsss") and not is_app(module)
        for name in sorted(names):
            top = name.split(".")[0]
            if below_app and top == "trainer":
                bad.append(f"{module} imports {name} (inference never imports the trainer)")
            if below_app and any(_within(name, p) for p in APP_PACKAGES):
                bad.append(f"{module} imports {name} (only the app layer imports _qt)")
            if not inside_qt and top in GUI_PACKAGES:
                bad.append(f"{module} imports {name} (only napari_wsss._qt imports napari / Qt)")
    return bad


def _part(module: str) -> str | None:
    """The part of ``napari_wsss`` a module belongs to: ``napari_wsss.models``, ``napari_wsss.io``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "napari_wsss" and len(parts) > 1 else None


def part_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles (strongly connected components of 2+ parts) among the parts of ``napari_wsss``."""
    parts = {p for m in graph if (p := _part(m))}
    edges: dict[str, set[str]] = {p: set() for p in parts}
    for module, names in graph.items():
        src = _part(module)
        if src is None:
            continue
        for name in names:
            dst = _part(name)
            if dst in parts and dst != src:
                edges[src].add(dst)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(parts):
        if v not in index:
            visit(v)
    return cycles


# -- the repository ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return import_graph(REPO)


def test_graph_reads_the_real_tree(graph):
    # the reader sees lazy imports inside functions: the CLI's train command and the panel
    assert "trainer.cli" in graph["napari_wsss.cli"]
    assert any(n.startswith("qtpy") for n in graph["napari_wsss._qt.widget"])
    assert "napari_wsss.pipeline.prelabel" in graph["trainer.run"]
    assert len(graph) > 80


def test_no_layer_violations(graph):
    assert layer_violations(graph) == []


def test_parts_of_napari_wsss_form_no_cycle(graph):
    assert part_cycles(graph) == []


# -- the checker on a synthetic tree (it must catch what it is meant to) ---------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_catches_each_kind_of_violation(tmp_path):
    _write(tmp_path, {
        "napari_wsss/__init__.py": "",
        "napari_wsss/cli.py": "import trainer\nfrom ._qt import widget\n",  # app: allowed
        "napari_wsss/pipeline.py": "def run():\n    from trainer.run import train\n",
        "napari_wsss/_reader.py": "def colours():\n    from napari_wsss import _qt\n",
        "napari_wsss/_writer.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import napari\n",
        "napari_wsss/export.py": "import importlib\nm = importlib.import_module('trainer.data')\n",
        "napari_wsss/models/__init__.py": "",
        "napari_wsss/models/affinity.py": "from ..refine.graph import pairwise\n",
        "napari_wsss/refine/__init__.py": "",
        "napari_wsss/refine/graph.py": "def f():\n    from ..models import affinity\n",
        "napari_wsss/_qt/__init__.py": "import napari\nfrom qtpy.QtWidgets import QWidget\nimport trainer\n",
        "napari_wsss/_qt/widget.py": "from magicgui import magicgui\n",
        "trainer/__init__.py": "from napari_wsss.pipeline import run\n",
        "trainer/loop.py": "from superqt import QCollapsible\n",
    })
    graph = import_graph(tmp_path)
    assert graph["napari_wsss._reader"] >= {"napari_wsss", "napari_wsss._qt"}
    assert sorted(layer_violations(graph)) == sorted([
        "napari_wsss._reader imports napari_wsss._qt (only the app layer imports _qt)",
        "napari_wsss._writer imports napari (only napari_wsss._qt imports napari / Qt)",
        "napari_wsss.export imports trainer.data (inference never imports the trainer)",
        "napari_wsss.pipeline imports trainer.run (inference never imports the trainer)",
        "napari_wsss.pipeline imports trainer.run.train (inference never imports the trainer)",
        "trainer.loop imports superqt (only napari_wsss._qt imports napari / Qt)",
        "trainer.loop imports superqt.QCollapsible (only napari_wsss._qt imports napari / Qt)",
    ])
    assert part_cycles(graph) == [["napari_wsss.models", "napari_wsss.refine"]]


def test_checker_passes_a_clean_tree_and_resolves_relative_imports(tmp_path):
    _write(tmp_path, {
        "napari_wsss/__init__.py": "",
        "napari_wsss/conventions.py": "IGNORE = 255\n",
        "napari_wsss/models/__init__.py": "from .net import Net\n",
        "napari_wsss/models/net.py": "from ..conventions import IGNORE\nfrom . import __init__\n",
        "napari_wsss/pipeline.py": "from .models import Net\n",
        "trainer/__init__.py": "from napari_wsss.pipeline import *\n",
    })
    graph = import_graph(tmp_path)
    assert "napari_wsss.conventions.IGNORE" in graph["napari_wsss.models.net"]
    assert "napari_wsss.models.net" in graph["napari_wsss.models"]
    assert "napari_wsss.pipeline" in graph["trainer"]
    assert layer_violations(graph) == []
    assert part_cycles(graph) == []


# -- inference with the trainer absent -----------------------------------------------------

_PRELABEL_WITHOUT_TRAINER = """
import json, sys
sys.modules["trainer"] = None  # `import trainer` (and trainer.*) now raises ImportError
import numpy as np, torch
from napari_wsss.models import Classifier
from napari_wsss.pipeline import PipelineConfig, prelabel
from napari_wsss.store import Project

torch.manual_seed(0)
project = Project.create(sys.argv[1], ["background", "thing"], background=True)
rng = np.random.default_rng(0)
for i in range(2):
    project.add_image(f"img{i}", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8), ["thing"])
net = Classifier("resnet18", 2, weights=None)
project.save_checkpoint("classifier", dict(
    model=net.state_dict(), epoch=0, step=0, config={}, classes=project.classes, background=0,
    backbone="resnet18", stage="classifier"))
report = prelabel(project, config=PipelineConfig(scales=(1.0,), flip=False, refine=("crf", "rw")),
                  progress=False, device="cpu")
print(json.dumps({"done": report.done, "failed": report.failed,
                  "stages": {i: sorted(project.mask_stages(i)) for i in project.image_ids()},
                  "trainer_loaded": any(m.split(".")[0] == "trainer" and sys.modules[m] is not None
                                        for m in sys.modules)}))
"""


def test_prelabel_runs_with_the_trainer_absent(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _PRELABEL_WITHOUT_TRAINER, str(tmp_path / "p.zarr")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["failed"] == {} and sorted(got["done"]) == ["img0", "img1"]
    assert got["stages"] == {"img0": ["cam", "crf", "rw"], "img1": ["cam", "crf", "rw"]}
    assert got["trainer_loaded"] is False
