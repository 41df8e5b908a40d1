"""Trained weights for an export: a run directory, a training checkpoint or a bare state_dict.

Kept apart from ``bitplan.train`` (which writes checkpoints) so that exporting never imports
training; the checkpoint's keys are those ``bitplan.train.state.save_checkpoint`` writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bitplan.errors import TrainingError
from bitplan.torchfile import read_torch_file

CHECKPOINT_NAME = "checkpoint.pt"


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
