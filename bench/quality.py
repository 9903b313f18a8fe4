"""Pseudo-mask quality on MSRC-v2: CAM -> +TTA -> +dense CRF -> +random walk (-> segmenter, explainer).

Protocol: a fixed seeded 70/30 split of MSRC-v2 (23 classes, no background). On the 70 %,
with image-level labels only, the ``trainer`` trains the classifier, then (as ``train --stage
all`` does) prelabels those training images, trains AffinityNet on their CAMs, prelabels them
again with the random walk and trains a DeepLabV3+ on those pseudo-masks; the Explainer is
trained against the frozen classifier. Proposals are made for the held-out 30 % with their
image-level labels (``napari_wsss.pipeline``) and scored against the ground truth
(``napari_wsss.metrics``; the saved proposals are cross-checked with
``napari_wsss.evaluate.evaluate_project``). The upper bound is the trainer's segmenter trained
on the ground-truth masks of the 70 %, predicting the 30 % (restricted to the image's labels,
as the proposals are, and unrestricted). Settings are chosen on training images only
(``--tune-crf``; ``PipelineConfig`` documents its defaults' numbers), never on the 30 %.

Trained checkpoints and CAMs are cached in ``--work``: a re-run with the same training
settings reuses them, so refinement settings can be tried in seconds per image::

    python bench/quality.py                      # full run (~2 h on 2 busy CPU cores)
    python bench/quality.py --tune-crf 60        # CRF kernel grid on 60 training images
    python bench/quality.py --tune-rw 60         # random walk on CAMs vs on the CRF (after a full run)
    python bench/quality.py --only segmenter     # only the supervised upper bound
    python bench/quality.py --subset 60 --epochs 1 --seg-epochs 1 --aff-epochs 1 \
        --pseudo-seg-epochs 1 --explainer-epochs 1 --crop 160   # smoke run
    python bench/quality.py --crf '{"bilateral_srgb": 10}' --rw '{"beta": 10, "t": 32}'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import add_data_argument, work_dir  # noqa: E402
from _msrc import msrc_root, read_gt, split_ids, split_project, use_data  # noqa: E402

from napari_wsss.device import choose_device  # noqa: E402
from napari_wsss.evaluate import evaluate_project  # noqa: E402
from napari_wsss.metrics import confusion_matrix, segmentation_scores  # noqa: E402
from napari_wsss.models import load_segmenter, predict_segmenter, to_tensor  # noqa: E402
from napari_wsss.refine.background import labels_from_scores, scores_with_background  # noqa: E402
from napari_wsss.pipeline import Pipeline, PipelineConfig, prelabel, save_proposals  # noqa: E402
from trainer import TrainConfig, train  # noqa: E402
from trainer.classifier import MeanAveragePrecision  # noqa: E402
from trainer.config import apply_overrides  # noqa: E402


def _digest(overrides: list[str]) -> str:
    """Short name of a list of training overrides (cache key of the trained project)."""
    return hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- training (cached) ------------------------------------------------------------------
def _trained(project, stage: str, epochs: int) -> bool:
    state = project.load_checkpoint(stage)
    return state is not None and int(state.get("epoch", 0)) >= epochs


def _train_stage(project, stage: str, overrides: list[str], epochs: int, *, threads: int, seed: int):
    if _trained(project, stage, epochs):
        _log(f"{stage}: reusing {project.latest_checkpoint(stage)}")
        return
    cfg = apply_overrides(TrainConfig(), [f"{stage}.epochs={epochs}", *overrides])
    cfg.resume, cfg.seed, cfg.log_every, cfg.num_workers = True, seed, 10, 0
    _log(f"{stage}: training on {len(project.image_ids())} images ({' '.join(overrides)})")
    t = time.perf_counter()
    torch.set_num_threads(threads)
    train(project.path, stage, cfg)
    _log(f"{stage}: trained in {time.perf_counter() - t:.0f} s")


def _gt_project(path, ids):
    """Train-split project whose corrections are the ground-truth masks (supervised bound)."""
    project = split_project(path, ids)
    for i in ids:
        if not np.any(project.read_corrections(i) != 255):
            project.write_corrections(i, read_gt(i))
    return project


# -- proposals --------------------------------------------------------------------------
class _CamCache:
    """Wraps ``Pipeline.cams_batch`` (which ``cams``, ``run`` and ``run_batch`` go through) so
    the CAMs of one image are computed once per model and TTA.

    Keyed by the image's content and labels, so ``prelabel`` (which passes images, not ids)
    hits it; the images a batch misses are computed in one call.
    """

    def __init__(self, pipe: Pipeline, folder: Path):
        self.compute, self.folder = pipe.cams_batch, folder
        folder.mkdir(parents=True, exist_ok=True)
        pipe.cams_batch = self

    def _path(self, image, labels) -> Path:
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:20]
        return self.folder / f"{key}-{'-'.join(str(int(c)) for c in labels)}.npy"

    def __call__(self, images, labels) -> list:
        paths = [self._path(im, lab) for im, lab in zip(images, labels)]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        computed = self.compute([images[i] for i in missing], [labels[i] for i in missing]) if missing else []
        for i, cams in zip(missing, computed):
            np.save(paths[i], cams)
        return [np.load(p) for p in paths]


def _cached(pipe: Pipeline, cache_root: Path, version: str) -> Pipeline:
    """``pipe`` with its CAMs cached under ``cache_root`` by model version and TTA."""
    cfg = pipe.config
    tag = "single" if cfg.scales == (1.0,) and not cfg.flip else (
        "tta-" + "-".join(f"{s:g}" for s in cfg.scales) + ("-flip" * cfg.flip))
    _CamCache(pipe, cache_root / f"{version}-{tag}")
    return pipe


class _Scores:
    def __init__(self, num_classes):
        self.c = num_classes
        self.conf: dict[str, np.ndarray] = {}

    def add(self, key, pred, gt):
        self.conf.setdefault(key, np.zeros((self.c, self.c + 1), np.int64))
        self.conf[key] += confusion_matrix(pred, gt, self.c)

    def get(self, key):
        return segmentation_scores(self.conf[key])


def _version(project) -> str:
    """Cache key of a project's classifier (``Path.stem`` of a checkpoint is always "checkpoint")."""
    return f"{project.path.name}-{project.checkpoints('classifier')[-1]}"


