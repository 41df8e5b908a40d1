"""The packed format: a plan's weights as bit-packed integer codes in one safetensors file.

Each planned weight (bits < 32) becomes ``<fqn>.packed`` (its b-bit codes back to back, b = 1…16,
see ``packing``; wider codes as ``<fqn>.codes`` int32) and ``<fqn>.qparams``, float32 [2, C]: row 0
the scales, row 1 the zero points, one per output channel (C = 1 per tensor), the plan's grid. (One
tensor for both keeps the safetensors header of a 1B-parameter model under 64 KiB.) Every other
tensor of the state_dict is stored as is, a tied tensor once per arithmetic: a weight tied to an
embedding is stored as codes under the key its GEMM reads and in float32 under the lookup's key,
as training computes (docs/export.md, "Lookups and tied weights"). The safetensors metadata key ``bitplan``
holds a ``PackedHeader`` (JSON). Decoding gives bit for bit the fake-quantized weights
``bitplan.apply`` trains with.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn

from bitplan.atomic import atomic_write_bytes
from bitplan.choices import ZeroPoint
from bitplan.errors import ExportError
from bitplan.export.packing import MAX_PACKED_BITS, pack_codes, unpack_codes
from bitplan.export.weights import Codes, PlannedWeight, planned_weights, split_state, weight_codes
from bitplan.plan import BitPlan, as_plan
from bitplan.torchfile import state_dict_mismatch

FORMAT_NAME = "bitplan-packed"
FORMAT_VERSION = 1
METADATA_KEY = "bitplan"
MAX_HEADER_BYTES = 64 * 1024
"""Largest safetensors header (JSON, this format's metadata included) a packed file may have."""


class PackedLayer(BaseModel):
    """One weight stored as packed codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: str = Field(description="state_dict key a quantized GEMM reads; tensors `<weight>.packed` (or `.codes`) and `.qparams` [scale; zero point].")
    bits: int = Field(ge=1, le=31)
    channel_dim: int | None = Field(description="Dimension with one scale per index; null = per tensor.")
    shape: list[int]
    dtype: str = Field(description="The weight's torch dtype, restored on load (e.g. float32).")


class PackedHeader(BaseModel):
    """The JSON header of a packed file (safetensors metadata key `bitplan`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["bitplan-packed"] = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    model: str = Field(description="The plan's model spec.")
    plan_fingerprint: str
    zero_point: ZeroPoint = Field(description="Grid of the codes: float (zero_point = range minimum) or integer.")
    layers: list[PackedLayer]
    aliases: dict[str, str] = Field(description="state_dict key -> the key its tensor is stored under (tied weights).")


def save_packed(
    model: nn.Module, plan: BitPlan | str | os.PathLike, path: str | os.PathLike, *, allow_nonfinite: bool = False
) -> PackedHeader:
    """Write ``model``'s state_dict with the plan's weights as bit-packed codes (atomically).

    Args:
        model: The model (plain or with ``bitplan.apply``'s quantizers), its trained weights loaded.
        plan: The plan it was trained with (object or file).
        path: The ``.safetensors`` file to write.
        allow_nonfinite: Store a model holding NaN/Inf (its planned weights with them in float32).

    Returns:
        The header written.

    Raises:
        PlanError: The plan names weights the model lacks.
        NonFiniteWeightsError: A tensor holds NaN or Inf (without ``allow_nonfinite``).
        ExportError: The header would exceed 64 KiB.

    Example:
        >>> save_packed(model, plan, "/tmp/model.safetensors")  # doctest: +SKIP
    """
    from safetensors.torch import save as safetensors_bytes

    plan = as_plan(plan)
    weights = {weight.fqn: weight for weight in planned_weights(model, plan, allow_nonfinite=allow_nonfinite)}
    state, aliases, quantized = split_state(model, plan)
    tensors: dict[str, Tensor] = {}
    layers = []
    for key, tensor in state.items():
        if quantized.get(key) not in weights:
            tensors[key] = tensor.cpu().contiguous()
            continue
        weight = replace(weights[quantized[key]], fqn=key)
        tensors.update(_encode(weight, weight_codes(weight, plan.zero_point)))
        layers.append(
            PackedLayer(weight=key, bits=weight.bits, channel_dim=weight.channel_dim, shape=list(tensor.shape),
                        dtype=str(tensor.dtype).removeprefix("torch."))
        )
    header = PackedHeader(model=plan.model, plan_fingerprint=plan.fingerprint, zero_point=plan.zero_point,
                          layers=layers, aliases=aliases)
    payload = safetensors_bytes(tensors, metadata={METADATA_KEY: header.model_dump_json()})
    header_bytes = int.from_bytes(payload[:8], "little")
    if header_bytes > MAX_HEADER_BYTES:
        raise ExportError(
            f"the packed file's header would take {header_bytes:,} bytes, over the {MAX_HEADER_BYTES:,}-byte limit "
            f"({len(tensors)} tensors); export with --format compressed-tensors for models this large."
        )
    atomic_write_bytes(path, payload)
    return header


def load_packed(path: str | os.PathLike, model: nn.Module | None = None) -> dict[str, Tensor]:
    """Read a packed file back as a plain (dequantized) state_dict, the model's keys.

    Args:
        path: A file written by ``save_packed`` (or ``bitplan export --format packed``).
        model: Also load the state_dict into this model (strictly). Tensors the file stores apart
            that the model ties (an embedding and the head reading it quantized) are untied first,
            so that each use computes as in training.

    Returns:
        The state_dict: planned weights decoded bit for bit, every other tensor as saved.

    Raises:
        ExportError: The file is not a packed file, its header is damaged, or it does not fit ``model``.

    Example:
        >>> model.load_state_dict(load_packed("/tmp/model.safetensors"))  # doctest: +SKIP
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except SafetensorError as error:
        raise ExportError(f"`{path}` is not a safetensors file ({error}); pass a file `bitplan export --format packed` wrote.") from None
    if METADATA_KEY not in metadata:
        raise ExportError(f"`{path}` was not written by `bitplan export --format packed` (no `{METADATA_KEY}` metadata).")
    try:
        header = PackedHeader.model_validate_json(metadata[METADATA_KEY])
        stored = {layer.weight for layer in header.layers}
        state = {key: value for key, value in tensors.items() if key.rsplit(".", 1)[0] not in stored}
        for layer in header.layers:
            state[layer.weight] = _decode(layer, tensors, header.zero_point)
        for key, target in header.aliases.items():
            state[key] = state[target]
    except (ValidationError, ValueError, KeyError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if not isinstance(error, KeyError) else f"tensor {error} is missing"
        raise ExportError(
            f"`{path}` has a damaged `{METADATA_KEY}` header or tensors ({type(error).__name__}: {reason}); "
            "export the model again with `bitplan export --format packed`."
        ) from None
    if model is not None:
        untie(model, state)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ExportError(
                f"`{path}` does not fit the model ({state_dict_mismatch(error)}); load it into the model "
                f"`{header.model}` it was exported from."
            ) from None
    return state


def untie(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Give each tied key of ``model`` whose tensor in ``state`` differs from its partner's its own parameter."""
    first: dict[tuple[int, int], str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if identity not in first:
            first[identity] = key
            continue
        partner = first[identity]
        if key in state and partner in state and state[key] is not state[partner] and not torch.equal(state[key], state[partner]):
            path, _, name = key.rpartition(".")
            module = model.get_submodule(path)
            copy = nn.Parameter(tensor.detach().clone(), requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else tensor.detach().clone()
            setattr(module, name, copy)


def _encode(weight: PlannedWeight, codes: Codes) -> dict[str, Tensor]:
    if weight.bits <= MAX_PACKED_BITS:
        stored = {f"{weight.fqn}.packed": pack_codes(codes.codes, weight.bits)}
    else:
        stored = {f"{weight.fqn}.codes": codes.codes.to(torch.int32).reshape(-1).cpu()}
    stored[f"{weight.fqn}.qparams"] = torch.stack([codes.scale.float().reshape(-1), codes.zero_point.float().reshape(-1)]).cpu()
    return stored


def _decode(layer: PackedLayer, tensors: dict[str, Tensor], grid: ZeroPoint) -> Tensor:
    numel = int(torch.Size(layer.shape).numel())
    if layer.bits <= MAX_PACKED_BITS:
        flat = unpack_codes(tensors[f"{layer.weight}.packed"], layer.bits, numel)
    else:
        flat = tensors[f"{layer.weight}.codes"]
    weight = PlannedWeight(layer.weight, layer.bits, layer.channel_dim, torch.empty(layer.shape, dtype=getattr(torch, layer.dtype), device="meta"))
    qparams = tensors[f"{layer.weight}.qparams"]  # [2, C]
    scale, zero_point = (qparams[0], qparams[1]) if layer.channel_dim is not None else (qparams[0, 0], qparams[1, 0])
    codes = Codes(flat.view(layer.shape), scale, zero_point, grid)
    return codes.dequantize(weight)
