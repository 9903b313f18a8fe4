"""Checkpoint versions: the model in use, a corrupt latest checkpoint, ``napari-wsss models``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from napari_wsss.cli import main
from napari_wsss.models import Classifier
from napari_wsss.store import CheckpointError, Project
from trainer import save_classifier


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.fixture
def project(tmp_path):
    """Two images, three classifier versions (different seeds: different weights)."""
    p = Project.create(tmp_path / "p.zarr", ["red", "blue"], background=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        p.add_image(f"im{i}", rng.integers(0, 255, (40, 48, 3), dtype=np.uint8), [1 + i % 2])
    for seed in range(3):
        torch.manual_seed(seed)
        save_classifier(p, Classifier("mobilenet_v3_small", 3, weights=None))
    return p


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_model_in_use_pointer(project):
    assert project.checkpoints("classifier") == ["classifier-0001", "classifier-0002", "classifier-0003"]
    assert project.model_in_use("classifier") == "classifier-0003"  # no pin: the newest
    project.set_model_in_use("classifier", "classifier-0001")
    assert project.latest_checkpoint("classifier") == project.checkpoint_path("classifier-0001")
    assert Project.open(project.path, "r").model_in_use("classifier") == "classifier-0001"  # on disk
    state = project.load_checkpoint("classifier")
    torch.manual_seed(0)
    expected = Classifier("mobilenet_v3_small", 3, weights=None).state_dict()
    assert all(torch.equal(state["model"][k], expected[k]) for k in expected)
    # a run that must not replace the model in use, then one that does
    v4 = project.save_checkpoint("classifier", dict(state), use=False)
    assert project.model_in_use("classifier") == "classifier-0001"
    v5 = project.save_checkpoint("classifier", dict(state))
    assert (v4, v5) == ("classifier-0004", "classifier-0005") and project.model_in_use("classifier") == v5
    # an implicit "newest" stays in use when a run saves with use=False
    project.save_checkpoint("classifier", dict(state), use=False)
    assert project.model_in_use("classifier") == v5
    with pytest.raises(FileNotFoundError, match="no checkpoint 'classifier-0042'"):
        project.set_model_in_use("classifier", "classifier-0042")


def test_corrupt_checkpoint_message_names_file_and_rollback(project):
    path = project.checkpoint_path("classifier-0003")
    _truncate(path)
    assert project.checkpoint_problem("classifier-0003").startswith("truncated or corrupted")
    assert project.checkpoint_problem("classifier-0002") is None
    with pytest.raises(CheckpointError) as err:
        project.load_checkpoint("classifier")
    msg = str(err.value)
    assert str(path) in msg and f"napari-wsss models rollback {project.path} --stage classifier" in msg
    # a pickled object is refused, without torch's advice to load it unsafely
    state = project.load_checkpoint("classifier-0002")
    state["extra"] = Image.new("L", (2, 2))  # any non-tensor object
    torch.save(state, project.checkpoint_path("classifier-0001"))
    with pytest.raises(CheckpointError, match="refused") as err:
        project.load_checkpoint("classifier-0001")
    assert "weights_only" not in str(err.value)


def test_prelabel_falls_back_to_the_newest_readable_checkpoint(project, capsys):
    _truncate(project.checkpoint_path("classifier-0003"))
    code, out, err = _cli(capsys, "prelabel", "--project", project.path, "--quiet", "--scales", "1",
                          "--no-flip", "--refine", "crf", "--device", "cpu")
    assert code == 0, err
    assert "warning: classifier checkpoint classifier-0003" in err and "using classifier-0002 instead" in err
    p = Project.open(project.path, "r")
    assert {p.status(i).model_version for i in p.image_ids()} == {"classifier-0002"}
    assert p.model_in_use("classifier") == "classifier-0003"  # a fallback, not a rollback
    # every version unreadable: one line naming them, exit 2
    for v in ("classifier-0001", "classifier-0002"):
        _truncate(project.checkpoint_path(v))
    code, _, err = _cli(capsys, "prelabel", "--project", project.path, "--quiet", "--force", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no readable classifier checkpoint" in err and "classifier-0001: truncated" in err


def test_models_list_rollback_prune(project, capsys):
    _truncate(project.checkpoint_path("classifier-0003"))
    code, out, _ = _cli(capsys, "models", "list", project.path)
    rows = [r for r in out.splitlines() if r.startswith("| classifier")]
    assert len(rows) == 3 and "truncated or corrupted" in rows[2] and rows[2].endswith("| yes |")
    code, out, _ = _cli(capsys, "models", "rollback", project.path, "--stage", "classifier")
    assert code == 0 and "classifier-0002 is in use (was classifier-0003)" in out
    assert project.model_in_use("classifier") == "classifier-0002"
    code, _, err = _cli(capsys, "models", "rollback", project.path, "--stage", "classifier", "--to",
                        "classifier-0003")
    assert code == 2 and "classifier-0003 is truncated or corrupted" in err
    assert project.model_in_use("classifier") == "classifier-0002"
    # prune keeps the newest N and the one in use (here older than the newest)
    code, out, _ = _cli(capsys, "models", "prune", project.path, "--keep", 1)
    assert code == 0 and "deleted classifier-0001" in out
    assert project.checkpoints("classifier") == ["classifier-0002", "classifier-0003"]
    assert project.model_in_use("classifier") == "classifier-0002"
    # version numbers are never reused after a prune
    assert save_classifier(project, Classifier("mobilenet_v3_small", 3, weights=None)) == "classifier-0004"
    code, _, err = _cli(capsys, "models", "prune", project.path, "--keep", 0)
    assert code == 2 and "keep must be at least 1" in err
