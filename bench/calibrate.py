"""Measure the background-threshold rules of ``napari_wsss.calibrate`` on training images of
several datasets with background: how far each rule's threshold lands from the best one the
ground truth would pick (mIoU of the thresholded CAMs).

    OMP_NUM_THREADS=1 python bench/calibrate.py --data /path/to/datasets --work /tmp/wsss-cal

Datasets: the shapes sample (48 images, 128 px; the demo's classifier) and a seeded subset of
CCP's images (``--ccp-images``, background column ``null``), each with a classifier trained on
those images' labels only; the CAMs are the pipeline's (4-scale + flip TTA, each model at its
training scale). MSRC-v2 has no background: no threshold to choose there. Projects and
checkpoints go to ``--work``, never into the repository; data is read from ``--data`` /
``WSSS_DATA``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import add_data_argument, work_dir  # noqa: E402

from napari_wsss.calibrate import THRESHOLD_RULES, threshold_by_rule  # noqa: E402
from napari_wsss.evaluate import DEFAULT_THRESHOLDS, cam_threshold_sweep  # noqa: E402
from napari_wsss.maskio import read_mask_file  # noqa: E402
from napari_wsss.metrics import segmentation_scores  # noqa: E402


def _train(path: Path, overrides: list[str]) -> None:
    from trainer import train
    from trainer.config import TrainConfig, apply_overrides

    with open(os.devnull, "w") as sink:
        train(path, "classifier", apply_overrides(TrainConfig(), overrides), stream=sink)


def shapes_project(work: Path):
    from napari_wsss.demo import build_shapes_project
    from napari_wsss.sample import SAMPLE_DIR

    return build_shapes_project(work), SAMPLE_DIR / "shapes" / "masks"


def ccp_project(work: Path, data: Path, n: int, epochs: int, seed: int = 0):
    from napari_wsss.ingest import ingest_folder
    from napari_wsss.store import Project

    root = data / "ccp"
    path = work / f"ccp{n}.zarr"
    if not path.exists():
        with open(root / "image_labels.csv", newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
        ids = sorted(r[0] for r in rows[1:] if r)
        pick = {ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n]}
        table = work / f"ccp{n}.csv"
        with open(table, "w", newline="") as f:
            csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if r and r[0] in pick])
        report = ingest_folder(path, root / "images", table, background_class="null")
        if not report.ok:
            raise RuntimeError(str(report))
    project = Project.open(path)
    if project.latest_checkpoint("classifier") is None:
        _train(path, ["classifier.optimizer=adamw", "classifier.lr=0.0003", "classifier.crop_size=320",
                      "classifier.batch_size=16", f"classifier.epochs={epochs}"])
    return project, root / "masks"


def cams_of(project, gt_dir: Path):
    """(cams at image size, classes, ground truth) of every image; CAMs computed if missing."""
    from napari_wsss.evaluate import _upsampled_cams
    from napari_wsss.pipeline import PipelineConfig, prelabel

    prelabel(project, config=PipelineConfig(refine=(), cam_threshold=0.5), progress=False)
    out = []
    for iid in project.image_ids():
        cams, classes = project.read_cams(iid, "cam")
        gt = np.asarray(read_mask_file(next(gt_dir.glob(f"{iid}.*"))))
        out.append((_upsampled_cams(cams, gt.shape), classes, gt))
    return out


def measure(name, project, items) -> list[dict]:
    c = len(project.classes)
    thr = tuple(DEFAULT_THRESHOLDS)
    conf = sum(cam_threshold_sweep(cm, cl, gt, background=project.background, num_classes=c, thresholds=thr)
               for cm, cl, gt in items)
    miou = np.array([segmentation_scores(k).miou for k in conf])
    best = int(np.nanargmax(miou))
    rows = [dict(dataset=name, rule="best (ground truth)", threshold=thr[best], miou=miou[best])]
    for rule in THRESHOLD_RULES:
        cf = np.zeros((c, c + 1), np.int64)
        ts = []
        for cm, cl, gt in items:  # per-image rules give each image its own threshold
            t = threshold_by_rule(rule, [cm]) if rule.startswith("image-") else None
            ts.append(t)
        pooled = None if rule.startswith("image-") else threshold_by_rule(rule, [cm for cm, _, _ in items])
        for (cm, cl, gt), t in zip(items, ts):
            t = pooled if t is None else t
            cf += cam_threshold_sweep(cm, cl, gt, background=project.background, num_classes=c,
                                      thresholds=(float(t),))[0]
        shown = pooled if pooled is not None else float(np.mean(ts))
        rows.append(dict(dataset=name, rule=rule, threshold=shown, miou=segmentation_scores(cf).miou))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(ap)
    ap.add_argument("--work", default=work_dir("wsss-calibrate"), help="projects and checkpoints go here")
    ap.add_argument("--ccp-images", type=int, default=120)
    ap.add_argument("--ccp-epochs", type=int, default=6)
    ap.add_argument("--only", choices=["shapes", "ccp"], default=None)
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    if args.only in (None, "shapes"):
        project, gt = shapes_project(work)
        rows += measure("shapes (48 img)", project, cams_of(project, gt))
    if args.only in (None, "ccp"):
        if not args.data:
            ap.error("--data (or WSSS_DATA) is needed for CCP")
        project, gt = ccp_project(work, Path(args.data), args.ccp_images, args.ccp_epochs)
        rows += measure(f"CCP ({args.ccp_images} train img)", project, cams_of(project, gt))
    print("| dataset | rule | threshold | mIoU % | gap to best |")
    print("|---|---|---:|---:|---:|")
    best = {r["dataset"]: r["miou"] for r in rows if r["rule"].startswith("best")}
    for r in rows:
        print(f"| {r['dataset']} | {r['rule']} | {r['threshold']:.2f} | {100 * r['miou']:.1f} | "
              f"{100 * (best[r['dataset']] - r['miou']):.1f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
