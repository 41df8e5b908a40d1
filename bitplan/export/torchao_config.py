"""A plan as a torchao config: per-layer QAT fake quantizers, or the matching integer weights after training.

``quantize_(model, to_torchao(plan))`` swaps every planned ``nn.Linear`` for torchao's
``FakeQuantizedLinear`` with ``IntxFakeQuantizeConfig(torch.intN)`` at the plan's bits. The grid is
bitplan's integer-zero-point grid (``--zero-point integer``): torchao's asymmetric ``per_token``
granularity takes one min/max per row of the [out, in] weight, which is one range per output
channel, computed as bitplan's integer grid is (range widened to 0, round(x·(1/scale)) + zero
point), so the fake-quantized weights agree bit for bit. (torchao's ``per_channel`` asymmetric
weights take another, float-zero-point grid, so it is not used.) Activations, when the plan has
activation bits, get torchao's dynamic per-token asymmetric fake quantizer at those bits.

``stage="convert"`` gives ``QATConfig(IntxWeightOnlyConfig(torch.intN, PerAxis(0), asymmetric),
step="convert")`` per layer: after training, ``quantize_`` turns the fake-quantized layers into
integer weights. torchao's QAT covers ``nn.Linear`` and ``nn.Embedding`` (its
``FakeQuantizedEmbedding``, weight only: a lookup's ids are no activation): other planned layers
(convolutions, RNNs, weights used by functional code) are named in a warning and left out, and a
planned table read by another lookup (``nn.EmbeddingBag``, ``F.embedding``) is refused.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Literal

from torch import nn

from bitplan.choices import WeightGranularity, ZeroPoint
from bitplan.export.weights import (
    ExportWarning,
    gemm_keys,
    leave_out,
    linear_layers,
    planned_weights,
    refuse_lookups,
    require,
    target_codes,
    widen,
)
from bitplan.plan import BitPlan, as_plan

TORCHAO_BITS = list(range(1, 9))
"""Widths torchao's IntxFakeQuantizeConfig takes (torch.int1 … torch.int8)."""

TARGET = "torchao"


def to_torchao(
    plan: BitPlan | str | os.PathLike,
    model: nn.Module | None = None,
    *,
    stage: Literal["prepare", "convert"] = "prepare",
    strict: bool = False,
    allow_nonfinite: bool = False,
):
    """The torchao config that quantizes a model as ``plan`` does, for ``torchao.quantization.quantize_``.

    Args:
        plan: The plan, object or file (the integer grid, ``zero_point="integer"``, makes it exact).
        model: The model, to check which planned layers are ``nn.Linear`` and that its weights are
            finite (without it, the plan's ``linear`` GEMMs are taken).
        stage: ``prepare`` (QAT fake quantizers, for training) or ``convert`` (integer weights).
        strict: Refuse instead of warning when a layer is left out or a width changes.
        allow_nonfinite: Accept a model holding NaN/Inf (its planned layers with them left out).

    Returns:
        A ``torchao.quantization.FqnToConfig`` (module FQN -> ``QATConfig``).

    Raises:
        ExportError: torchao is not installed, or ``strict`` and the plan does not fit.
        NonFiniteWeightsError: ``model`` holds NaN or Inf (without ``allow_nonfinite``).

    Example:
        >>> quantize_(model, to_torchao(plan), filter_fn=None)  # doctest: +SKIP
    """
    require("torchao")
    from torchao.quantization import FqnToConfig, IntxWeightOnlyConfig, MappingType, PerAxis
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    if stage not in ("prepare", "convert"):
        raise ValueError(f"`stage` must be `prepare` or `convert`, got {stage!r}.")
    plan = as_plan(plan)
    planned = {w.fqn: w for w in planned_weights(model, plan, allow_nonfinite=allow_nonfinite)} if model is not None else {}
    if plan.weight_granularity is WeightGranularity.tensor:
        leave_out(["every planned weight"], "per-tensor ranges (torchao's integer QAT has none)", TARGET, strict=strict)
        return FqnToConfig(fqn_to_config={})
    linear, others = linear_layers(plan, model, tables=True)
    refuse_lookups(plan, TARGET, "its QAT swaps nn.Linear and nn.Embedding only", among=others)
    leave_out(others, "these layers (torchao's QAT swaps nn.Linear and nn.Embedding only)", TARGET, strict=strict)
    tables = {entry.name for entry in plan.layers if entry.op.lookup}
    if model is not None:
        keys = {key.removesuffix(".weight"): fqn for key, fqn in gemm_keys(model, plan).items()}
        linear = {module: bits for module, bits in linear.items() if keys.get(module) in planned}
        if stage == "prepare":  # the float-grid warning, with the largest weight change, once
            target_codes([replace(planned[keys[module]], fqn=f"{module}.weight") for module in linear], plan, TARGET)
    elif plan.zero_point is not ZeroPoint.integer and stage == "prepare":
        warnings.warn(
            f"the plan quantizes on the float-zero-point grid, {TARGET} on the integer grid: the weights move to the "
            "nearest integer grid at the same bits; make the plan with `--zero-point integer` and train it for an "
            "exact export",
            ExportWarning,
            stacklevel=2,
        )
    configs = {}
    activation = None
    if plan.activation_bits is not None and stage == "prepare":
        activation_bits = widen(plan.activation_bits, TORCHAO_BITS, "activations", TARGET, strict=strict)
        if activation_bits is not None:
            activation = IntxFakeQuantizeConfig(_dtype(activation_bits), "per_token", is_symmetric=False)
    for module, bits in linear.items():
        bits = widen(bits, TORCHAO_BITS, module, TARGET, strict=strict)
        if bits is None:
            continue
        if stage == "prepare":
            weight = IntxFakeQuantizeConfig(_dtype(bits), "per_token", is_symmetric=False)  # per row of a table too
            inputs = None if module in tables else activation  # a lookup reads ids, no activation
            configs[module] = QATConfig(activation_config=inputs, weight_config=weight, step="prepare")
        else:
            base = IntxWeightOnlyConfig(weight_dtype=_dtype(bits), granularity=PerAxis(0), mapping_type=MappingType.ASYMMETRIC)
            configs[module] = QATConfig(base, step="convert")
    return FqnToConfig(fqn_to_config=configs)


def _dtype(bits: int):
    import torch

    return getattr(torch, f"int{bits}")
