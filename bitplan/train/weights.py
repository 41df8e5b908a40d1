"""Trained weights into a model: a ``bitplan train`` checkpoint (or a plain state_dict) loaded by name.

Used to fine-tune from a trained model (``TrainConfig.init``) and to evaluate one (``bitplan eval``).
A checkpoint of a planned run also carries its quantizers' running activation ranges; they are
restored when the model has a plan applied, so a quantization-aware-trained model evaluates as it
was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitplan.errors import SpecError

FIX = "pass the `checkpoint.pt` of a `bitplan train` run (or a file holding a plain state_dict)"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The file's contents as ``{"model": state_dict, "quant": [...]}`` (``quant`` empty for a plain state_dict).

    Raises:
        SpecError: The file is missing, unreadable, or holds no state_dict of tensors.
    """
    from bitplan.torchfile import read_torch_file

    if not Path(path).is_file():
        raise SpecError(f"checkpoint `{path}` does not exist; {FIX}")
    loaded = read_torch_file(Path(path), FIX)
    state = loaded["model"] if isinstance(loaded, dict) and "model" in loaded else loaded
    if not isinstance(state, dict) or not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SpecError(f"checkpoint `{path}` holds no model state_dict; {FIX}")
    quant = loaded.get("quant", []) if isinstance(loaded, dict) and "model" in loaded else []
    return {"model": state, "quant": quant if isinstance(quant, list) else []}


def load_weights(model: nn.Module, path: Path, spec: str) -> None:
    """Load the checkpoint's weights into ``model`` (every name must match), and its quantizer ranges if planned.

    Raises:
        SpecError: The checkpoint belongs to another model (names or shapes differ); the message
            names the first difference and the model spec.
    """
    from bitplan.qat import load_quant_state_dict, quant_runtime

    checkpoint = read_checkpoint(path)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise SpecError(
            f"checkpoint `{path}` does not fit model `{spec}` ({_first_difference(error)}); pass the model spec "
            "and data it was trained with, or a checkpoint of this model"
        ) from None
    if quant_runtime(model) is not None and checkpoint["quant"]:
        load_quant_state_dict(model, checkpoint["quant"][0])


def _first_difference(error: RuntimeError) -> str:
    """The first concrete line of torch's load_state_dict error (``size mismatch for fc.weight: …``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    concrete = [line for line in lines if not line.endswith(":")]
    return (concrete or lines or ["the parameter names or shapes differ"])[0].rstrip(".")
