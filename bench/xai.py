"""XAI metrics of CAM methods and of the Explainer's masks on the MSRC-v2 held-out split.

For every held-out image and each of its labels ``c``, a method's map ``M_c`` in ``[0, 1]``
(CAMs: single scale, min-max normalised; Explainer: its sigmoid mask) masks the image, and the
project classifier's confidences on ``x * M_c`` and ``x * (1 - M_c)`` give Increase in
Confidence, Average Drop, Average Drop of Others, Average Retention and Average Retention of
Others (``napari_wsss.metrics.xai_scores``, class-averaged, in percent). The maps' arg-max
over the image's labels is also scored against the ground truth (mIoU), and the map time per
image is reported.

The trained models come from a project (``--project``): its latest classifier (what is
explained) and explainer. Train the explainer first, e.g. on a copy of the classifier project
``bench/quality.py`` caches::

    cp -r /tmp/wsss-quality/train-s0-n414-e10-b6be88b8 /tmp/wsss-explainer/train-s0-n414
    OMP_NUM_THREADS=1 napari-wsss train /tmp/wsss-explainer/train-s0-n414 --stage explainer \\
        --device cpu --set explainer.epochs=4 --set explainer.lr=0.0003
    OMP_NUM_THREADS=1 python bench/xai.py --project /tmp/wsss-explainer/train-s0-n414
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import add_data_argument, work_dir  # noqa: E402
from _msrc import read_gt, split_ids, split_project, use_data  # noqa: E402

from napari_wsss.cams import masked_confidences  # noqa: E402
from napari_wsss.device import choose_device  # noqa: E402
from napari_wsss.metrics import confusion_matrix, segmentation_scores, xai_scores  # noqa: E402
from napari_wsss.models import load_classifier, load_explainer, to_tensor  # noqa: E402
from napari_wsss.pipeline import EXPLAINER, Pipeline, PipelineConfig  # noqa: E402
from napari_wsss.store import Project, checkpoint_version  # noqa: E402

DEFAULT_METHODS = ("cam", "gradcam", "gradcam++", "layercam", EXPLAINER)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def evaluate(project, test_proj, ids, methods, *, max_side, device) -> dict:
    """Per method: XAI scores, mIoU of the maps' arg-max, seconds per image."""
    classes = list(test_proj.classes)
    model = load_classifier(project, device, classes=classes)
    explainer = load_explainer(project, device, classes=classes) if EXPLAINER in methods else None
    version = checkpoint_version(project.latest_checkpoint("classifier"))
    if explainer is not None and explainer.classifier_version != version:
        _log(f"warning: the explainer explains {explainer.classifier_version}, the latest classifier is {version}")
    c = len(classes)
    acc = {m: dict(p=[], o=[], o_inv=[], targets=[], conf=np.zeros((c, c + 1), np.int64), secs=0.0)
           for m in methods}
    pipes = {m: Pipeline(model, classes, None, PipelineConfig(method=m, scales=(1.0,), flip=False, refine=(),
                                                              max_side=max_side),
                         model_version=version, explainer=explainer, device=device) for m in methods}
    for n, image_id in enumerate(ids):
        image, labels, gt = test_proj.image(image_id), test_proj.image_labels(image_id), read_gt(image_id)
        x = to_tensor(image, device)
        for m, pipe in pipes.items():
            t = time.perf_counter()
            maps = pipe.cams(image, labels)
            a = acc[m]
            a["secs"] += time.perf_counter() - t
            p, o, o_inv = masked_confidences(model, x, torch.from_numpy(maps)[None], [labels.tolist()])
            a["p"].append(p[0])
            a["o"].append(o[0])
            a["o_inv"].append(o_inv[0])
            a["targets"].append(labels.tolist())
            a["conf"] += confusion_matrix(labels[maps.argmax(0)], gt, c)
        if (n + 1) % 25 == 0 or n + 1 == len(ids):
            _log(f"{n + 1}/{len(ids)} images")
    out = {}
    for m, a in acc.items():
        k = max(len(t) for t in a["targets"])
        pad = lambda rows: np.stack([np.pad(r, ((0, k - len(r)), (0, 0)), constant_values=np.nan) for r in rows])  # noqa: E731
        scores = xai_scores(np.stack(a["p"]), pad(a["o"]), pad(a["o_inv"]), a["targets"])
        out[m] = dict(xai=scores.as_dict(), miou=segmentation_scores(a["conf"]).miou, secs=a["secs"] / len(ids))
    return out


def table(res: dict, n: int) -> str:
    keys = ("IC%", "AD%", "ADO%", "AR%", "ARO%")
    better = {"IC%": "higher", "AD%": "lower", "ADO%": "higher", "AR%": "higher", "ARO%": "lower"}
    lines = [f"MSRC-v2 held-out split, {n} images; classifier confidences = sigmoid; maps single scale",
             "", "| method | " + " | ".join(f"{k} ({better[k]})" for k in keys) + " | arg-max mIoU % | s / image |",
             "|---|" + "---:|" * (len(keys) + 2)]
    for m, r in res.items():
        vals = " | ".join(f"{r['xai'][k]:.1f}" for k in keys)
        lines.append(f"| {m} | {vals} | {100 * r['miou']:.1f} | {r['secs']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", required=True, help="project with a trained classifier and explainer")
    ap.add_argument("--work", default=work_dir("wsss-explainer"), help="where the held-out project is built")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--subset", type=int, default=None, help="first N images of the permutation (quick runs)")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    add_data_argument(ap)
    args = ap.parse_args(argv)
    use_data(args.data)
    torch.set_num_threads(args.threads)
    device = choose_device()
    _, test_ids = split_ids(test_fraction=args.test_fraction, seed=args.seed, subset=args.subset)
    test_proj = split_project(Path(args.work) / f"test-s{args.seed}-n{len(test_ids)}", test_ids)
    project = Project.open(args.project, "r")
    _log(f"{len(test_ids)} held-out images; methods {', '.join(args.methods)}")
    res = evaluate(project, test_proj, test_ids, args.methods, max_side=args.max_side, device=device)
    print()
    print(table(res, len(test_ids)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
