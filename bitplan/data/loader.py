"""Deterministic data loaders: the batches of epoch e depend only on (seed, e), never on history.

Shuffling uses the permutation ``DistributedSampler`` uses (``randperm`` seeded with ``seed + epoch``),
in one process as well as in many, so with the same global batch the ranks of a distributed run
together see exactly the samples the single-process run sees in each step. Call ``set_epoch(loader,
e)`` at the start of every epoch: it selects the epoch's permutation and the dataset's augmentation
draws, which is what makes a run resumed at epoch e replay the uninterrupted run's batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from bitplan.errors import DataError

__all__ = ["EpochAware", "EpochSampler", "make_loader", "set_epoch"]


@runtime_checkable
class EpochAware(Protocol):
    """Anything whose randomness is selected per epoch (samplers, augmented datasets)."""

    def set_epoch(self, epoch: int) -> None: ...


class EpochSampler(Sampler[int]):
    """Single-process sampler: ``randperm(n)`` seeded with ``seed + epoch``, or ``0..n-1`` unshuffled.

    Args:
        length: Number of samples.
        shuffle: Permute the samples each epoch.
        seed: Base seed of the permutation.
    """

    def __init__(self, length: int, *, shuffle: bool, seed: int) -> None:
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation ``__iter__`` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)  # DistributedSampler's formula
        return iter(torch.randperm(self.length, generator=generator).tolist())


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool = False,
    distributed: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> DataLoader:
    """A DataLoader (``num_workers=0``) whose batches are a pure function of (seed, epoch).

    Args:
        dataset: A map-style dataset, e.g. ``load_data(...).train``.
        batch_size: Samples per batch (per process when distributed).
        shuffle: Reshuffle every epoch (after ``set_epoch``).
        seed: Seed of the shuffle.
        drop_last: Drop the last incomplete batch.
        distributed: Shard with ``DistributedSampler`` across the ranks of the process group.
        num_replicas: World size for the sampler (default: the process group's).
        rank: This process's rank for the sampler (default: the process group's).

    Returns:
        The loader; call ``set_epoch(loader, epoch)`` before iterating each epoch.

    Raises:
        ValueError: If ``batch_size`` is below 1.
        DataError: If ``distributed`` is set without a process group and without ``num_replicas``/``rank``.

    Example:
        >>> from bitplan.data import load_data
        >>> loader = make_loader(load_data("digits").train, batch_size=64, shuffle=True, seed=0)
        >>> set_epoch(loader, 0)
        >>> x, y = next(iter(loader))
        >>> tuple(x.shape), tuple(y.shape)
        ((64, 1, 8, 8), (64,))
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    sampler: Sampler[int]
    if distributed:
        if (num_replicas is None or rank is None) and not (dist.is_available() and dist.is_initialized()):
            raise DataError(
                "a distributed loader needs an initialised process group (torchrun and `bitplan train --nproc` "
                "create one) or explicit `num_replicas` and `rank`; call torch.distributed.init_process_group first."
            )
        sampler = DistributedSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    else:
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=0,
        # Iterating a DataLoader draws a worker base seed; an own generator keeps it off the global RNG.
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Select epoch ``epoch``'s shuffle and augmentation for ``loader``; call it before every epoch.

    Args:
        loader: A loader from ``make_loader``.
        epoch: The epoch about to start (0-based), also when resuming.
    """
    for part in (loader.sampler, loader.dataset):
        if isinstance(part, EpochAware):
            part.set_epoch(epoch)
