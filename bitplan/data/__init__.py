"""Datasets for training: ``load_data(spec)`` -> ``DataBundle``, ``make_loader`` -> deterministic DataLoader.

Specs: ``digits``, ``cifar10:PATH``, ``cifar100:PATH``, ``imagefolder:PATH``, ``text:PATH[?level=char]``,
``synthetic`` (docs/data.md). Nothing is ever downloaded.
"""

from __future__ import annotations

# Each source module registers its spec kind on import.
from bitplan.data import cifar, digits, imagefolder, synthetic, text  # noqa: F401
from bitplan.data.bundle import DataBundle, DataRequest, Task
from bitplan.data.loader import EpochSampler, make_loader, set_epoch
from bitplan.data.registry import SourceInfo, load_data, register_source, sources

__all__ = [
    # loading
    "load_data",
    "DataBundle",
    "Task",
    # batching
    "make_loader",
    "set_epoch",
    "EpochSampler",
    # extending
    "register_source",
    "sources",
    "SourceInfo",
    "DataRequest",
]
