"""make_loader/set_epoch: batches are a function of (seed, epoch), across resumes and ranks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from bitplan.data import EpochSampler, make_loader, set_epoch
from bitplan.data.augment import batch_crop_flip, crop_flip
from bitplan.data.cifar import CIFAR10, CifarImages
from bitplan.data.datasets import LabelledTensors
from bitplan.errors import DataError


def augmented(seed: int = 0, n: int = 24) -> CifarImages:
    """A CIFAR-shaped augmented dataset; each image's label is its index, to track samples."""
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(123), dtype=torch.uint8)
    return CifarImages(images, torch.arange(n), CIFAR10, augment=True, seed=seed)


def epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    set_epoch(loader, epoch)
    return list(loader)


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_resuming_at_an_epoch_replays_the_uninterrupted_batches() -> None:
    uninterrupted = make_loader(augmented(), batch_size=5, shuffle=True, seed=7)
    history = [epoch_batches(uninterrupted, epoch) for epoch in range(3)]
    resumed = make_loader(augmented(), batch_size=5, shuffle=True, seed=7)  # a fresh process after a kill
    assert same(epoch_batches(resumed, 2), history[2])
    assert not same(history[1], history[2])  # new order and new crops each epoch
    assert sorted(torch.cat([y for _, y in history[0]]).tolist()) == list(range(24))


def test_seed_changes_the_order() -> None:
    orders = [
        torch.cat([y for _, y in epoch_batches(make_loader(augmented(), batch_size=6, shuffle=True, seed=s), 0)])
        for s in (0, 1)
    ]
    assert not torch.equal(orders[0], orders[1])


def test_unshuffled_loader_keeps_dataset_order_and_drop_last() -> None:
    dataset = LabelledTensors(torch.zeros(10, 2), torch.arange(10))
    loader = make_loader(dataset, batch_size=4, shuffle=False, seed=0, drop_last=True)
    assert [y.tolist() for _, y in epoch_batches(loader, 3)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_single_process_order_is_distributed_sampler_order() -> None:
    dataset = LabelledTensors(torch.zeros(13, 1), torch.arange(13))
    ours, theirs = EpochSampler(13, shuffle=True, seed=5), DistributedSampler(dataset, num_replicas=1, rank=0, seed=5)
    for epoch in (0, 4):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)


def test_two_ranks_together_see_the_single_process_global_batches() -> None:
    global_batch = 8
    single = epoch_batches(make_loader(augmented(n=32), batch_size=global_batch, shuffle=True, seed=3), 1)
    shards = [
        make_loader(
            augmented(n=32), batch_size=global_batch // 2, shuffle=True, seed=3, distributed=True, num_replicas=2, rank=r
        )
        for r in (0, 1)
    ]
    ranks = [epoch_batches(shard, 1) for shard in shards]
    for step, (x, y) in enumerate(single):
        y_ranks = torch.cat([ranks[0][step][1], ranks[1][step][1]])
        x_ranks = torch.cat([ranks[0][step][0], ranks[1][step][0]])
        order = torch.argsort(y_ranks)
        assert torch.equal(y_ranks[order], y.sort().values)
        assert torch.equal(x_ranks[order], x[torch.argsort(y)])  # same augmentation on whichever rank


def test_iterating_leaves_the_global_rng_alone() -> None:
    loader = make_loader(augmented(), batch_size=5, shuffle=True, seed=0)
    before = torch.get_rng_state()
    epoch_batches(loader, 0)
    assert torch.equal(torch.get_rng_state(), before)


def test_batched_and_single_reads_agree() -> None:
    dataset = augmented()
    dataset.set_epoch(4)
    batch = dataset.__getitems__([3, 17, 3])
    assert torch.equal(batch[0][0], dataset[3][0]) and torch.equal(batch[1][0], dataset[17][0])
    assert torch.equal(batch[0][0], batch[2][0])


def test_batch_crop_flip_equals_per_image_crop_flip() -> None:
    images = torch.randint(0, 256, (9 * 9 * 2, 2, 5, 7), dtype=torch.uint8)
    params = torch.tensor([(t, l, f) for t in range(9) for l in range(9) for f in (0, 1)])
    batched = batch_crop_flip(images, params, padding=4)
    for b, (top, left, flip) in enumerate(params.tolist()):
        assert torch.equal(batched[b], crop_flip(images[b], top, left, bool(flip), padding=4))


def test_distributed_without_a_process_group_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"distributed loader needs an initialised process group"):
        make_loader(augmented(), batch_size=4, shuffle=True, seed=0, distributed=True)


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"`batch_size` must be >= 1"):
        make_loader(augmented(), batch_size=0, shuffle=True, seed=0)
