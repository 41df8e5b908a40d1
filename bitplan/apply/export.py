"""``bitplan apply``: a trained model's planned weights as integer codes in a safetensors file.

Each planned weight (bits < 32) is stored as ``<fqn>.codes`` (uint8 up to 8 bits, int16 up to 15,
int32 above), ``<fqn>.scale`` and ``<fqn>.zero_point`` (per output channel or per tensor, the plan's
granularity); dequantizing them gives exactly the fake-quantized weight training computed with.
Every other tensor of the state_dict is stored as is. The file's metadata holds a JSON description
of the layers (bits, granularity, shape) and of tied tensors stored once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bitplan.apply.core import verify_plan
from bitplan.apply.layers import QuantizedConvTranspose, TWINS
from bitplan.apply.runtime import NOT_QUANTIZED
from bitplan.atomic import atomic_torch_save, atomic_write_bytes
from bitplan.errors import PlanError, TrainingError
from bitplan.plan import BitPlan, load_plan

FORMAT_NAME = "bitplan-quantized"
FORMAT_VERSION = 1
EVAL_BATCH = 128


class ExportedLayer(BaseModel):
    """One weight stored as integer codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: str = Field(description="Parameter FQN; tensors `<weight>.codes`, `.scale`, `.zero_point`.")
    bits: int
    channel_dim: int | None = Field(description="Dimension with one scale per index; null = per tensor.")
    shape: list[int]
    codes_dtype: str


class ApplyReport(BaseModel):
    """What ``bitplan apply`` wrote and measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="The model spec the checkpoint was loaded into.")
    plan_fingerprint: str
    out: str
    dequantized_out: str | None
    layers: list[ExportedLayer]
    params_quantized: int = Field(description="Elements of the weights stored as codes.")
    params_other: int = Field(description="Elements of every other tensor (fp32).")
    bytes_fp32: int = Field(description="Bytes of the state_dict's tensors as trained (each tied tensor once).")
    bytes_file: int = Field(description="Bytes of the safetensors file written.")
    mbit_fp32: float = Field(description="Σ elements × 32 / 10^6.")
    mbit_quantized: float = Field(description="Σ quantized elements × bits + other elements × 32, / 10^6.")
    metric_name: str | None = None
    metric_fp32: float | None = Field(default=None, description="Test metric of the checkpoint's weights.")
    metric_quantized: float | None = Field(default=None, description="Test metric with dequantized weights.")


def codes_dtype(bits: int) -> torch.dtype:
    """The narrowest integer dtype holding codes 0..2^bits − 1."""
    if bits <= 8:
        return torch.uint8
    if bits <= 15:
        return torch.int16
    return torch.int32


def load_trained_state(checkpoint: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str | None, dict[str, str]]:
    """The model state_dict in a training checkpoint (or a bare state_dict), its model spec and options.

    Raises:
        TrainingError: The file is neither.
    """
    from bitplan.train.state import read_torch_file

    path = Path(checkpoint)
    state = read_torch_file(path, "pass the `checkpoint.pt` of a `bitplan train` run directory")
    if isinstance(state, dict) and "format" in state and "model" in state:
        return state["model"], state.get("model_spec"), dict(state.get("model_options", {}))
    if isinstance(state, dict) and all(isinstance(value, torch.Tensor) for value in state.values()):
        return state, None, {}
    raise TrainingError(
        f"`{path}` holds neither a bitplan training checkpoint nor a state_dict; "
        "pass a run's `checkpoint.pt` or a file written by `torch.save(model.state_dict(), ...)`"
    )


def _channel_dim(model: nn.Module, plan: BitPlan, fqn: str) -> int | None:
    if plan.weight_granularity != "channel":
        return None
    owner = dict(model.named_modules()).get(fqn.rsplit(".", 1)[0] if "." in fqn else "")
    if owner is not None and any(isinstance(owner, base) and twin is QuantizedConvTranspose for base, twin in TWINS.items()):
        return 1
    return 0


def quantize_state(model: nn.Module, plan: BitPlan) -> tuple[dict[str, torch.Tensor], list[ExportedLayer], dict[str, str]]:
    """Codes for the planned weights and plain tensors for the rest, tied tensors stored once.

    Returns:
        (tensors for safetensors, the exported layers, aliases: state_dict key -> stored key).
    """
    from bitplan import quant

    state = model.state_dict()
    planned = {fqn: bits for fqn, bits in plan.bits_by_weight().items() if bits < NOT_QUANTIZED}
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}  # (storage, offset, shape) -> first key
    layers = []
    for key, tensor in state.items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if identity in seen:
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        if key not in planned:
            stored[key] = tensor.detach().contiguous().clone()
            continue
        bits = planned[key]
        channel_dim = _channel_dim(model, plan, key)
        codes, scale, zero_point = quant.uniform_codes(tensor.detach().float(), bits, channel_dim=channel_dim)
        dtype = codes_dtype(bits)
        stored[f"{key}.codes"] = codes.to(dtype).contiguous()
        stored[f"{key}.scale"] = scale.float().contiguous()
        stored[f"{key}.zero_point"] = zero_point.float().contiguous()
        layers.append(ExportedLayer(weight=key, bits=bits, channel_dim=channel_dim, shape=list(tensor.shape),
                                    codes_dtype=str(dtype).removeprefix("torch.")))
    missing = sorted(set(planned) - {layer.weight for layer in layers} - set(aliases))
    if missing:
        raise PlanError(f"the plan quantizes {missing}, which the model's state_dict lacks; use the plan made for this model")
    return stored, layers, aliases


def load_quantized(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a file written by ``export_quantized`` back into a plain (dequantized) state_dict.

    Example:
        >>> model.load_state_dict(load_quantized("quantized.safetensors"))  # doctest: +SKIP
    """
    from safetensors import safe_open

    from bitplan import quant

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    if metadata.get("format") != FORMAT_NAME:
        raise PlanError(f"`{path}` was not written by `bitplan apply` (no `{FORMAT_NAME}` metadata)")
    layers = json.loads(metadata["layers"])
    state = {key: value for key, value in tensors.items() if not key.rsplit(".", 1)[0] in layers}
    for fqn in layers:
        codes = tensors[f"{fqn}.codes"]
        state[fqn] = quant.dequantize_codes(codes, tensors[f"{fqn}.scale"], tensors[f"{fqn}.zero_point"])
    for key, target in json.loads(metadata.get("aliases", "{}")).items():
        state[key] = state[target]
    return state


