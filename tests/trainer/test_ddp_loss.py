"""Ratio losses under DDP (two real gloo processes) equal the single-process loss."""

import pytest
import torch


def _segmentation_loss_worker(rank, init_file, out_dir):
    """One of two gloo processes: DDP gradient of SegmentationLoss on half the batch."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from trainer.segmenter import SegmentationLoss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, mask = _segmentation_batch()
        torch.manual_seed(0)
        head = torch.nn.Conv2d(3, 4, 1)
        ddp = DistributedDataParallel(head)
        half = slice(2 * rank, 2 * rank + 2)
        loss, _ = SegmentationLoss()(ddp(x[half]), {"mask": mask[half]})
        loss.backward()
        torch.save([p.grad for p in head.parameters()], f"{out_dir}/grad{rank}.pt")
    finally:
        dist.destroy_process_group()


def _segmentation_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, 5, generator=g)
    mask = torch.randint(0, 4, (4, 5, 5), generator=g)
    mask[:2, :4] = 255  # the first process's half has 10 labelled pixels, the second 50
    return x, mask


def test_segmentation_loss_under_ddp_is_the_global_pixel_mean(tmp_path):
    import torch.multiprocessing as mp

    from trainer.segmenter import SegmentationLoss

    mp.spawn(_segmentation_loss_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    x, mask = _segmentation_batch()
    torch.manual_seed(0)
    head = torch.nn.Conv2d(3, 4, 1)
    # single process: mean cross-entropy over the 60 labelled pixels of the whole batch
    loss = torch.nn.functional.cross_entropy(head(x), mask, ignore_index=255)
    assert float(SegmentationLoss()(head(x), {"mask": mask})[0].detach()) == pytest.approx(float(loss.detach()))
    loss.backward()
    for rank in (0, 1):  # DDP averaged the gradients: both processes hold the global one
        got = torch.load(tmp_path / f"grad{rank}.pt", weights_only=True)
        for g, p in zip(got, head.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