def _configs(args) -> tuple[PipelineConfig, PipelineConfig]:
    """Single-pass and full (TTA + CRF + RW + segmenter) pipeline settings of this run."""
    base = PipelineConfig()
    crf = base.crf if args.crf is None else json.loads(args.crf)
    single = PipelineConfig(scales=(1.0,), flip=False, refine=(), max_side=args.max_side)
    full = PipelineConfig(scales=tuple(args.scales), flip=not args.no_flip, refine=("crf", "rw", "segmenter", "explainer"),
                          crf=crf, rw={**base.rw, **json.loads(args.rw)}, rw_input=args.rw_input,
                          max_side=args.max_side)
    return single, full


def _prelabel_train(project, cfg: PipelineConfig, cache: Path, gt_scores: bool = False) -> None:
    """Proposals for the training split itself (what ``train --stage all`` does between stages)."""
    device = choose_device()
    pipe = _cached(Pipeline.from_project(project, cfg, device=device), cache, _version(project))
    t = time.perf_counter()
    report = prelabel(project, pipeline=pipe, force=True, progress=False)
    if report.failed:
        raise RuntimeError(report.summary())
    _log(f"prelabelled the training split ({', '.join(('cam', *cfg.refine))}) in {time.perf_counter() - t:.0f} s")
    if gt_scores:  # pseudo-mask quality on the training split (the usual WSSS number), for the log
        res = evaluate_project(project, msrc_root() / "masks", stages=("cam", "crf", "rw"))
        _log("training-split pseudo-masks mIoU: " + ", ".join(
            f"{k} {100 * v.scores.miou:.1f}" for k, v in res.stages.items()))


