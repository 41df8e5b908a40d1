"""A planned model as a compressed-tensors checkpoint (what vLLM and Hugging Face ``transformers`` load).

``out_dir`` gets ``model.safetensors`` and ``config.json`` whose ``quantization_config`` has one
config group per bit width: ``targets`` are the layer names, weights ``int``, asymmetric
(``symmetric: false``), ``strategy`` ``channel`` (or ``tensor``), format ``pack-quantized``.
Each planned ``nn.Linear`` of 1–8 bits stores ``weight_packed`` (the codes as signed intB,
code − 2^(B−1), densely packed into int32: ⌈in·B/32⌉ words per row, the layout of compressed-tensors
≥ 0.18's ``pack_to_int32`` and of vLLM, written by ``packing.pack_rows``),
``weight_scale`` [out, 1], ``weight_zero_point`` (zero point − 2^(B−1), packed along the output
dimension) and ``weight_shape``. Dequantizing, (q − zp)·scale, gives bitplan's integer-grid
weights exactly. Other layers (convolutions, widths above 8 bits) stay in float with a warning;
activations are not quantized in this format. A plan that quantizes a lookup table is refused:
compressed-tensors ≥ 0.20 compresses ``nn.Embedding`` weights, but transformers cannot load them
(``from_pretrained`` initialises the compressed table's missing ``weight``) and vLLM reads none.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from bitplan.choices import WeightGranularity
from bitplan.export.hf import architecture_config
from bitplan.export.outputs import atomic_directory
from bitplan.export.packing import pack_rows
from bitplan.export.weights import (
    check_fused_widths,
    leave_out,
    linear_layers,
    planned_weights,
    refuse_lookups,
    require,
    split_state,
    target_codes,
)
from bitplan.plan import BitPlan, as_plan

PACKED_BITS = list(range(1, 9))
"""Widths compressed-tensors' pack-quantized format holds."""
FORMAT = "pack-quantized"
TARGET = "compressed-tensors"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def to_compressed_tensors(
    model: nn.Module,
    plan: BitPlan | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    strict: bool = False,
    allow_nonfinite: bool = False,
) -> Path:
    """Write ``out_dir`` (safetensors + ``config.json``) in compressed-tensors' pack-quantized format.

    Args:
        model: The model with its trained weights (plain or quantized by ``bitplan.apply``).
        plan: The plan, object or file (``zero_point="integer"`` makes it exact).
        out_dir: A directory to create (written to a temporary sibling, then renamed).
        strict: Refuse instead of warning when a planned layer cannot be stored.
        allow_nonfinite: Write a model holding NaN/Inf (its planned weights with them in float).

    Returns:
        ``out_dir``.

    Raises:
        ExportError: compressed-tensors is missing, ``out_dir`` is not empty, or ``strict`` and
            the plan does not fit.
        NonFiniteWeightsError: A tensor holds NaN or Inf (without ``allow_nonfinite``).

    Example:
        >>> to_compressed_tensors(model, plan, "/tmp/model-ct")  # doctest: +SKIP
    """
    require("compressed_tensors")
    from safetensors.torch import save_file

    plan = as_plan(plan)
    refuse_lookups(plan, TARGET, "transformers' from_pretrained fails on a compressed nn.Embedding, and vLLM reads none")
    linear, others = linear_layers(plan, model)
    check_fused_widths(plan, model, TARGET, strict=strict)
    wide = sorted(module for module, bits in linear.items() if bits not in PACKED_BITS)
    leave_out(others, "these layers (its pack-quantized format stores nn.Linear weights)", TARGET, strict=strict)
    leave_out(wide, "widths above 8 bits", TARGET, strict=strict)
    if plan.activation_bits is not None:
        leave_out(["activations"], f"{plan.activation_bits}-bit activations here (weights only)", TARGET, strict=strict)
    planned = {weight.fqn: weight for weight in planned_weights(model, plan, allow_nonfinite=allow_nonfinite)}
    unique, _, quantized = split_state(model, plan)  # a tied tensor once per arithmetic
    stored = {
        key: replace(planned[quantized[key]], fqn=key)
        for key in quantized
        if quantized[key] in planned and key.removesuffix(".weight") in linear and key.removesuffix(".weight") not in wide
    }
    weights = list(stored.values())
    codes = target_codes(weights, plan, TARGET)
    channel = plan.weight_granularity is WeightGranularity.channel
    state = {key: tensor.cpu().contiguous() for key, tensor in unique.items() if key not in stored}
    groups: dict[int, list[str]] = {}
    for weight in weights:
        module, offset = weight.fqn.removesuffix(".weight"), 2 ** (weight.bits - 1)
        code = codes[weight.fqn]
        # unsigned codes packed are the signed intB codes (code − 2^(B−1)) that pack_to_int32 offsets back
        state[f"{module}.weight_packed"] = pack_rows(code.codes, weight.bits).view(torch.int32)  # [out, ⌈in·B/32⌉]
        state[f"{module}.weight_shape"] = torch.tensor(list(weight.tensor.shape))
        if channel:
            state[f"{module}.weight_scale"] = code.scale.float().reshape(-1, 1).contiguous()
            packed_zero_point = pack_rows(code.zero_point.reshape(1, -1).to(torch.int32), weight.bits)  # along dim 0
            state[f"{module}.weight_zero_point"] = packed_zero_point.view(torch.int32).reshape(-1, 1)
        else:
            state[f"{module}.weight_scale"] = code.scale.float().reshape(1)
            state[f"{module}.weight_zero_point"] = (code.zero_point.to(torch.int16) - offset).to(torch.int8).reshape(1)
        groups.setdefault(weight.bits, []).append(module)
    config = {
        **architecture_config(model),  # a transformers model's own fields: from_pretrained builds it from them
        "quantization_config": quantization_config(groups, channel),
        "bitplan": {"model": plan.model, "plan_fingerprint": plan.fingerprint},
    }
    with atomic_directory(out_dir) as directory:
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return Path(out_dir)


def quantization_config(groups: dict[int, list[str]], channel: bool) -> dict:
    """The ``quantization_config`` dict: one config group per width, targets = module names."""
    config_groups = {
        f"group_{index}": {
            "targets": modules,
            "weights": {"num_bits": bits, "type": "int", "symmetric": False, "strategy": "channel" if channel else "tensor",
                        "dynamic": False},
            "input_activations": None,
            "output_activations": None,
            "format": FORMAT,
        }
        for index, (bits, modules) in enumerate(sorted(groups.items()))
    }
    return {
        "quant_method": "compressed-tensors",
        "format": FORMAT,
        "quantization_status": "compressed",
        "config_groups": config_groups,
        "ignore": [],
    }
