"""Checkpoints that make a resumed run replay the uninterrupted one: weights, optimizer, RNG streams.

A checkpoint is written (atomically) after every epoch and holds the model's plain state_dict, the
quantizers' state (running activation ranges, stochastic-rounding generators), optimizer and
scheduler state, every random generator of every rank (torch, CUDA, numpy, Python, the loader's),
the metrics so far and the configuration. Everything is tensors, numbers and strings, so it loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bitplan.qat import load_quant_state_dict, quant_runtime, quant_state_dict
from bitplan.atomic import atomic_torch_save
from bitplan.errors import TrainingError
from bitplan.torchfile import read_torch_file

CHECKPOINT_FORMAT = 1
"""What torch's ``weights_only`` unpickler says when it refuses to construct an object."""


def rng_state(loader: DataLoader | None = None) -> dict[str, Any]:
    """This process's random generators (the quantizers' are saved with the model's quant state)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _python_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader is not None and loader.generator is not None:
        state["loader"] = loader.generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], loader: DataLoader | None = None) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
         numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state and loader is not None and loader.generator is not None:
        loader.generator.set_state(state["loader"])


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def save_checkpoint(
    path: Path, *, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Write the end-of-epoch checkpoint atomically (a crash never leaves a torn file).

    ``state`` holds the rest: ``scheduler`` (its state_dict), ``rng`` and ``quant`` (one entry per
    rank), ``metrics``, ``seconds``, ``config``, ``model_spec`` and ``model_options``.
    """
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            **state,
        },
        path,
    )


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises:
        TrainingError: The file is not a bitplan checkpoint (or of another format version).
    """
    checkpoint = read_torch_file(path, "delete it to start the run afresh (or pass `--overwrite`)", map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(
            f"`{path}` is not a bitplan training checkpoint of format {CHECKPOINT_FORMAT}; "
            "choose another output folder (`-o`) or delete the file"
        )
    return checkpoint


def restore(
    checkpoint: dict[str, Any],
    *,
    rank: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
) -> None:
    """Load model, quantizer, optimizer, scheduler and this rank's RNG state from ``checkpoint``.

    With ``optimizer`` None the weights and optimizer state were loaded elsewhere (a sharded
    checkpoint, ``bitplan.train.sharded``) and only the rest is restored here.

    Raises:
        TrainingError: The checkpoint was written by a run with a different number of processes.
    """
    if rank >= len(checkpoint["rng"]):
        raise TrainingError(
            f"the checkpoint was written by a {len(checkpoint['rng'])}-process run; resume it with "
            f"the same number of processes (`--nproc {len(checkpoint['rng'])}`)"
        )
    if optimizer is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    if quant_runtime(model) is not None:
        load_quant_state_dict(model, checkpoint["quant"][rank])
    scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"][rank], loader)


def quant_state(model: nn.Module) -> dict[str, Any]:
    """The model's quantizer state (empty for a plain model)."""
    return quant_state_dict(model) if quant_runtime(model) is not None else {}
