"""Training data: image sources, joint image/mask augmentation, datasets and samplers.

A *source* is anything with the read side of the store API (``napari_wsss.store.Project``
is one; :class:`MemorySource` is a small in-memory one for tests and benchmarks):
``classes``, ``background``, ``image_ids()``, ``image(id)``, ``image_labels(id)``,
``read_corrections(id)``, ``read_mask(id, stage)`` and, for the AffinityNet stage,
``read_cams(id, method)`` / ``cam_methods(id)``. Stages read corrections through
:func:`corrections`, which turns pixels painted "ignore" (254) into 255 like unlabeled
ones, but still reports them as painted (they override pseudo-masks with "ignore").

Augmentation is seeded per (seed, epoch, image index), so a sample looks the same
whichever process or worker loads it: single-process and DDP runs see identical
batches, and a resumed run sees exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from napari_wsss.conventions import IGNORE
from napari_wsss.transforms import IMAGENET_MEAN, to_rgb_float
from napari_wsss.store import split_corrections

__all__ = [
    "stage_datasets",
    "corrections",
    "Source",
    "MemorySource",
    "split_ids",
    "build_transform",
    "ImageDataset",
    "EpochSampler",
]


class Source(Protocol):
    """The read side of ``napari_wsss.store.Project`` that training needs."""

    classes: list[str]
    background: int | None

    def image_ids(self) -> list[str]: ...
    def image(self, image_id: str) -> np.ndarray: ...
    def image_labels(self, image_id: str) -> np.ndarray: ...
    def read_corrections(self, image_id: str) -> np.ndarray: ...
    def read_mask(self, image_id: str, stage: str) -> np.ndarray | None: ...
    def read_cams(self, image_id: str, method: str) -> tuple[np.ndarray, np.ndarray] | None: ...
    def cam_methods(self, image_id: str) -> list[str]: ...


@dataclass
class MemorySource:
    """An in-memory :class:`Source` (tests, benchmarks, notebooks).

    Attributes
    ----------
    classes : list of str
    background : int or None
    images : dict of str to ndarray, shape (H, W[, C])
    labels : dict of str to sequence of int
        Foreground class indices per image.
    corrections : dict of str to ndarray, shape (H, W), uint8
        Sparse pixel labels as the store keeps them: 254 = painted "ignore", 255 =
        unlabeled; missing ids have none.
    masks : dict of (str, str) to ndarray, shape (H, W), uint8
        Pseudo-masks keyed by (image id, stage).
    cams : dict of (str, str) to (ndarray, ndarray)
        ``(cams (K, h, w), classes (K,))`` keyed by (image id, CAM method).
    """

    classes: list[str]
    background: int | None = None
    images: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    corrections: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    cams: dict = field(default_factory=dict)
    path: str = "<memory>"

    def image_ids(self) -> list[str]:
        return list(self.images)

    def image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]

    def image_labels(self, image_id: str) -> np.ndarray:
        return np.asarray(sorted(self.labels.get(image_id, ())), dtype=np.int64)

    def read_corrections(self, image_id: str) -> np.ndarray:
        if image_id in self.corrections:
            return self.corrections[image_id]
        return np.full(self.images[image_id].shape[:2], IGNORE, dtype=np.uint8)

    def read_mask(self, image_id: str, stage: str) -> np.ndarray | None:
        return self.masks.get((image_id, stage))

    def read_cams(self, image_id: str, method: str) -> tuple[np.ndarray, np.ndarray] | None:
        got = self.cams.get((image_id, method))
        return None if got is None else (np.asarray(got[0], np.float32), np.asarray(got[1], np.int64))

    def cam_methods(self, image_id: str) -> list[str]:
        return [m for (i, m) in self.cams if i == image_id]


def corrections(source: Source, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """An image's corrections for training: ``(labels, painted)``.

    Returns
    -------
    labels : ndarray, shape (H, W), uint8
        Class indices; 255 (ignored by every loss) where nothing or "ignore" was painted.
    painted : ndarray, shape (H, W), bool
        Where the annotator painted (a class or "ignore"): these pixels replace
        pseudo-mask pixels, "ignore" with 255.
    """
    return split_corrections(source.read_corrections(image_id))


def split_ids(ids: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Stable train/validation split by a hash of each id.

    Returns ``(train_ids, val_ids)``; ``val_ids`` is empty when ``val_fraction`` is 0.
    With a positive fraction both parts keep at least one image when there are two.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0 or len(ids) < 2:
        return list(ids), []
    key = {i: zlib.crc32(i.encode()) / 2**32 for i in ids}
    val = [i for i in ids if key[i] < val_fraction]
    if not val:
        val = [min(ids, key=key.get)]
    if len(val) == len(ids):
        val = val[:-1]
    vs = set(val)
    return [i for i in ids if i not in vs], val


class _PadTo(v2.Transform):
    """Pad bottom/right to ``size`` (image with the ImageNet mean, masks with 255)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def transform(self, inpt, params):
        h, w = inpt.shape[-2:]
        pad = [0, 0, max(self.size - w, 0), max(self.size - h, 0)]
        if isinstance(inpt, tv_tensors.Mask):
            return v2.functional.pad(inpt, pad, fill=IGNORE)
        if isinstance(inpt, tv_tensors.Image):
            return v2.functional.pad(inpt, pad, fill=list(IMAGENET_MEAN))
        return inpt


