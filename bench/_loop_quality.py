"""Correction quality on MSRC-v2 for ``bench/loop.py --quality`` (one or several seeds)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from _data import work_dir
from _msrc import read_gt, split_ids, split_project
from quality import _cached, _digest, _log, _Scores, _train_stage, _version

from napari_wsss.device import choose_device
from napari_wsss.models import load_classifier, to_tensor
from napari_wsss.pipeline import Pipeline, PipelineConfig
from trainer.classifier import MeanAveragePrecision

__all__ = ["correction_quality", "summarize_seeds", "quality_table"]


def _corrected_project(path, train_ids, corrected):
    """Train-split project whose images ``corrected`` carry their ground truth as corrections.

    Every other image has none (a reused project is checked, so a cached run cannot mix
    correction sets).
    """
    project = split_project(path, train_ids)
    wanted = set(corrected)
    for i in train_ids:
        has = bool(np.any(np.asarray(project.read_corrections(i)) != 255))
        if i in wanted and not has:
            project.write_corrections(i, read_gt(i))
        elif i not in wanted and has:
            raise RuntimeError(f"{project.path}: image {i!r} has corrections but should not; "
                               "delete the project folder to rebuild it")
    return project


def _score_run(train_proj, test_proj, test_ids, *, cfg, cache_root) -> dict:
    """Classifier mAP and CAM+TTA / +CRF mIoU of one trained project on the test split."""
    device = choose_device()
    classes = list(test_proj.classes)
    model = load_classifier(train_proj, device, classes=classes)
    version = _version(train_proj)
    pipe = _cached(Pipeline(model, classes, None, cfg, model_version=version), cache_root, version)
    scores, amap = _Scores(len(classes)), MeanAveragePrecision(list(range(len(classes))))
    for image_id in test_ids:
        image, labels, gt = test_proj.image(image_id), test_proj.image_labels(image_id), read_gt(image_id)
        y = torch.zeros(1, len(classes))
        y[0, labels] = 1
        with torch.inference_mode():
            amap.update({"logits": model(to_tensor(image, device))}, {"labels": y})
        props = pipe.run(image, labels)
        scores.add("cam", props.masks["cam"], gt)
        scores.add("crf", props.masks["crf"], gt)
    return {"mAP": amap.compute()["mAP"], "cam": scores.get("cam").miou, "crf": scores.get("crf").miou}


def correction_quality(*, work=None, fractions=(0.0, 0.05, 0.2), epochs=6,
                       subset=None, seed=0, test_fraction=0.3, crop=224, batch=16,
                       pixel_weight=0.1, scales=None, crf=None, max_side=512,
                       threads=2) -> list[dict]:
    """MSRC-v2: pseudo-mask quality after training with corrections on a share of the images.

    The 70/30 split of ``bench/quality.py`` (same ``seed``); one classifier per entry of
    ``fractions``, trained on the image labels of the train split plus the ground-truth masks
    of ``round(fraction * n_train)`` of its images written with ``Project.write_corrections``
    (a stand-in for an annotator; the sets are nested: the first images of one seeded
    permutation). The classifier stage uses them through its pixel loss on the CAMs
    (``classifier.pixel_weight``). Each run is scored on the test split: classifier mAP,
    mIoU of the TTA CAMs and of their dense-CRF refinement (the pipeline's default kernels unless ``crf``).
    Projects, checkpoints and CAMs are cached under ``work``.

    Returns
    -------
    list of dict
        One per fraction: ``fraction``, ``corrected`` (images), ``mAP``, ``cam``, ``crf``
        (mIoU in [0, 1]), ``train_s`` (seconds of training, 0 when reused).
    """
    work = Path(work or work_dir("wsss-loop"))
    torch.set_num_threads(threads)
    train_ids, test_ids = split_ids(test_fraction=test_fraction, seed=seed, subset=subset)
    tag = f"s{seed}-n{len(train_ids)}"
    _log(f"split: {len(train_ids)} train / {len(test_ids)} test images; work dir {work}")
    test_proj = split_project(work / f"test-{tag}", test_ids)
    order = [train_ids[i] for i in np.random.default_rng(seed).permutation(len(train_ids))]
    over = [f"classifier.{k}" for k in ("optimizer=adamw", "lr=0.0003", "head_lr_mult=10",
                                        f"batch_size={batch}", f"crop_size={crop}",
                                        f"pixel_weight={pixel_weight}")]
    cfg = PipelineConfig(scales=tuple(scales or PipelineConfig().scales), flip=True, refine=("crf",),
                         crf=dict(PipelineConfig().crf if crf is None else crf), max_side=max_side)
    rows = []
    for fraction in fractions:
        n_corr = int(round(fraction * len(train_ids)))
        proj = _corrected_project(work / f"train-{tag}-e{epochs}-c{n_corr}-{_digest(over)}",
                                  train_ids, order[:n_corr])
        t = time.perf_counter()
        _train_stage(proj, "classifier", over, epochs, threads=threads, seed=seed)
        train_s = time.perf_counter() - t
        res = _score_run(proj, test_proj, test_ids, cfg=cfg, cache_root=work / "cams")
        rows.append({"fraction": fraction, "corrected": n_corr, "train_s": train_s, **res})
        _log(f"{n_corr} corrected: mAP {res['mAP']:.3f}, CAM+TTA {res['cam']:.3f}, +CRF {res['crf']:.3f}")
    return rows


METRICS = ("mAP", "cam", "crf")


def summarize_seeds(runs: list[list[dict]]) -> list[dict]:
    """Mean and sample standard deviation (ddof=1) over seeds, per correction fraction.

    Parameters
    ----------
    runs : list of list of dict
        One :func:`correction_quality` result per seed (the same ``fractions``).

    Returns
    -------
    list of dict
        Per fraction: ``fraction``, ``corrected`` (images, of the first seed), ``seeds``,
        and for each metric ``<m>`` (the mean) and ``<m>_std`` (0 for one seed).
    """
    if not runs:
        raise ValueError("summarize_seeds needs at least one run")
    fractions = [r["fraction"] for r in runs[0]]
    for k, run in enumerate(runs[1:], 1):
        if [r["fraction"] for r in run] != fractions:
            raise ValueError(f"run {k} has fractions {[r['fraction'] for r in run]}, expected {fractions}")
    out = []
    for j, fraction in enumerate(fractions):
        row = {"fraction": fraction, "corrected": runs[0][j]["corrected"], "seeds": len(runs)}
        for m in METRICS:
            values = np.array([run[j][m] for run in runs], dtype=float)
            row[m] = float(values.mean())
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(row)
    return out


def quality_table(rows: list[dict]) -> str:
    """Markdown table of :func:`correction_quality` rows or :func:`summarize_seeds` rows
    (several seeds: ``mean ± std`` in percent)."""
    seeds = max(r.get("seeds", 1) for r in rows)
    out = ["| run | corrected images | classifier mAP % | CAM+TTA mIoU % | +CRF mIoU % |",
           "|---|---:|---:|---:|---:|"]
    for r in rows:
        name = "image labels only" if r["corrected"] == 0 else f"+ corrections on {100 * r['fraction']:g} %"
        cells = [f"{100 * r[m]:.1f}" + (f" ± {100 * r[m + '_std']:.1f}" if seeds > 1 else "")
                 for m in METRICS]
        out.append(f"| {name} | {r['corrected']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- the shapes sample: a project with background ------------------------------------------
def _shapes_project(path, samples, corrected=()):
    from napari_wsss.sample import SHAPES_CLASSES
    from napari_wsss.store import Project

    path = Path(path)
    if path.exists():
        return Project.open(path)
    project = Project.create(path, list(SHAPES_CLASSES[1:]), background=True)
    for s in samples:
        project.add_image(s.image_id, s.image, s.labels)
    for s in corrected:
        project.write_corrections(s.image_id, s.mask)
    return project


def shapes_correction_quality(*, work=None, fractions=(0.0, 0.2), epochs=8, n_train=48,
                              n_test=32, size=128, seed=0, variants=("threshold", "logit"),
                              pixel_weight=0.1, threads=1) -> list[dict]:
    """Shapes sample (background): pseudo-mask quality at the project's *default* threshold
    after training with corrections, for each pixel-loss background rule in ``variants``.

    ``n_train + n_test`` images of :func:`napari_wsss.sample.make_shapes` (seed ``1000 +
    seed``); the ground-truth masks of ``round(fraction * n_train)`` training images (one seeded
    permutation, nested sets) are written as corrections; the classifier (the demo's settings,
    crops at the images' own 128 px) trains on labels + corrections; the pipeline's default
    threshold (``cam_threshold="auto"``: calibrated on the corrected pixels when there are
    enough, else the per-image rule) is applied to the held-out images: CAM+TTA and +CRF
    mIoU there, with the best swept threshold's CAM mIoU for reference.
    """
    from napari_wsss.demo import DEMO_TRAIN_OVERRIDES
    from napari_wsss.evaluate import DEFAULT_THRESHOLDS, cam_threshold_sweep
    from napari_wsss.metrics import confusion_matrix, segmentation_scores
    from napari_wsss.pipeline import calibrate_project
    from napari_wsss.sample import make_shapes

    work = Path(work or work_dir("wsss-loop"))
    torch.set_num_threads(threads)
    samples = make_shapes(n_train + n_test, size=size, seed=1000 + seed)
    train, test = samples[:n_train], samples[n_train:]
    order = [train[i] for i in np.random.default_rng(seed).permutation(n_train)]
    rows = []
    for fraction in fractions:
        n_corr = int(round(fraction * n_train))
        for variant in (variants if n_corr else variants[:1]):  # no corrections: no pixel loss
            over = [o for o in DEMO_TRAIN_OVERRIDES if not o.startswith("classifier.crop_size")]
            over += [f"classifier.crop_size={size}", f"classifier.pixel_weight={pixel_weight}",
                     f"classifier.pixel_background={variant}"]
            proj = _shapes_project(work / f"shapes-s{seed}-n{n_train}-c{n_corr}-e{epochs}-{_digest(over)}",
                                   train, order[:n_corr])
            t = time.perf_counter()
            _train_stage(proj, "classifier", over, epochs, threads=threads, seed=seed)
            train_s = time.perf_counter() - t
            pipe = Pipeline.from_project(proj, PipelineConfig(refine=("crf",)), device="cpu")
            cal = calibrate_project(proj, pipe)
            pipe.set_calibration(cal)
            c = len(proj.classes)
            conf = {k: np.zeros((c, c + 1), np.int64) for k in ("cam", "crf")}
            sweep = 0
            for s in test:
                cams = pipe.cams(s.image, s.labels)
                props = pipe.proposals_from_cams(s.image, s.labels, cams)
                for k in conf:
                    conf[k] += confusion_matrix(props.masks[k], s.mask, c)
                sweep = sweep + cam_threshold_sweep(cams, np.asarray(s.labels), s.mask, background=0,
                                                    num_classes=c, thresholds=DEFAULT_THRESHOLDS)
            best = max(segmentation_scores(k).miou for k in sweep)
            row = {"fraction": fraction, "corrected": n_corr, "variant": variant if n_corr else "-",
                   "seed": seed, "threshold": cal["cam_threshold"], "cam": segmentation_scores(conf["cam"]).miou,
                   "crf": segmentation_scores(conf["crf"]).miou, "cam_best": best, "train_s": train_s}
            rows.append(row)
            _log(f"shapes seed {seed}, {n_corr} corrected, {row['variant']}: threshold {row['threshold']}, "
                 f"CAM {row['cam']:.3f} (best swept {best:.3f}), +CRF {row['crf']:.3f}")
    return rows


def shapes_table(rows: list[dict]) -> str:
    """Markdown: one line per (corrected images, pixel-loss rule), mean ± std over seeds."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["corrected"], r["variant"]), []).append(r)
    out = ["| corrected images | pixel loss background | seeds | default threshold | CAM+TTA mIoU % "
           "| +CRF mIoU % | CAM at best swept threshold % |", "|---:|---|---:|---|---:|---:|---:|"]

    def cell(vals):
        v = 100 * np.array(vals, float)
        return f"{v.mean():.1f}" + (f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else "")

    for (n, variant), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        thr = ", ".join(str(r["threshold"]) for r in rs)
        out.append(f"| {n} | {variant} | {len(rs)} | {thr} | {cell([r['cam'] for r in rs])} | "
                   f"{cell([r['crf'] for r in rs])} | {cell([r['cam_best'] for r in rs])} |")
    return "\n".join(out)
