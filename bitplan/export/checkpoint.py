"""Trained weights for an export: a run directory, a training checkpoint or a bare state_dict.

Kept apart from ``bitplan.train`` (which writes checkpoints) so that exporting never imports
training; the checkpoint's keys are those ``bitplan.train.state.save_checkpoint`` writes.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bitplan.errors import TrainingError
from bitplan.torchfile import read_torch_file

CHECKPOINT_NAME = "checkpoint.pt"
SHARDED_NAME = "checkpoint"
"""An FSDP2 run's sharded checkpoint: a directory (``bitplan.train.sharded`` writes it)."""
SHARDED_LATEST = "latest"
SHARDED_STATE = "state.pt"


def sharded_epoch_dir(root: Path) -> Path | None:
    """The newest complete epoch of a sharded checkpoint directory (``root/latest`` names it), or None."""
    latest = root / SHARDED_LATEST
    if not latest.is_file():
        return None
    epoch_dir = root / latest.read_text(encoding="utf-8").strip()
    return epoch_dir if (epoch_dir / SHARDED_STATE).is_file() and (epoch_dir / ".metadata").is_file() else None


def _sharded_root(path: Path) -> Path | None:
    """The sharded checkpoint ``path`` names: itself, a run folder's, or its only seed's."""
    for candidate in (path, path / SHARDED_NAME, path.parent if path.name.startswith("epoch-") else None):
        if candidate is not None and sharded_epoch_dir(candidate) is not None:
            return candidate
    found = [root.parent for root in path.glob(f"*/{SHARDED_NAME}/{SHARDED_LATEST}")]
    return found[0] if len(found) == 1 and sharded_epoch_dir(found[0]) else None


@dataclass(frozen=True)
class TrainedState:
    """What a checkpoint holds for export."""

    weights: dict[str, torch.Tensor]
    model_spec: str | None = None
    model_options: dict[str, str] = field(default_factory=dict)
    quant: dict = field(default_factory=dict)  # rank 0's quantizer state (activation ranges)
    plan: dict | None = None  # the plan the run trained with (its config's), None for a bare state_dict


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint file of ``path``: the file itself, a run's ``checkpoint.pt``, or its only seed's.

    Raises:
        TrainingError: Nothing, or several seeds' checkpoints, found there.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise TrainingError(f"checkpoint `{path}` does not exist; pass a run directory or its `{CHECKPOINT_NAME}`")
    if (path / CHECKPOINT_NAME).is_file():
        return path / CHECKPOINT_NAME
    found = sorted(path.glob(f"*/{CHECKPOINT_NAME}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise TrainingError(f"`{path}` holds no `{CHECKPOINT_NAME}`; pass the directory of a finished `bitplan train` run")
    raise TrainingError(
        f"`{path}` holds {len(found)} checkpoints ({', '.join(str(p.relative_to(path)) for p in found)}); "
        "pass the one to export, e.g. `--checkpoint " + str(found[0]) + "`"
    )


def load_trained_state(path: str | os.PathLike) -> TrainedState:
    """The weights (and, for a training checkpoint, model spec, options and activation ranges) at ``path``.

    Raises:
        TrainingError: The file cannot be read, or holds neither a training checkpoint nor a state_dict.
    """
    sharded = _sharded_root(Path(path)) if Path(path).is_dir() else None
    if sharded is not None:
        return _load_sharded(sharded)
    file = checkpoint_file(path)
    state = read_torch_file(file, f"pass a run's `{CHECKPOINT_NAME}` or a saved state_dict")
    if isinstance(state, dict) and "format" in state and "model" in state:
        quant = state.get("quant") or [{}]
        config = state.get("config") if isinstance(state.get("config"), dict) else {}
        plan = config.get("plan") if isinstance(config.get("plan"), dict) else None
        return TrainedState(state["model"], state.get("model_spec"), dict(state.get("model_options", {})), quant[0], plan)
    if isinstance(state, dict) and all(isinstance(value, torch.Tensor) for value in state.values()):
        return TrainedState(state)
    raise TrainingError(
        f"`{file}` holds neither a bitplan training checkpoint nor a state_dict; pass a run's `{CHECKPOINT_NAME}` "
        "or a file written by `torch.save(model.state_dict(), ...)`"
    )


def _load_sharded(root: Path) -> TrainedState:
    """Gather a sharded checkpoint's full weights in this one process (DCP without a process group).

    Raises:
        TrainingError: The directory's files are damaged or not a bitplan run's.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    epoch_dir = sharded_epoch_dir(root)
    state = read_torch_file(epoch_dir / SHARDED_STATE, "pass the run folder of a finished `bitplan train` run")
    try:
        metadata = dcp.FileSystemReader(str(epoch_dir)).read_metadata()
        prefix = "model."
        weights = {
            key[len(prefix):]: torch.empty(item.size, dtype=item.properties.dtype)
            for key, item in metadata.state_dict_metadata.items()
            if key.startswith(prefix) and isinstance(item, TensorStorageMetadata)
        }
        with warnings.catch_warnings():  # DCP warns that it loads in one process, which is the point here
            warnings.simplefilter("ignore", UserWarning)
            dcp.load({"model": weights}, checkpoint_id=str(epoch_dir), no_dist=True)
    except Exception as error:  # a torn or foreign directory: DCP's reader raises many kinds
        raise TrainingError(
            f"the sharded checkpoint `{epoch_dir}` cannot be read ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[-1][:200] if str(error).strip() else ''}); pass the folder of a "
            "finished `bitplan train --parallel fsdp` run"
        ) from None
    quant = state.get("quant") or [{}]
    return TrainedState(weights, state.get("model_spec"), dict(state.get("model_options", {})), quant[0])
