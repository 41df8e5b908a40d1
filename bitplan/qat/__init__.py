"""Train a model at a plan's bits: ``apply`` swaps planned layers for quantized twins, ``strip`` undoes it.

``bitplan.export`` turns a trained model into files other stacks load.
"""

from bitplan.qat.core import (
    apply,
    is_quantized,
    load_quant_state_dict,
    quant_runtime,
    quant_state_dict,
    strip,
    verify_plan,
    weight_channel_dims,
)
from bitplan.qat.memory import KeptBytes, kept_for_backward
from bitplan.qat.runtime import ForwardQuant, LayerQuant, QuantRuntime

__all__ = [
    # the two verbs
    "apply",
    "strip",
    # inspecting and checkpointing a quantized model
    "is_quantized",
    "quant_runtime",
    "quant_state_dict",
    "load_quant_state_dict",
    "verify_plan",
    "weight_channel_dims",
    # what a training forward keeps for backward
    "kept_for_backward",
    "KeptBytes",
    # settings
    "ForwardQuant",
    "LayerQuant",
    "QuantRuntime",
]