def _overrides(args, stage: str) -> list[str]:
    """Training overrides of ``stage`` in this benchmark (AdamW 3e-4, the run's crop and batch)."""
    keys = {"classifier": ["optimizer=adamw", "lr=0.0003", "head_lr_mult=10"],
            "segmenter": ["optimizer=adamw", "lr=0.0003", "head_lr_mult=10"],
            "affinity": ["optimizer=adamw", "lr=0.0003"],
            "explainer": ["lr=0.0003"]}[stage]  # explainer: the paper's Adam, no weight decay
    keys = keys + [f"batch_size={args.batch}", f"crop_size={args.crop}"]
    extra = {"classifier": args.cls_set, "segmenter": args.seg_set, "affinity": args.aff_set,
             "explainer": args.exp_set}[stage]
    return [f"{stage}.{k}" for k in keys] + list(extra)


#: Kernel grid of ``--tune-crf`` (the appearance kernel's colour scale and weight).
CRF_GRID = {"bilateral_srgb": (3.0, 5.0, 8.0, 13.0), "bilateral_compat": (3.0, 4.0, 6.0, 10.0)}


def _tune_crf(args, train_proj, train_ids) -> None:
    """Grid-search the CRF's appearance kernel on training images (never the test split)."""
    from itertools import product

    from napari_wsss.refine.crf import crf_refine

    ids = train_ids[:: max(1, len(train_ids) // args.tune_crf)][: args.tune_crf]
    full_cfg = _configs(args)[1]
    cam_pipe = _cached(Pipeline.from_project(train_proj, full_cfg.replace(refine=()), device="cpu"),
                       Path(args.work) / "cams", _version(train_proj))
    data = [(train_proj.image(i), train_proj.image_labels(i), read_gt(i)) for i in ids]
    cams = [cam_pipe.cams(im, lab) for im, lab, _ in data]
    scores = _Scores(len(train_proj.classes))
    for (im, lab, gt), c in zip(data, cams):
        scores.add("cam", labels_from_scores(*scores_with_background(c, lab, background=None)), gt)
    grid = [dict(zip(CRF_GRID, v)) for v in product(*CRF_GRID.values())]
    t = time.perf_counter()
    for kw in grid:
        key = json.dumps(kw)
        for (im, lab, gt), c in zip(data, cams):
            scores.add(key, crf_refine(im, c, lab, **kw).mask, gt)
    best = max((json.dumps(kw) for kw in grid), key=lambda k: scores.get(k).miou)
    print(f"dense CRF on {len(ids)} training images (TTA CAMs: mIoU {100 * scores.get('cam').miou:.1f}); "
          f"{(time.perf_counter() - t) / len(grid) / len(ids):.2f} s per image and setting\n")
    print("| " + " | ".join(CRF_GRID) + " | mIoU % |\n|" + "---:|" * (len(CRF_GRID) + 1))
    for kw in grid:
        mark = " **best**" if json.dumps(kw) == best else ""
        print("| " + " | ".join(f"{v:g}" for v in kw.values()) + f" | {100 * scores.get(json.dumps(kw)).miou:.1f}{mark} |")


def _tune_rw(args, train_proj, train_ids) -> None:
    """What the random walk should propagate (CAMs or CRF output), on training images."""
    ids = train_ids[:: max(1, len(train_ids) // args.tune_rw)][: args.tune_rw]
    full_cfg = _configs(args)[1].replace(refine=("crf", "rw"))
    pipe = _cached(Pipeline.from_project(train_proj, full_cfg, device="cpu"), Path(args.work) / "cams",
                   _version(train_proj))
    if pipe.affinity is None:
        raise SystemExit(f"{train_proj.path} has no trained AffinityNet yet: run `python bench/quality.py` first")
    scores = _Scores(len(train_proj.classes))
    for i in ids:
        image, labels, gt = train_proj.image(i), train_proj.image_labels(i), read_gt(i)
        for rw_input in ("cam", "crf"):
            pipe.config = full_cfg.replace(rw_input=rw_input)
            props = pipe.run(image, labels)
            if rw_input == "cam":  # the same CRF mask both times: count it once
                scores.add("crf", props.masks["crf"], gt)
            scores.add(f"rw on {rw_input}", props.masks["rw"], gt)
    print(f"random walk (trained AffinityNet) on {len(ids)} training images\n\n| stage | mIoU % |\n|---|---:|")
    for key in ("crf", "rw on cam", "rw on crf"):
        print(f"| {key} | {100 * scores.get(key).miou:.1f} |")


def _weak_chain(args, train_proj, full_cfg: PipelineConfig, cache: Path) -> None:
    """AffinityNet and segmenter trained on the training split's own pseudo-masks.

    The order of ``napari-wsss train --stage all``: CAMs (+ CRF) of the training images ->
    AffinityNet -> random-walk pseudo-masks -> DeepLabV3+; nothing sees a ground-truth mask.
    The Explainer (Stalder et al.) is trained against the frozen classifier on the image
    labels alone.
    """
    if args.explainer_epochs:
        _train_stage(train_proj, "explainer", _overrides(args, "explainer"), args.explainer_epochs,
                     threads=args.threads, seed=args.seed)
    if args.aff_epochs:
        if not _trained(train_proj, "affinity", args.aff_epochs):
            _prelabel_train(train_proj, full_cfg.replace(refine=("crf",)), cache)
        _train_stage(train_proj, "affinity", _overrides(args, "affinity"), args.aff_epochs,
                     threads=args.threads, seed=args.seed)
    if args.pseudo_seg_epochs:
        if not _trained(train_proj, "segmenter", args.pseudo_seg_epochs):
            _prelabel_train(train_proj, full_cfg.replace(refine=("crf", "rw")), cache, gt_scores=True)
        _train_stage(train_proj, "segmenter", _overrides(args, "segmenter"), args.pseudo_seg_epochs,
                     threads=args.threads, seed=args.seed)


def _evaluate(args, train_proj, test_proj, test_ids) -> dict:
    device = choose_device()
    classes = list(test_proj.classes)
    single_cfg, full_cfg = _configs(args)
    version, cache = _version(train_proj), Path(args.work) / "cams"
    full = _cached(Pipeline.from_project(train_proj, full_cfg, device=device), cache, version)
    model = full.model
    single = _cached(Pipeline(model, classes, None, single_cfg, model_version=version), cache, version)
    walk = ("crf", "rw") if full.rw_input == "crf" else ("rw",)  # the CRF only where the walk reads it
    colour = _cached(Pipeline(model, classes, None, full_cfg.replace(refine=walk), model_version=version),
                     cache, version)
    if full.affinity is None:
        colour = None  # the full pipeline's random walk is the colour one already
    stages = ["cam", "crf", "rw"] + [s for s in ("segmenter", "explainer") if getattr(full, s) is not None]
    scores, amap = _Scores(len(classes)), MeanAveragePrecision(list(range(len(classes))))
    secs = dict.fromkeys(("cam", "tta+" + "+".join(stages[1:])), 0.0)
    for n, image_id in enumerate(test_ids):
        image, labels, gt = test_proj.image(image_id), test_proj.image_labels(image_id), read_gt(image_id)
        y = np.zeros((1, len(classes)), np.float32)
        y[0, labels] = 1
        with torch.inference_mode():
            logits = model(to_tensor(image, device))
        amap.update({"logits": logits}, {"labels": torch.from_numpy(y)})
        t = time.perf_counter()
        scores.add("cam", single.run(image, labels).masks["cam"], gt)
        t1 = time.perf_counter()
        props = full.run(image, labels)
        secs[list(secs)[1]] += time.perf_counter() - t1
        secs["cam"] += t1 - t
        for stage in stages:
            scores.add(f"tta-{stage}", props.masks[stage], gt)
        if colour is not None:
            scores.add("tta-rw-colour", colour.run(image, labels).masks["rw"], gt)
        save_proposals(test_proj, image_id, props)
        if (n + 1) % 20 == 0 or n + 1 == len(test_ids):
            _log(f"proposals {n + 1}/{len(test_ids)}: " + " ".join(
                f"{k} {100 * scores.get(k).miou:.1f}" for k in scores.conf))
    check = evaluate_project(test_proj, msrc_root() / "masks", stages=tuple(stages), ids=test_ids)
    for stage in stages:
        ours, theirs = scores.get(f"tta-{stage}").miou, check.stages[stage].scores.miou
        if abs(ours - theirs) > 1e-9:
            raise RuntimeError(f"evaluate_project disagrees on {stage}: {theirs} vs {ours}")
    return dict(scores=scores, mAP=amap.compute()["mAP"], secs=secs, tta_cfg=full_cfg, n=len(test_ids),
                crf=full.crf_kwargs, rw_input=full.rw_input,
                affinity="AffinityNet" if full.affinity is not None else "colour")


def _evaluate_segmenter(res: dict, seg_proj, test_proj, test_ids) -> None:
    """Add the supervised segmenter's scores (labels given / free) to ``res``."""
    device = choose_device()
    seg = load_segmenter(seg_proj, device, classes=list(test_proj.classes))
    t = time.perf_counter()
    for image_id in test_ids:
        image, labels, gt = test_proj.image(image_id), test_proj.image_labels(image_id), read_gt(image_id)
        res["scores"].add("seg", predict_segmenter(seg, image, labels=labels), gt)
        res["scores"].add("seg-free", predict_segmenter(seg, image), gt)
    res["secs"]["segmenter (x2)"] = time.perf_counter() - t


def _table(res: dict, args) -> str:
    s, cfg, rows = res["scores"], res.get("tta_cfg"), []
    if cfg is not None:
        tta = f"scales {', '.join(f'{x:g}' for x in cfg.scales)}" + (" + flip" if cfg.flip else "")
        rows = [("CAM (single scale)", "cam"), (f"+TTA ({tta})", "tta-cam"),
                (f"+dCRF {json.dumps(res['crf'])}", "tta-crf"),
                (f"+RW colour affinity ({res['rw_input']} input)", "tta-rw-colour"),
                (f"+RW ({res['affinity']} affinity, {res['rw_input']} input, {json.dumps(dict(cfg.rw))})", "tta-rw"),
                ("+DeepLabV3+ trained on the training split's RW pseudo-masks", "tta-segmenter"),
                ("Explainer masks (Stalder et al.; one forward pass, no TTA)", "tta-explainer")]
        rows = [r for r in rows if r[1] in s.conf]
    if "seg" in s.conf:
        rows += [("supervised DeepLabV3+ MobileNetV2, image labels given (upper bound)", "seg"),
                 ("supervised DeepLabV3+ MobileNetV2, no labels", "seg-free")]
    out = [f"MSRC-v2, held-out {res['n']} images (seed {args.seed}, test fraction {args.test_fraction}); "
           f"classifier mAP on the test split: {100 * res.get('mAP', float('nan')):.1f}", "",
           "| method | mIoU % | pixel acc. % |", "|---|---:|---:|"]
    for name, key in rows:
        sc = s.get(key)
        out.append(f"| {name} | {100 * sc.miou:.1f} | {100 * sc.pixel_accuracy:.1f} |")
    out += ["", "seconds per image: " + ", ".join(f"{k} {v / res['n']:.2f}" for k, v in res["secs"].items())]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=work_dir("wsss-quality"), help="projects, checkpoints, CAM cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--subset", type=int, default=None, help="use only this many images (quick runs)")
    p.add_argument("--epochs", type=int, default=10, help="classifier epochs")
    p.add_argument("--seg-epochs", type=int, default=4, help="supervised segmenter epochs (0: no upper bound)")
    p.add_argument("--aff-epochs", type=int, default=8, help="AffinityNet epochs (0: colour affinity only)")
    p.add_argument("--pseudo-seg-epochs", type=int, default=4,
                   help="epochs of the segmenter on the training split's pseudo-masks (0: none)")
    p.add_argument("--crop", type=int, default=224, help="training crop side (both models)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--cls-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra classifier overrides (classifier.KEY=VALUE)")
    p.add_argument("--seg-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra segmenter overrides (segmenter.KEY=VALUE)")
    p.add_argument("--aff-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra AffinityNet overrides (affinity.KEY=VALUE)")
    p.add_argument("--explainer-epochs", type=int, default=4, help="Explainer epochs (0: none)")
    p.add_argument("--exp-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Explainer overrides (explainer.KEY=VALUE)")
    p.add_argument("--scales", type=float, nargs="+", default=list(PipelineConfig().scales))
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--crf", default=None,
                   help="JSON kwargs of crf_refine (default: PipelineConfig's; '{}' = crf_refine's defaults)")
    p.add_argument("--rw", default="{}", help="JSON: radius, beta, t, stride of the random walk")
    p.add_argument("--rw-input", default=PipelineConfig().rw_input, choices=("auto", "crf", "cam"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tune-crf", type=int, default=0, metavar="N",
                   help="grid-search the CRF kernels on N training images and stop")
    p.add_argument("--tune-rw", type=int, default=0, metavar="N",
                   help="compare the random walk on CAMs / on the CRF on N training images and stop")
    p.add_argument("--only", default="all", choices=("all", "classifier", "segmenter"),
                   help="train and score only one side (e.g. two processes in parallel; a later "
                        "run with the same settings reuses both and prints the whole table)")
    add_data_argument(p)
    args = p.parse_args(argv)
    use_data(args.data)
    torch.set_num_threads(args.threads)

    work = Path(args.work)
    train_ids, test_ids = split_ids(test_fraction=args.test_fraction, seed=args.seed, subset=args.subset)
    tag = f"s{args.seed}-n{len(train_ids)}"
    _log(f"split: {len(train_ids)} train / {len(test_ids)} test images; work dir {work}")
    cls_over, seg_over = _overrides(args, "classifier"), _overrides(args, "segmenter")
    train_proj = split_project(work / f"train-{tag}-e{args.epochs}-{_digest(cls_over)}", train_ids)
    test_proj = split_project(work / f"test-{tag}", test_ids)
    res = None
    if args.only in ("all", "classifier"):
        _train_stage(train_proj, "classifier", cls_over, args.epochs, threads=args.threads, seed=args.seed)
        if args.tune_crf:
            _tune_crf(args, train_proj, train_ids)
            return 0
        if args.tune_rw:
            _tune_rw(args, train_proj, train_ids)
            return 0
        _weak_chain(args, train_proj, _configs(args)[1], work / "cams")
        res = _evaluate(args, train_proj, test_proj, test_ids)
        print(_table(res, args), flush=True)
    if args.only in ("all", "segmenter") and args.seg_epochs > 0:
        seg_proj = _gt_project(work / f"gt-{tag}-e{args.seg_epochs}-{_digest(seg_over)}", train_ids)
        _train_stage(seg_proj, "segmenter", seg_over, args.seg_epochs, threads=args.threads, seed=args.seed)
        res = res or dict(scores=_Scores(len(test_proj.classes)), secs={}, n=len(test_ids))
        _evaluate_segmenter(res, seg_proj, test_proj, test_ids)
    print()
    print(_table(res, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