def export_quantized(
    plan: BitPlan | str | os.PathLike,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    data: str | None = None,
    dequantized_out: str | os.PathLike | None = None,
    trust_model_spec: bool = False,
) -> ApplyReport:
    """Quantize a trained model's planned weights to integer codes and save them with safetensors.

    Args:
        plan: The plan the model was trained with (object or file).
        checkpoint: A run's ``checkpoint.pt`` or a bare state_dict file.
        out: The ``.safetensors`` file to write (atomically).
        model: Model spec; default the checkpoint's, else the plan's.
        data: Data spec to report the test metric before and after quantization.
        dequantized_out: Also write the dequantized state_dict here (a plain model loads it).
        trust_model_spec: Resolve the checkpoint's or plan's model spec even when it names code.

    Returns:
        The ``ApplyReport`` (sizes, per-layer bits, metrics when ``data`` is given).

    Raises:
        PlanError: The plan does not fit the model.
        TrainingError: The checkpoint cannot be read or does not fit the model.

    Example:
        >>> report = export_quantized("plan.json", "runs/x/seed-0/checkpoint.pt", "q.safetensors")  # doctest: +SKIP
    """
    from safetensors.torch import save as safetensors_bytes

    from bitplan.spec import load_model
    from bitplan.trust import spec_from_file

    if not isinstance(plan, BitPlan):
        plan = load_plan(plan)
    state, saved_spec, options = load_trained_state(checkpoint)
    spec = model or spec_from_file(
        saved_spec or plan.model, "the checkpoint" if saved_spec else "the plan", trusted=trust_model_spec
    )
    bundle = None
    if data is not None:
        from bitplan.data import load_data
        from bitplan.train.setup import model_options

        bundle = load_data(data, seed=0, example_inputs=load_model(spec, device="meta").example_inputs)
        options = {**model_options(spec, bundle), **options}
    loaded = load_model(spec, options=options)
    network = loaded.model
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise TrainingError(
            f"the checkpoint does not fit model `{spec}` ({str(error).splitlines()[0]}); pass the model spec "
            "it was trained with (`--model`)"
        ) from None
    verify_plan(network, plan, loaded.example_inputs)
    tensors, layers, aliases = quantize_state(network, plan)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "model": spec,
        "plan_fingerprint": plan.fingerprint,
        "layers": json.dumps({layer.weight: layer.model_dump(exclude={"weight"}) for layer in layers}),
        "aliases": json.dumps(aliases),
    }
    payload = safetensors_bytes(tensors, metadata=metadata)
    atomic_write_bytes(out, payload)

    metric_name = metric_fp32 = metric_quantized = None
    if bundle is not None:
        metric_name, metric_fp32 = _evaluate(network, bundle)
    dequantized = load_quantized(out)
    network.load_state_dict(dequantized)
    if bundle is not None:
        _, metric_quantized = _evaluate(network, bundle)
    if dequantized_out is not None:
        atomic_torch_save(network.state_dict(), dequantized_out)

    unique = [tensor for key, tensor in state.items() if key not in aliases]
    quantized_params = sum(int(torch.Size(layer.shape).numel()) for layer in layers)
    total = sum(tensor.numel() for tensor in unique)
    bits = sum(int(torch.Size(layer.shape).numel()) * layer.bits for layer in layers)
    return ApplyReport(
        model=spec,
        plan_fingerprint=plan.fingerprint,
        out=str(out),
        dequantized_out=str(dequantized_out) if dequantized_out is not None else None,
        layers=layers,
        params_quantized=quantized_params,
        params_other=total - quantized_params,
        bytes_fp32=sum(tensor.numel() * tensor.element_size() for tensor in unique),
        bytes_file=len(payload),
        mbit_fp32=total * 32 / 1e6,
        mbit_quantized=(bits + (total - quantized_params) * 32) / 1e6,
        metric_name=metric_name,
        metric_fp32=metric_fp32,
        metric_quantized=metric_quantized,
    )


def _evaluate(network: nn.Module, bundle) -> tuple[str, float]:
    from bitplan.data import Task, make_loader
    from bitplan.train.loop import evaluate
    from bitplan.train.records import MetricName

    name = MetricName.perplexity if bundle.task is Task.language_model else MetricName.accuracy
    loader = make_loader(bundle.test, batch_size=EVAL_BATCH, shuffle=False, seed=0)
    _, metric = evaluate(network, loader, bundle.task, name, torch.device("cpu"))
    return name.value, metric
