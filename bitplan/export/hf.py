"""A planned transformers model as a Hugging Face checkpoint directory ``from_pretrained`` loads.

``--format hf`` writes the original architecture (``config.json``, ``model.safetensors`` via
``save_pretrained``) with every planned weight replaced by its fake-quantized value on the plan's
own grid, exactly what ``bitplan.apply`` computes with, plus ``bitplan_plan.json`` (the plan). Any
stack that loads the architecture runs the quantized weights in float: for fine-tuning further,
evaluation, or a later conversion. Activations are not quantized in this format.

``architecture_config`` also gives compressed-tensors' ``config.json`` the model's own fields, so
``AutoModelForCausalLM.from_pretrained`` builds the architecture from it.
"""

from __future__ import annotations

import os
from torch import nn

from bitplan.errors import ExportError
from bitplan.export.outputs import atomic_directory
from bitplan.export.weights import leave_out, planned_weights, weight_codes
from bitplan.plan import BitPlan, as_plan, save_plan

PLAN_FILE = "bitplan_plan.json"
TARGET = "hf"


def architecture_config(model: nn.Module) -> dict:
    """The transformers config of ``model`` as ``config.json`` holds it, ``{}`` for other models."""
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if not callable(to_dict) or not hasattr(model, "save_pretrained"):
        return {}
    return to_dict()


def to_hf(
    model: nn.Module,
    plan: BitPlan | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    strict: bool = False,
    allow_nonfinite: bool = False,
) -> int:
    """Write ``out_dir``: ``save_pretrained`` of ``model`` with its planned weights fake-quantized, and the plan.

    Args:
        model: A transformers ``PreTrainedModel`` with its trained weights (plain, or quantized by ``bitplan.apply``).
        plan: The plan it was trained with (or its file).
        out_dir: A directory to create (written to a temporary sibling, then renamed).
        strict: Refuse a plan that quantizes activations (this format keeps them in float).
        allow_nonfinite: Write a model holding NaN/Inf (its planned weights with them in float).

    Returns:
        How many weights were written quantized.

    Raises:
        ExportError: ``model`` is not a transformers model, ``out_dir`` is not empty, or ``strict``
            and the plan quantizes activations.
        NonFiniteWeightsError: A tensor holds NaN or Inf (without ``allow_nonfinite``).

    Example:
        >>> to_hf(load_model("./my-llama").model, plan, "/tmp/llama-planned")  # doctest: +SKIP
    """
    plan = as_plan(plan)
    if not architecture_config(model):
        raise ExportError(
            f"`--format hf` writes a Hugging Face checkpoint, but `{type(model).__name__}` is not a transformers "
            "model; export it with `--format packed` (or name the model as `hf:DIR`)"
        )
    if plan.activation_bits is not None:
        leave_out(["activations"], f"{plan.activation_bits}-bit activations here (weights only)", TARGET, strict=strict)
    quantized = {
        weight.fqn: weight_codes(weight, plan.zero_point).dequantize(weight)
        for weight in planned_weights(model, plan, allow_nonfinite=allow_nonfinite)
    }
    state = {key: quantized.get(key, tensor).detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    with atomic_directory(out_dir) as directory:
        model.save_pretrained(directory, state_dict=state)
        save_plan(plan, directory / PLAN_FILE)
    return len(quantized)
