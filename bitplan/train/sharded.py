"""Sharded checkpoints of FSDP2 runs (``torch.distributed.checkpoint``), resumed exactly and exported.

Layout in a run folder: ``checkpoint/epoch-<n>/`` holds DCP's files (every rank writes its shards of
the model and optimizer state, ``.metadata`` says where each piece is) plus ``state.pt`` (rank 0:
scheduler, every rank's random generators and quantizer state, metrics, configuration, model spec),
and ``checkpoint/latest`` names the newest complete epoch. ``latest`` is replaced atomically only
after every rank has finished writing, and older epochs are deleted after that, so a crash at any
moment leaves the previous complete checkpoint in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitplan.atomic import atomic_torch_save, atomic_write_text
from bitplan.errors import TrainingError
from bitplan.export.checkpoint import SHARDED_LATEST, SHARDED_NAME, SHARDED_STATE, sharded_epoch_dir
from bitplan.train import distributed
from bitplan.train.state import CHECKPOINT_FORMAT, load_checkpoint


def sharded_dir(out: Path) -> Path:
    """Where a run folder's sharded checkpoint lives."""
    return out / SHARDED_NAME


def has_sharded(out: Path) -> bool:
    """Whether ``out`` holds a complete sharded checkpoint."""
    return sharded_epoch_dir(sharded_dir(out)) is not None


def _dcp_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def save_sharded(out: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Every rank writes its shards of ``epoch``; rank 0 adds ``state`` and then points ``latest`` at it.

    Args:
        out: The run folder.
        epoch: Epochs finished.
        model: The FSDP2-sharded model.
        optimizer: Its optimizer (state sharded like the parameters).
        state: Rank 0's plain extras (``save_checkpoint``'s fields other than model and optimizer).
    """
    import torch.distributed.checkpoint as dcp

    root = sharded_dir(out)
    target = root / f"epoch-{epoch}"
    if distributed.is_main() and target.exists():  # left by a run that died before pointing `latest` at it
        shutil.rmtree(target)
    distributed.barrier()
    dcp.save(_dcp_state(model, optimizer), checkpoint_id=str(target))
    if distributed.is_main():
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "epoch": epoch, "sharded": True, **state}, target / SHARDED_STATE)
        atomic_write_text(root / SHARDED_LATEST, target.name + "\n")
        for old in root.glob("epoch-*"):
            if old != target and old.is_dir():
                shutil.rmtree(old)
    distributed.barrier()


def load_sharded_state(out: Path) -> dict[str, Any]:
    """Rank 0's ``state.pt`` of the newest complete epoch (configuration, generators, metrics).

    Raises:
        TrainingError: No complete sharded checkpoint, or its ``state.pt`` is not bitplan's.
    """
    epoch_dir = sharded_epoch_dir(sharded_dir(out))
    if epoch_dir is None:
        raise TrainingError(
            f"`{sharded_dir(out)}` holds no complete sharded checkpoint; pass `--overwrite` to train afresh"
        )
    return load_checkpoint(epoch_dir / SHARDED_STATE)


def load_sharded(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load this rank's shards of model and optimizer state from the newest complete epoch.

    Raises:
        TrainingError: The checkpoint holds other parameters or shapes (another model or plan).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    epoch_dir = sharded_epoch_dir(sharded_dir(out))
    state = _dcp_state(model, optimizer)
    try:
        dcp.load(state, checkpoint_id=str(epoch_dir))
    except Exception as error:  # DCP raises CheckpointException (wrapping each rank's error) for a mismatch
        reason = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
        raise TrainingError(
            f"the sharded checkpoint `{epoch_dir}` does not fit this model and plan ({reason}); it was written "
            "by another model or plan. Resume with the arguments it was trained with, pass `--overwrite`, or "
            "choose another output folder"
        ) from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