def build_transform(
    crop_size: int,
    *,
    train: bool,
    scale_range: tuple[float, float] = (0.7, 1.3),
    hflip: bool = True,
    color_jitter: float = 0.2,
) -> v2.Transform:
    """Joint image + mask transform to a ``crop_size`` square.

    Training: fit the image in the crop box times a random scale (masks resized with
    nearest neighbour), random crop padded with the ImageNet mean / 255, optional
    horizontal flip, light colour jitter (image only). Evaluation: fit in the crop box
    and pad bottom/right. Images stay in ``[0, 1]``; normalisation happens on device.
    """
    fill = {tv_tensors.Image: list(IMAGENET_MEAN), tv_tensors.Mask: IGNORE}
    if not train:
        return v2.Compose([v2.ScaleJitter((crop_size, crop_size), (1.0, 1.0)), _PadTo(crop_size)])
    steps: list[v2.Transform] = [
        v2.ScaleJitter((crop_size, crop_size), tuple(scale_range)),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if color_jitter > 0:
        cj = color_jitter
        steps.append(v2.ColorJitter(brightness=cj, contrast=cj, saturation=cj))
    return v2.Compose(steps)


TargetFn = Callable[[Source, str], dict]


class ImageDataset(Dataset):
    """Images of a source with per-stage targets, augmented reproducibly.

    Parameters
    ----------
    source : Source
    ids : list of str
        Image ids to serve.
    targets : callable
        ``targets(source, image_id) -> dict``: ``"mask"`` (H, W) uint8 (optional, transformed
        with the image) and any fixed-size arrays (e.g. ``"labels"``), passed through.
    transform : v2.Transform
    seed : int
        Augmentation seed; the RNG of sample ``i`` in epoch ``e`` is seeded from
        ``(seed, e, i)``.

    Items are dicts: ``"image"`` float32 (3, S, S) in ``[0, 1]``, ``"mask"`` int64 (S, S)
    when the target has one, ``"index"``, plus the pass-through targets. Keys are an
    index or an ``(index, epoch)`` pair (what :class:`EpochSampler` yields).
    """

    def __init__(self, source: Source, ids: list[str], targets: TargetFn, transform, *, seed=0):
        self.source = source
        self.ids = list(ids)
        self.targets = targets
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image_id = self.ids[index]
        img = torch.from_numpy(to_rgb_float(self.source.image(image_id))).permute(2, 0, 1)
        target = dict(self.targets(self.source, image_id))
        mask = target.pop("mask", None)
        sample = {"image": tv_tensors.Image(img)}
        if mask is not None:
            sample["mask"] = tv_tensors.Mask(torch.from_numpy(np.asarray(mask, dtype=np.uint8)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(f"{self.seed}/{epoch}/{index}".encode()))
            sample = self.transform(sample)
        out = {"image": sample["image"].as_subclass(torch.Tensor).contiguous(), "index": index}
        if mask is not None:
            out["mask"] = sample["mask"].as_subclass(torch.Tensor).long()
        for k, v in target.items():
            out[k] = torch.as_tensor(v)
        return out


class EpochSampler(Sampler):
    """DistributedSampler order (shuffled per epoch) yielding ``(index, epoch)`` keys.

    With ``num_replicas=1`` a single process sees, step by step, the union of what the
    DDP processes see with the same global batch. ``set_epoch(epoch, skip=k)`` starts
    the epoch after its first ``k`` samples of this replica (exact resume mid-epoch).
    """

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0, shuffle=True, seed=0):
        self._base = DistributedSampler(
            range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed
        )
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip
        self._base.set_epoch(epoch)

    def __iter__(self):
        for i in list(self._base)[self.skip :]:
            yield (i, self.epoch)

    def __len__(self) -> int:
        return max(len(self._base) - self.skip, 0)


def stage_datasets(source, train_ids, val_ids, targets, cfg, *, seed: int = 0):
    """Train set (augmented as ``cfg`` says) and validation set (``None`` without ``val_ids``)
    of a stage: the one place the stages build their datasets."""
    aug = dict(scale_range=cfg.scale_range, hflip=cfg.hflip, color_jitter=cfg.color_jitter)
    train_set = ImageDataset(source, train_ids, targets,
                             build_transform(cfg.crop_size, train=True, **aug), seed=seed)
    val_set = None
    if val_ids:
        val_set = ImageDataset(source, val_ids, targets,
                               build_transform(cfg.crop_size, train=False), seed=seed)
    return train_set, val_set
