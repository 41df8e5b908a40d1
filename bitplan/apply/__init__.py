"""Train a model at a plan's bits: ``apply`` swaps planned layers for quantized twins, ``strip`` undoes it.

``export_quantized`` turns a trained checkpoint into integer codes (``bitplan apply``).
"""

from bitplan.apply.core import (
    apply,
    is_quantized,
    load_quant_state_dict,
    quant_runtime,
    quant_state_dict,
    strip,
    verify_plan,
)
from bitplan.apply.runtime import ForwardQuant, LayerQuant, QuantRuntime

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
    # settings
    "ForwardQuant",
    "LayerQuant",
    "QuantRuntime",
]
