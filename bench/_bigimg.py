"""Big images for ``bench/pipeline.py``: prelabel time and peak memory per image size, and how
well working-resolution masks follow the edges of a full-resolution photo.

``big_table``: one synthetic JPEG per size (square, a textured background, a red disc and a
blue rectangle), ingested and prelabelled by ``napari-wsss`` in fresh processes (peak RSS is
that process's own), at the working resolution (``--refine-max-side``, the default) and, as
the peer, at full resolution (``--refine-max-side 0``, the behaviour before it existed) for
the sizes where that fits.

``edge_table``: CCP photos (``--data DIR``) upscaled to 2000 x 3000 (bicubic: no real
3000 x 2000 photo with masks is among the shared datasets, so the full-resolution edges are
the upscaled ones), CAM-like priors from the ground truth (one-hot at 1/16 resolution,
blurred), then the dense CRF at full resolution (the reference) and at working resolutions,
whose probabilities come back to full size edge-aware (``upsample_labels`` guided by the
photo) or bilinearly (the peer). Boundary F-score (Csurka et al., BMVC 2013) with a 2 px
tolerance against the full-resolution CRF and against the (upscaled) ground truth.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ("red", "blue")
CHILD = ("import resource, sys; from napari_wsss.cli import main; rc = main(sys.argv[1:]); "
         "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")


def synthetic_photo(side: int, seed: int = 0) -> np.ndarray:
    """``side x side`` uint8 RGB: noisy grey-green texture, a red disc, a blue rectangle; made
    in row bands so no full-size float array exists."""
    rng = np.random.default_rng(seed)
    img = np.empty((side, side, 3), np.uint8)
    cy, cx, r = 0.3 * side, 0.32 * side, 0.2 * side
    cols = np.arange(side)
    for y0 in range(0, side, 512):
        y = np.arange(y0, min(side, y0 + 512))[:, None]
        band = np.empty((len(y), side, 3), np.float32)
        band[:] = (90, 110, 80)
        band += 12 * np.sin(cols / 37.0)[None, :, None] + rng.normal(0, 6, band.shape).astype(np.float32)
        disc = (y - cy) ** 2 + (cols[None] - cx) ** 2 <= r * r
        rect = (y >= 0.55 * side) & (y < 0.85 * side) & (cols[None] >= 0.5 * side) & (cols[None] < 0.9 * side)
        band[disc] = band[disc] * 0.2 + np.float32([200, 30, 30]) * 0.8
        band[rect] = band[rect] * 0.2 + np.float32([30, 40, 200]) * 0.8
        img[y0:y0 + len(y)] = np.clip(band, 0, 255).astype(np.uint8)
    return img


def _cli(args: list[str]) -> tuple[float, float, str]:
    """Run ``napari-wsss ARGS`` in a fresh process: (wall seconds, peak RSS MB, stdout)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"napari-wsss {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    rss = next(int(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("MAXRSS"))
    return wall, rss / 1024, res.stdout


def big_size(mpx: float, workdir: Path, *, full: bool, refine: str) -> dict:
    """Ingest + prelabel one ``mpx`` megapixel image: working resolution and (``full``) the
    full-resolution peer."""
    import torch
    from PIL import Image

    from napari_wsss.models import Classifier
    from napari_wsss.store import Project
    from trainer import save_classifier

    side = int(round((mpx * 1e6) ** 0.5))
    folder = workdir / f"img{side}"
    folder.mkdir()
    Image.MAX_IMAGE_PIXELS = None
    img = synthetic_photo(side)
    Image.fromarray(img).save(folder / "big.jpg", quality=90)
    del img
    with open(workdir / f"labels{side}.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", *CLASSES], ["big", 1, 1]])
    row = dict(mpx=mpx, side=side)
    for mode in ("working", "full") if full else ("working",):
        project = workdir / f"p{side}-{mode}.zarr"
        wall, rss, _ = _cli(["ingest", str(folder), "--labels", str(workdir / f"labels{side}.csv"),
                             "--project", str(project), "--background"])
        row["ingest_s"], row["ingest_mb"] = wall, rss
        p = Project.open(project)
        torch.manual_seed(0)
        save_classifier(p, Classifier("mobilenet_v2", len(p.classes), weights="IMAGENET1K_V1"))
        report = workdir / f"r{side}-{mode}.json"
        wall, rss, _ = _cli(["prelabel", "--project", str(project), "--quiet", "--refine", refine,
                             "--scales", "1", "--no-flip", "--report", str(report),
                             *(["--refine-max-side", "0"] if mode == "full" else [])])
        rep = json.loads(report.read_text())
        if len(rep["done"]) != 1:
            raise RuntimeError(f"{mpx} Mpx {mode}: not prelabelled: {rep}")
        shape = Project.open(project).read_mask("big", "rw" if "rw" in refine else "cam").shape
        if shape != (side, side):
            raise RuntimeError(f"{mpx} Mpx {mode}: mask shape {shape}")
        row[f"{mode}_s"], row[f"{mode}_mb"] = rep["seconds"], rss
    return row


def big_table(mpxs, workdir: Path, *, full_max_mpx: float, refine: str) -> list[dict]:
    return [big_size(m, workdir, full=m <= full_max_mpx, refine=refine) for m in mpxs]


