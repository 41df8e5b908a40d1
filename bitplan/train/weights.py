"""Trained weights into a model: a run folder, a seed folder, a ``checkpoint.pt`` or a plain state_dict.

Used to fine-tune from a trained model (``TrainConfig.init``) and to evaluate one (``bitplan eval``).
Which file a folder means and how it is read is ``bitplan.export.checkpoint``'s one rule; a planned
run's checkpoint also carries its quantizers' running activation ranges (``TrainedState.quant``),
which ``Evaluator`` restores once a plan is applied.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from bitplan.errors import SpecError
from bitplan.export.checkpoint import TrainedState, load_trained_state
from bitplan.torchfile import state_dict_mismatch


def load_weights(model: nn.Module, path: str | Path, spec: str) -> TrainedState:
    """Load the weights at ``path`` into ``model`` (every name and shape must match) and return what was read.

    Raises:
        TrainingError: Nothing to load at ``path`` (the message says what to pass).
        SpecError: The weights belong to another model; the message names the keys and shapes that differ.
    """
    state = load_trained_state(path)
    try:
        model.load_state_dict(state.weights)
    except RuntimeError as error:
        trained = f", trained as `{state.model_spec}`" if state.model_spec else ""
        raise SpecError(
            f"checkpoint `{path}`{trained} does not fit model `{spec}` ({state_dict_mismatch(error)}); pass the model "
            "spec and data it was trained with, or a checkpoint of this model"
        ) from None
    return state

