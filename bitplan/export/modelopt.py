"""A plan as an NVIDIA ModelOpt ``quant_cfg`` (for TensorRT / TensorRT-LLM), JSON without ModelOpt installed.

``quant_cfg`` is ModelOpt's ordered list of entries: first ``{"quantizer_name": "*", "enable":
false}`` turns every quantizer off, then each planned module (the one that runs the GEMM, so a
head tied to an embedding is the head) gets ``<module>.weight_quantizer`` with ``cfg``
``num_bits`` = the layer's bits, ``axis`` 0 per output channel or None per tensor, and, when the
plan has activation bits, ``<module>.input_quantizer`` (``axis`` None: one range per tensor). A
planned lookup table gets its ``nn.Embedding``'s ``weight_quantizer`` only (ModelOpt's
``QuantEmbedding``, from 0.47; its ids are no activation); a table read by any other lookup is refused.
The config goes to ``mtq.quantize(model, config, forward_loop)``.

ModelOpt's integer quantizers are symmetric (max calibration): scale = amax / (2^(b−1) − 1), codes
−2^(b−1)…2^(b−1) − 1. bitplan's grids are asymmetric (min/max, float or integer zero point), so the
widths carry over and the values move to ModelOpt's grid: the export warns with the largest weight
change (given the model), and ``--strict`` refuses it. Widths are 2–8 bits (at 1 bit the symmetric
scale amax / 0 collapses); other widths are widened or left in float as ``widen`` says.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from bitplan.choices import FULL_PRECISION_BITS, WeightGranularity
from bitplan.export.weights import (
    PlannedWeight,
    gemm_keys,
    planned_weights,
    refuse_lookups,
    refuse_or_warn,
    weight_codes,
    widen,
)
from bitplan.plan import BitPlan, as_plan

ALGORITHM = "max"
MODELOPT_BITS = list(range(2, 9))
"""Integer widths ModelOpt's symmetric quantizer represents (2^(b−1) − 1 ≥ 1)."""
TARGET = "ModelOpt"


def to_modelopt(
    plan: BitPlan | str | os.PathLike,
    model: nn.Module | None = None,
    *,
    strict: bool = False,
    allow_nonfinite: bool = False,
) -> dict:
    """The ModelOpt quantization config of ``plan``: ``{"quant_cfg": {...}, "algorithm": "max"}``.

    Args:
        plan: The plan (object or file).
        model: The model, to name the largest weight change of ModelOpt's symmetric grid and to
            refuse non-finite weights (optional: the config itself needs only the plan).
        strict: Refuse instead of converting to the symmetric grid or changing a width.
        allow_nonfinite: Accept a model holding NaN/Inf (its planned layers with them left out).

    Returns:
        A JSON-serialisable dict: ``quant_cfg`` (the ordered entries) and ``algorithm``.

    Raises:
        ExportError: ``strict`` (ModelOpt's grid is symmetric, bitplan's is not; or a width ModelOpt lacks).
        NonFiniteWeightsError: ``model`` holds NaN or Inf (without ``allow_nonfinite``).

    Example:
        >>> to_modelopt(plan)["quant_cfg"][1]  # doctest: +SKIP
        {'quantizer_name': 'fc.weight_quantizer', 'cfg': {'num_bits': 4, 'axis': 0}}
    """
    plan = as_plan(plan)
    planned = {w.fqn: w for w in planned_weights(model, plan, allow_nonfinite=allow_nonfinite)} if model is not None else None
    modules = {fqn_key.rpartition(".")[0]: fqn for fqn_key, fqn in gemm_keys(model, plan).items()} if model is not None else {}
    if model is not None:
        tables = {path for path, module in model.named_modules() if isinstance(module, nn.Embedding)}
        functional = [entry.weight for entry in plan.layers if entry.op.lookup and entry.name.split("#", 1)[0] not in tables]
        refuse_lookups(plan, TARGET, "its QuantEmbedding quantizes nn.Embedding tables only", among=functional)
    axis = 0 if plan.weight_granularity is WeightGranularity.channel else None
    quant_cfg: list[dict] = [{"quantizer_name": "*", "enable": False}]
    converted: list[tuple[str, PlannedWeight, int]] = []
    for entry in plan.layers:
        if entry.weight is None or entry.bits >= FULL_PRECISION_BITS:
            continue
        if planned is not None and entry.weight not in planned:
            continue  # non-finite, left in float (planned_weights warned)
        module, attribute = _quantizer_module(entry.name, entry.weight, modules)
        bits = widen(entry.bits, MODELOPT_BITS, module or entry.weight, TARGET, strict=strict)
        if bits is None:
            continue
        prefix = f"{module}." if module else ""
        quant_cfg.append({"quantizer_name": f"{prefix}{attribute}_quantizer", "cfg": {"num_bits": bits, "axis": axis}})
        if plan.activation_bits is not None and not entry.op.lookup:  # a lookup's ids are no activation
            quant_cfg.append({"quantizer_name": f"{prefix}input_quantizer", "cfg": {"num_bits": plan.activation_bits, "axis": None}})
        if planned is not None:
            converted.append((module, planned[entry.weight], bits))
    _symmetric_warning(plan, converted, strict=strict)
    return {"quant_cfg": quant_cfg, "algorithm": ALGORITHM}


def symmetric_dequantize(weight: Tensor, bits: int, channel_dim: int | None) -> Tensor:
    """ModelOpt's symmetric max quantization of ``weight`` at ``bits``: round(w / s)·s, s = amax / (2^(b−1) − 1)."""
    levels = 2 ** (bits - 1) - 1
    if channel_dim is None:
        amax = weight.abs().amax()
    else:
        dims = [axis for axis in range(weight.dim()) if axis != channel_dim]
        amax = weight.abs().amax(dim=dims, keepdim=True) if dims else weight.abs()
    scale = (amax / levels).clamp_min(torch.finfo(torch.float32).tiny)
    return (weight / scale).round().clamp(-levels - 1, levels) * scale


def _quantizer_module(name: str, weight: str, modules: dict[str, str]) -> tuple[str, str]:
    """(module, weight attribute) whose quantizer ModelOpt names: the GEMM's module when the model says so."""
    path = name.split("#", 1)[0]
    if path in modules:
        return path, "weight"
    module, _, attribute = weight.rpartition(".")
    return module, attribute


def _symmetric_warning(plan: BitPlan, converted: list[tuple[str, PlannedWeight, int]], *, strict: bool) -> None:
    reason = (
        f"{TARGET} quantizes symmetrically (scale = amax / (2^(b−1) − 1)), bitplan's plan on an asymmetric "
        f"{plan.zero_point.value}-zero-point grid"
    )
    worst, where = 0.0, ""
    for module, weight, bits in converted:
        trained = weight_codes(weight, plan.zero_point).dequantize(weight).float()
        change = float((symmetric_dequantize(weight.tensor.float(), bits, weight.channel_dim) - trained).abs().max()) if trained.numel() else 0.0
        if change >= worst:
            worst, where = change, module or weight.fqn
    change = f", largest weight change {worst:.3g} (in `{where}`)" if converted else ""
    refuse_or_warn(
        f"{reason}: widths carry over, values move to ModelOpt's grid{change}",
        "--strict refuses it: export packed, onnx or compressed-tensors for bitplan's exact grid.",
        strict=strict,
    )
