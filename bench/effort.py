"""Annotation effort on MSRC-v2: strokes a simulated annotator needs, and which images to correct.

**NoC.** On held-out images of ``bench/quality.py``'s seeded 70/30 split, a deterministic
simulated annotator (``bench/_annotator.py``) paints one stroke at a time -- a disk of
``--radius`` pixels with the ground-truth class, at the interior point of the largest error
region -- until the image's mIoU reaches 90 % or 20 strokes. Three modes:

* ``scratch``: from an empty mask, the brush only;
* ``proposal``: from the pipeline's proposal (TTA CAMs -> CRF -> random walk), the brush only;
* ``propagate``: from the proposal; after each stroke the stroke-seeded refinement
  (``napari_wsss.refine.seeded``) re-runs with all strokes so far as hard seeds.

Reported per mode: NoC@85 and NoC@90 (mean strokes to reach 85 / 90 % IoU, 20 when never) and
the brush pixels painted until 90 % (or the cap).

**Review order.** The base classifier's proposals (CAM, CRF, random walk) are made for a pool of
training images; ``K`` % of the pool are "corrected" (their ground truth written as
corrections, as ``bench/loop.py --quality`` does), chosen by ``napari_wsss.review`` (most
disagreement first) or in a seeded random order. The base classifier's training run continues
for ``--finetune`` epochs on the whole training split with each set of corrections (pixel loss
on the CAMs; the same schedule for both) and the held-out images' proposals are scored (mIoU of
the random walk, the pipeline's proposal).

The classifier is trained once per setting and cached in ``--work`` (outside the repository),
as are CAMs::

    python bench/effort.py --quick                  # 30 held-out images, pool 40, <= 10 min
    python bench/effort.py                          # all 177 held-out images, pool = training split
    python bench/effort.py --quick --json --data /path/to/datasets
    python bench/effort.py --speed                  # pen-up -> proposal, 512 px, 20 classes

Data: ``--data DIR`` or ``$WSSS_DATA`` (the datasets folder or its ``msrc_v2``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _annotator import noc, simulate  # noqa: E402
from _data import add_data_argument  # noqa: E402
from _msrc import use_data  # noqa: E402

MODES = ("scratch", "proposal", "propagate")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _prior(props, mix: float) -> np.ndarray:
    """Random-walk prior of the ``propagate`` mode: ``mix`` x the proposal (one-hot) +
    ``(1 - mix)`` x the CAMs normalised per pixel."""
    cams = props.cams.astype(np.float32)
    total = cams.sum(0, keepdims=True)
    cam_p = np.where(total > 0, cams / np.maximum(total, 1e-12), 1.0 / len(cams))
    onehot = (props.masks["rw"][None] == props.cam_classes[:, None, None]).astype(np.float32)
    return mix * onehot + (1.0 - mix) * cam_p


def run_noc(pipe, project, ids, read_gt, args) -> tuple[dict, dict]:
    """NoC@85 / NoC@90 / painted pixels of the three modes over ``ids``."""
    from napari_wsss.refine.seeded import SeededRefiner

    per_mode = {m: {"noc85": [], "noc90": [], "pixels": [], "iou0": []} for m in MODES}
    secs = []
    for n, image_id in enumerate(ids):
        image, labels, gt = project.image(image_id), project.image_labels(image_id), read_gt(image_id)
        props = pipe.run(image, labels)
        start = {"scratch": np.full(gt.shape, 255, np.uint8), "proposal": props.masks["rw"],
                 "propagate": props.masks["rw"]}
        refiner = SeededRefiner(image, props.cams, props.cam_classes, prior=_prior(props, args.prior_mix),
                                work_side=args.work_side, gamma=args.gamma, beta=args.beta)

        def refine(strokes):
            t = time.perf_counter()
            mask = refiner(strokes).mask
            secs.append(time.perf_counter() - t)
            return mask

        for mode in MODES:
            res = simulate(gt, start[mode], refine=refine if mode == "propagate" else None,
                           radius=args.radius, max_strokes=20, target=0.90)
            for key, thr in (("noc85", 0.85), ("noc90", 0.90)):
                per_mode[mode][key].append(noc(res["ious"], thr))
            per_mode[mode]["pixels"].append(res["pixels"])
            per_mode[mode]["iou0"].append(res["ious"][0])
        _log(f"{n + 1}/{len(ids)} {image_id}: NoC@90 " + ", ".join(
            f"{m} {per_mode[m]['noc90'][-1]}" for m in MODES))
    summary = {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in per_mode.items()}
    extra = {"images": len(ids), "refine_ms": 1000 * float(np.mean(secs)) if secs else 0.0,
             "refine_ms_max": 1000 * float(np.max(secs)) if secs else 0.0}
    return summary, extra


def _proposal_miou(pipe, project, ids, read_gt, stage="rw") -> float:
    from napari_wsss.metrics import confusion_matrix, segmentation_scores

    conf = np.zeros((len(project.classes), len(project.classes) + 1), np.int64)
    for image_id in ids:
        props = pipe.run(project.image(image_id), project.image_labels(image_id))
        conf += confusion_matrix(props.masks[stage], read_gt(image_id), len(project.classes))
    return float(segmentation_scores(conf).miou)


def run_order(args, base_proj, pipe_for, train_ids, test_proj, test_ids, over, epochs) -> dict:
    """mIoU of the held-out proposals after correcting K % of a pool by review order vs random."""
    from _loop_quality import _corrected_project
    from _msrc import read_gt
    from quality import _train_stage

    from napari_wsss.review import image_uncertainty

    perm = np.random.default_rng(args.seed).permutation(len(train_ids))
    pool = [train_ids[i] for i in perm[: args.pool]] if args.pool else [train_ids[i] for i in perm]
    k = max(1, int(round(args.order_fraction * len(pool))))
    pipe = pipe_for(base_proj)
    scores = {}
    for n, image_id in enumerate(pool):
        props = pipe.run(base_proj.image(image_id), base_proj.image_labels(image_id))
        scores[image_id] = image_uncertainty(props.masks)
    by_review = [i for _, _, i in sorted((-scores[i], pos, i) for pos, i in enumerate(pool))][:k]
    by_random = pool[:k]  # the pool is already a seeded random permutation
    _log(f"order: pool {len(pool)}, correcting {k}; review picks uncertainty "
         f"{np.mean([scores[i] for i in by_review]):.3f}, random {np.mean([scores[i] for i in by_random]):.3f}")
    out = {"pool": len(pool), "corrected": k, "fraction": args.order_fraction,
           "base": _proposal_miou(pipe, test_proj, test_ids, read_gt)}
    from quality import _digest

    tag = f"s{args.seed}-n{len(train_ids)}"
    for name, chosen in (("review", by_review), ("random", by_random)):
        key = _digest(sorted(chosen))
        proj = _corrected_project(
            Path(args.work) / f"train-{tag}-e{epochs}+{args.finetune}-c{k}{name[0]}{key}-{_digest(over)}",
            train_ids, chosen)
        if proj.latest_checkpoint("classifier") is None:  # continue the base classifier's run
            proj.save_checkpoint("classifier", base_proj.load_checkpoint("classifier"))
        _train_stage(proj, "classifier", over, epochs + args.finetune, threads=args.threads, seed=args.seed)
        out[name] = _proposal_miou(pipe_for(proj), test_proj, test_ids, read_gt)
        _log(f"order: {name} -> held-out RW mIoU {100 * out[name]:.1f} (base {100 * out['base']:.1f})")
    return out


def run_speed(args) -> str:
    """Pen-up -> updated proposal on a 512 px image with 20 classes, by working resolution."""
    from _msrc import all_ids, msrc_root

    from napari_wsss.io import read_image
    from napari_wsss.refine._utils import resize_scores
    from napari_wsss.refine.seeded import SeededRefiner

    ids = all_ids()[:3]
    rows = []
    for image_id in ids:
        img = np.asarray(read_image(msrc_root() / "images" / f"{image_id}.png"))[..., :3]
        h, w = img.shape[:2]
        s = 512 / max(h, w)
        big = (round(h * s), round(w * s))
        img = np.clip(resize_scores(img.astype(np.float32).transpose(2, 0, 1), big).transpose(1, 2, 0),
                      0, 255).astype(np.uint8)
        rng = np.random.default_rng(0)
        cams = resize_scores(rng.random((20, 8, 12)).astype(np.float32), big)
        strokes = np.full(big, 255, np.uint8)
        for c in range(6):  # six strokes of different classes
            y, x = rng.integers(20, big[0] - 20), rng.integers(20, big[1] - 20)
            strokes[y - 4: y + 5, x - 30: x + 30] = c
        for method, side in (("rw", 128), ("rw", 160), ("rw", 192), ("rw", 256), ("crf", 160)):
            refine = SeededRefiner(img, cams, list(range(20)), method=method, work_side=side,
                                   gamma=args.gamma, beta=args.beta)
            wall, cpu = [], []
            for _ in range(3):
                t, c = time.perf_counter(), time.process_time()
                refine(strokes)
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            rows.append((image_id, f"{img.shape[1]}x{img.shape[0]}", method, side, min(wall), min(cpu)))
    # One thread (OMP_NUM_THREADS=1): the CPU time is the wall time on an otherwise idle core;
    # the wall time also holds the waits for the other jobs sharing the 2 cores.
    out = ["| image | size | method | working long side | pen-up -> proposal, CPU ms | wall ms (min of 3) |",
           "|---|---|---|---:|---:|---:|"]
    out += [f"| {i} | {sz} | {m} | {s} | {1000 * c:.0f} | {1000 * t:.0f} |" for i, sz, m, s, t, c in rows]
    return "\n".join(out)


def table(modes: dict, extra: dict, order: dict | None) -> str:
    out = [f"Held-out images: {extra['images']}; seeded refinement {extra['refine_ms']:.0f} ms per stroke "
           f"(max {extra['refine_ms_max']:.0f})", "",
           "| mode | start mIoU % | NoC@85 | NoC@90 | brush pixels |", "|---|---:|---:|---:|---:|"]
    for m in MODES:
        r = modes[m]
        out.append(f"| {m} | {100 * r['iou0']:.1f} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['pixels']:.0f} |")
    if order:
        out += ["", f"Review order: {order['corrected']} of a pool of {order['pool']} training images corrected "
                f"({100 * order['fraction']:g} %), classifier training continued with them; held-out proposal "
                "(random walk) mIoU %:",
                "", "| corrected images chosen by | mIoU % |", "|---|---:|",
                f"| none (labels only) | {100 * order['base']:.1f} |",
                f"| review order (most disagreement first) | {100 * order['review']:.1f} |",
                f"| random order | {100 * order['random']:.1f} |"]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(p)
    p.add_argument("--work", default=os.path.join(os.path.expanduser("~"), ".cache", "napari-wsss", "effort"),
                   help="cache: projects, checkpoints, CAMs")
    p.add_argument("--quick", action="store_true", help="30 held-out images, pool 40, short training")
    p.add_argument("--json", action="store_true", help="print one JSON line (logs go to stderr)")
    p.add_argument("--speed", action="store_true", help="only the pen-up latency table")
    p.add_argument("--images", type=int, default=None, help="held-out images (default all; --quick 30)")
    p.add_argument("--pool", type=int, default=None, help="training images scored for review (default all; --quick 40)")
    p.add_argument("--order-fraction", type=float, default=0.25, help="share of the pool corrected")
    p.add_argument("--no-order", action="store_true", help="skip the review-order retraining")
    p.add_argument("--no-noc", action="store_true", help="skip the simulated annotator (order only)")
    p.add_argument("--finetune", type=int, default=1,
                   help="order: epochs the base classifier's run continues with the corrections")
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs (default 6; --quick 3)")
    p.add_argument("--crop", type=int, default=None, help="training crop (default 224; --quick 192)")
    p.add_argument("--radius", type=float, default=5.0, help="stroke disk radius (pixels)")
    p.add_argument("--work-side", type=int, default=160, help="seeded refinement working long side")
    p.add_argument("--gamma", type=float, default=1e-3, help="prior weight of the seeded walk")
    p.add_argument("--beta", type=float, default=4.0, help="edge sharpness of the seeded walk")
    p.add_argument("--prior-mix", type=float, default=0.5, help="share of the proposal in the walk's prior")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    use_data(args.data)  # one line and exit when the data is missing
    torch.set_num_threads(args.threads)
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        if args.speed:
            print(run_speed(args), file=stdout)
            return 0
        result = _run(args)
    if args.json:
        def num(x):  # modes skipped with --no-noc are null, not NaN (not JSON)
            return None if x != x else x

        print(json.dumps({"modes": {m: {k: num(result["modes"][m][k]) for k in ("noc85", "noc90", "pixels")}
                                    for m in MODES}, "order": result["order"] or {}}), file=stdout)
    else:
        print(table(result["modes"], result["extra"], result["order"]), file=stdout)
    return 0


def _run(args) -> dict:
    from _loop_quality import _corrected_project
    from _msrc import read_gt, split_ids, split_project
    from quality import _cached, _digest, _train_stage, _version

    from napari_wsss.pipeline import Pipeline, PipelineConfig
    from trainer import load_classifier

    epochs = args.epochs or (3 if args.quick else 6)
    crop = args.crop or (192 if args.quick else 224)
    n_images = args.images or (30 if args.quick else None)
    if args.pool is None and args.quick:
        args.pool = 40
    work = Path(args.work)
    train_ids, test_ids = split_ids(test_fraction=0.3, seed=args.seed)
    test_ids = test_ids[:n_images] if n_images else test_ids
    tag = f"s{args.seed}-n{len(train_ids)}"
    _log(f"split: {len(train_ids)} train / {len(test_ids)} held-out images used; cache {work}")
    over = [f"classifier.{k}" for k in ("optimizer=adamw", "lr=0.0003", "head_lr_mult=10", "batch_size=16",
                                        f"crop_size={crop}", "pixel_weight=0.1")]
    base = _corrected_project(work / f"train-{tag}-e{epochs}-c0-{_digest(over)}", train_ids, [])
    _train_stage(base, "classifier", over, epochs, threads=args.threads, seed=args.seed)
    test_proj = split_project(work / f"test-{tag}", test_ids)
    cfg = PipelineConfig(refine=("crf", "rw"))

    def pipe_for(proj):
        model = load_classifier(proj, "cpu", classes=list(test_proj.classes))
        version = _version(proj)
        return _cached(Pipeline(model, test_proj.classes, None, cfg, model_version=version, device="cpu"),
                       work / "cams", version)

    modes, extra = {m: {k: float("nan") for k in ("noc85", "noc90", "pixels", "iou0")} for m in MODES}, \
        {"images": 0, "refine_ms": 0.0, "refine_ms_max": 0.0}
    if not args.no_noc:
        modes, extra = run_noc(pipe_for(base), test_proj, test_ids, read_gt, args)
        _log("NoC done:\n" + table(modes, extra, None))
    order = None
    if not args.no_order:
        order = run_order(args, base, pipe_for, train_ids, test_proj, test_ids, over, epochs)
    return {"modes": modes, "extra": extra, "order": order}


if __name__ == "__main__":
    raise SystemExit(main())
