"""Overhead of ``napari_wsss.refine.dense_crf`` over a bare pydensecrf call on the same input.

Usage::

    python bench/crf_overhead.py [--image PATH] [--labels 3 21] [--iters 10] [--repeats 3]

Without ``--image`` the first MSRC-v2 image under ``--data DIR`` (default ``$WSSS_DATA``) is
used when given, else (or with ``--image synthetic``) a synthetic 500x375 image. Scores are smooth random class maps. Each row
times both paths ``repeats`` times, interleaved, and reports the minimum (the least disturbed
run); the overhead column is ``wrapper / bare - 1`` and should stay under 10%. "own work" times
the wrapper's extra steps alone (validation, image conversion, output reshape): the part of
the overhead that is not timing noise.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax
from scipy import ndimage

from napari_wsss.refine import crf_refine, dense_crf
from napari_wsss.refine._utils import check_scores, image_to_uint8_rgb

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _data import add_data_argument, dataset_dir  # noqa: E402

def load_image(path: str | None, msrc: pathlib.Path | None = None) -> tuple[np.ndarray, str]:
    if path is None and msrc is not None:
        path = str(sorted((msrc / "images").glob("*.png"))[0])
    if path is None or path == "synthetic":
        rng = np.random.default_rng(0)
        img = ndimage.gaussian_filter(rng.uniform(0, 255, (375, 500, 3)), (4, 4, 0))
        return img.astype(np.uint8), "synthetic"
    from skimage.io import imread

    img = imread(path)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise SystemExit(f"{path}: expected an RGB image, got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3].astype(np.uint8)), pathlib.Path(path).name


def smooth_scores(k: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = ndimage.gaussian_filter(rng.normal(0, 1, (k, *shape)), (0, 12, 12))
    e = np.exp(8 * raw)
    return (e / e.sum(0, keepdims=True)).astype(np.float32)


def bare(img: np.ndarray, scores: np.ndarray, n_iter: int) -> np.ndarray:
    k, h, w = scores.shape
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(scores)))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=img, compat=10)
    return np.array(d.inference(n_iter)).reshape(k, h, w)


def own_work(img: np.ndarray, scores: np.ndarray) -> None:
    """What dense_crf does besides the pydensecrf calls (validation, conversion, output)."""
    sc = check_scores(scores)
    image_to_uint8_rgb(img)
    np.asarray(np.ones((sc.shape[0], sc.shape[1] * sc.shape[2]), np.float32)).reshape(sc.shape)


def time_min(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=None)
    ap.add_argument("--labels", type=int, nargs="+", default=[3, 21])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    add_data_argument(ap, required=False)
    args = ap.parse_args(argv)
    msrc = dataset_dir(args.data, "msrc_v2", required=False)

    img, name = load_image(args.image, msrc)
    h, w = img.shape[:2]
    print(f"image: {name} ({w}x{h}), {args.iters} mean-field iterations, min of {args.repeats} runs\n")
    header = (
        f"{'labels':>6} | {'bare pydensecrf [s]':>19} | {'dense_crf [s]':>13} | {'overhead':>8} | "
        f"{'own work [ms]':>13} | same output"
    )
    print(header)
    print("-" * len(header))
    for k in args.labels:
        scores = smooth_scores(k, (h, w))
        t_bare, t_wrap = [], []
        for _ in range(args.repeats):  # interleave so load changes hit both paths alike
            t_bare += time_min(lambda: bare(img, scores, args.iters), 1)
            t_wrap += time_min(lambda: dense_crf(img, scores, n_iter=args.iters), 1)
        same = np.allclose(bare(img, scores, args.iters), dense_crf(img, scores, n_iter=args.iters), atol=1e-6)
        b, wr = min(t_bare), min(t_wrap)
        own = 1000 * min(time_min(lambda: own_work(img, scores), args.repeats))
        print(f"{k:>6} | {b:>19.3f} | {wr:>13.3f} | {100 * (wr / b - 1):>7.1f}% | {own:>13.1f} | {same}")

    # End to end for one image with two labels + background: what the pipeline pays.
    cams = smooth_scores(3, (h // 8, w // 8), seed=1)[1:]
    cams = cams / cams.max(axis=(1, 2), keepdims=True)
    t = min(time_min(lambda: crf_refine(img, cams, [3, 7], background=0, n_iter=args.iters), args.repeats))
    print(f"\ncrf_refine (2 labels + background, CAMs at stride 8 resized, mask): {t:.3f} s")


if __name__ == "__main__":
    main()
