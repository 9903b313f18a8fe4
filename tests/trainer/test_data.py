import numpy as np
import torch

from trainer.data import EpochSampler, ImageDataset, MemorySource, build_transform, split_ids


def _coded_source(size=(48, 72)):
    """An image whose red channel encodes a label map, so alignment can be checked."""
    h, w = size
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 3:] = 1
    mask[h // 2:, :] = 2
    mask[:5, :5] = 255
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.where(mask == 255, 0, mask.astype(np.uint16) * 100).astype(np.uint8)
    img[..., 1] = 128
    src = MemorySource(classes=["a", "b", "c"], images={"x": img}, labels={"x": [0, 1, 2]})
    src.corrections["x"] = mask
    return src, mask


def _targets(source, iid):
    return {"mask": source.read_corrections(iid)}


def test_train_transform_keeps_mask_aligned_with_image():
    src, _ = _coded_source()
    tf = build_transform(64, train=True, scale_range=(0.6, 1.6), hflip=True, color_jitter=0.0)
    ds = ImageDataset(src, ["x"], _targets, tf, seed=1)
    for epoch in range(6):
        item = ds[(0, epoch)]
        img, mask = item["image"], item["mask"]
        assert img.shape == (3, 64, 64) and mask.shape == (64, 64)
        # away from label edges (interpolation), the red channel says which class it is
        red = img[0] * 255
        code = torch.round(red / 100)
        m = mask[None, None].float()
        flat = (torch.nn.functional.max_pool2d(m, 5, 1, 2) == -torch.nn.functional.max_pool2d(-m, 5, 1, 2))[0, 0]
        interior = (mask != 255) & flat  # 5x5 neighbourhood of one class: no interpolation
        assert interior.sum() > 500
        assert torch.equal(code[interior].long(), mask[interior])
        # padding (green == ImageNet mean 0.456, not 0.5) is ignored in the mask
        padded = torch.abs(img[1] - 0.456) < 1e-4
        assert torch.all(mask[padded] == 255)


def test_augmentation_is_a_function_of_seed_epoch_index():
    src, _ = _coded_source()
    tf = build_transform(32, train=True)
    a = ImageDataset(src, ["x"], _targets, tf, seed=0)
    b = ImageDataset(src, ["x"], _targets, tf, seed=0)
    torch.manual_seed(123)  # global RNG state must not matter
    x0 = a[(0, 3)]
    torch.manual_seed(999)
    x1 = b[(0, 3)]
    assert torch.equal(x0["image"], x1["image"]) and torch.equal(x0["mask"], x1["mask"])
    assert not torch.equal(a[(0, 4)]["image"], x0["image"])


def test_eval_transform_fits_and_pads_bottom_right():
    src, mask = _coded_source((40, 80))
    ds = ImageDataset(src, ["x"], _targets, build_transform(64, train=False))
    item = ds[0]
    # 40 x 80 fits the 64 box as 32 x 64; the rest is padding (ignored)
    assert torch.all(item["mask"][32:] == 255)
    assert torch.all(item["mask"][:32] != 255) or (item["mask"][:3, :3] == 255).all()
    assert item["mask"][20, 60] == mask[20 * 40 // 32 + 5, 60 * 80 // 64]


def test_split_is_stable_and_covers_everything():
    ids = [f"im{i}" for i in range(50)]
    tr, va = split_ids(ids, 0.2)
    assert sorted(tr + va) == sorted(ids) and not set(tr) & set(va)
    assert 3 <= len(va) <= 20
    assert split_ids(list(reversed(ids)), 0.2)[1] == sorted(va, key=ids[::-1].index)
    assert split_ids(ids, 0.0) == (ids, [])
    tr, va = split_ids(["a", "b"], 0.9)
    assert len(tr) == 1 and len(va) == 1


def test_replica_batches_union_equals_single_process_batch():
    n, per_rank, world = 10, 2, 2
    single = EpochSampler(n, seed=5)
    ranks = [EpochSampler(n, num_replicas=world, rank=r, seed=5) for r in range(world)]
    for epoch in range(3):
        single.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        flat = [i for i, _ in single]
        per = [[i for i, _ in s] for s in ranks]
        for k in range(n // (per_rank * world)):
            union = sorted(sum((p[k * per_rank:(k + 1) * per_rank] for p in per), []))
            assert union == sorted(flat[k * per_rank * world:(k + 1) * per_rank * world])


def test_sampler_skip_resumes_mid_epoch():
    s = EpochSampler(8, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, skip=3)
    assert list(s) == full[3:] and len(s) == 5
    assert all(e == 2 for _, e in full)