# -- edges ------------------------------------------------------------------------------------
def boundary_f(pred: np.ndarray, ref: np.ndarray, tol: float = 2.0) -> float:
    """Boundary F1 of two label maps: boundary pixels (a 4-neighbour differs) within ``tol``
    px of the other map's boundary count as matched (Csurka et al., BMVC 2013)."""
    from scipy import ndimage

    def edges(m):
        e = np.zeros(m.shape, bool)
        e[:-1] |= m[:-1] != m[1:]
        e[:, :-1] |= m[:, :-1] != m[:, 1:]
        return e

    ep, er = edges(pred), edges(ref)
    if not ep.any() and not er.any():
        return 1.0
    if not ep.any() or not er.any():
        return 0.0
    precision = (ndimage.distance_transform_edt(~er)[ep] <= tol).mean()
    recall = (ndimage.distance_transform_edt(~ep)[er] <= tol).mean()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def _ccp_photo(root: Path, image_id: str, size: tuple[int, int]):
    from PIL import Image

    img = Image.open(root / "images" / f"{image_id}.jpg").convert("RGB").resize(size[::-1], Image.BICUBIC)
    gt = Image.open(root / "masks" / f"{image_id}.png").resize(size[::-1], Image.NEAREST)
    return np.array(img), np.array(gt)  # writable: pydensecrf refuses read-only buffers


def _priors(gt: np.ndarray, factor: int = 16, sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """CAM-like class scores ``(K, h / factor, w / factor)`` of the classes in ``gt`` (void
    dropped): one-hot area-averaged, blurred, each divided by its maximum."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    classes = np.array([c for c in np.unique(gt) if c != 255], np.int64)
    onehot = torch.from_numpy((gt[None] == classes[:, None, None]).astype(np.float32))[None]
    small = F.avg_pool2d(onehot, factor)[0].numpy()
    small = np.stack([ndimage.gaussian_filter(s, sigma) for s in small])
    return small / np.maximum(small.max(axis=(1, 2), keepdims=True), 1e-6), classes


def edge_table(root: Path, ids, *, sides=(512, 768, 1024), grid=((1, 1e-3), (2, 1e-4), (2, 1e-3),
               (2, 1e-2), (4, 1e-3)), size=(3000, 2000)) -> tuple[list[dict], list[dict]]:
    """Rows per (working side, upsampler) averaged over ``ids``; and the (radius, eps) grid at
    1024."""
    from napari_wsss.refine import dense_crf, upsample_labels
    from napari_wsss.refine._utils import resize_scores
    from napari_wsss.refine.upsample import area_downsample, working_shape

    rows: dict[tuple, dict] = {}
    tune: dict[tuple, list] = {}

    def add(key, **vals):
        r = rows.setdefault(key, {k: [] for k in ("bf_crf", "bf_gt", "seconds")})
        for k, v in vals.items():
            r[k].append(v)

    for image_id in ids:
        img, gt = _ccp_photo(root, image_id, size)
        priors, classes = _priors(gt)
        t = time.perf_counter()
        ref_probs = dense_crf(img, resize_scores(priors, img.shape[:2]))
        ref = classes.astype(np.uint8)[ref_probs.argmax(0)]
        add(("full", "-"), bf_crf=1.0, bf_gt=boundary_f(ref, gt), seconds=time.perf_counter() - t)
        del ref_probs
        for side in sides:
            shape = working_shape(*img.shape[:2], side)
            t = time.perf_counter()
            work = area_downsample(img, shape)
            probs = dense_crf(work, resize_scores(priors, shape))
            crf_s = time.perf_counter() - t
            for name, kw in (("edge-aware", dict(image=img)), ("bilinear", dict(shape=img.shape[:2]))):
                t = time.perf_counter()
                mask = upsample_labels(probs, classes, **kw)
                add((side, name), bf_crf=boundary_f(mask, ref), bf_gt=boundary_f(mask, gt),
                    seconds=crf_s + time.perf_counter() - t)
            if side == 1024:
                for radius, eps in grid:
                    mask = upsample_labels(probs, classes, img, radius=radius, eps=eps)
                    tune.setdefault((radius, eps), []).append((boundary_f(mask, ref), boundary_f(mask, gt)))
    out = [dict(side=k[0], upsample=k[1], **{m: float(np.mean(v)) for m, v in r.items()}) for k, r in rows.items()]
    grid_rows = [dict(radius=k[0], eps=k[1], bf_crf=float(np.mean([a for a, _ in v])),
                      bf_gt=float(np.mean([b for _, b in v]))) for k, v in tune.items()]
    return out, grid_rows


def crf_rw_timing(root: Path, image_id: str, size=(2255, 1500), sides=(None, 1024)) -> list[tuple]:
    """Seconds of the pipeline's CRF + random walk on a ``size`` photo with one label, at full
    resolution and at working resolutions (MobileNetV2 CAMs, single scale: the CAM time is
    reported apart)."""
    import torch

    from napari_wsss.models import Classifier
    from napari_wsss.pipeline import Pipeline, PipelineConfig

    img, _ = _ccp_photo(root, image_id, size)
    torch.manual_seed(0)
    model = Classifier("mobilenet_v2", 3, weights="IMAGENET1K_V1")
    rows = []
    for side in sides:
        stages: dict[str, float] = {}
        last = [None, time.perf_counter()]

        def note(stage):
            now = time.perf_counter()
            if last[0] is not None:
                stages[last[0]] = now - last[1]
            last[:] = [stage, now]

        pipe = Pipeline(model, ["null", "a", "b"], 0, PipelineConfig(scales=(1.0,), flip=False, refine=("crf", "rw"),
                                                                      refine_max_side=side),
                        model_version="bench", device="cpu")
        t0 = time.perf_counter()
        pipe.run(img, [1], progress=note)
        total = time.perf_counter() - t0
        note("end")
        rows.append((side, stages.get("cam", 0.0), total - stages.get("cam", 0.0)))
    return rows
