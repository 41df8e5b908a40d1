"""What every exporter shares: the planned weights of a model, their codes on a grid, and the rules for
widths and grids a format cannot hold.

A plan's weights are quantized exactly as ``bitplan.apply`` fake-quantizes them (same bits, same
channel dimension, same grid), so stored codes decode to the weights training computed with. A
format with the integer-zero-point grid gets a float-grid plan's weights on the integer grid at the
same bits, with a warning that states the largest change.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from types import ModuleType

from torch import Tensor, nn

from bitplan import quant
from bitplan.qat import weight_channel_dims
from bitplan.qat.finite import describe_nonfinite, nonfinite_weights, refuse_nonfinite
from bitplan.choices import FULL_PRECISION_BITS, ZeroPoint
from bitplan.errors import ExportError, PlanError
from bitplan.plan import BitPlan
from bitplan.plan.fused import fused_groups
from bitplan.profile.schema import GemmOp

EXTRAS = {"torchao": "torchao", "compressed_tensors": "compressed-tensors", "onnxruntime": "onnx"}
"""Importable module -> the bitplan extra that installs it."""


class ExportWarning(UserWarning):
    """Something an export changed to fit the target format (a width widened, a grid moved, a layer left out)."""


@dataclass(frozen=True)
class PlannedWeight:
    """One planned weight as stored: its name, bits, the dimension with one range per index, and the tensor."""

    fqn: str
    bits: int
    channel_dim: int | None
    tensor: Tensor


@dataclass(frozen=True)
class Codes:
    """Integer codes of one weight with the scale and zero point that decode them (``quant.uniform_codes``)."""

    codes: Tensor  # like the weight, integer dtype
    scale: Tensor  # [C] per channel, [] per tensor; float32
    zero_point: Tensor  # like scale: range minimum (float grid) or zero point code (integer grid)
    grid: ZeroPoint

    def dequantize(self, like: PlannedWeight) -> Tensor:
        """The weight these codes stand for, in the weight's dtype and shape."""
        shape = _broadcast(like)
        return quant.dequantize_codes(
            self.codes, self.scale.reshape(shape), self.zero_point.reshape(shape), grid=self.grid
        ).to(like.tensor.dtype)


def planned_weights(model: nn.Module, plan: BitPlan, *, allow_nonfinite: bool = False) -> list[PlannedWeight]:
    """The weights the plan quantizes (bits < 32), in state_dict order, a shared weight once.

    Every export starts here, so every export refuses non-finite weights here: a min/max grid over
    NaN or Inf has a NaN scale. With ``allow_nonfinite`` the model is exported as the format
    allows: planned weights holding NaN/Inf stay in float32 (named in a warning), every other
    tensor is stored as it is.

    Raises:
        PlanError: The plan names a weight the model lacks (a plan made for another model).
        NonFiniteWeightsError: Some tensor holds NaN or Inf and ``allow_nonfinite`` is False.
    """
    dims = weight_channel_dims(model, plan)
    bits = {fqn: b for fqn, b in plan.bits_by_weight().items() if b < FULL_PRECISION_BITS}
    parameters = dict(model.named_parameters())
    missing = sorted(set(bits) - set(parameters))
    if missing:
        raise PlanError(f"the plan quantizes {missing}, which the model lacks; use the plan made for this model")
    found = nonfinite_weights(model)
    if found and not allow_nonfinite:
        refuse_nonfinite(model, "the export refuses this model", "pass --allow-nonfinite (`allow_nonfinite=True`) to export them as the format allows")
    if found:
        warnings.warn(
            f"exported with non-finite values as --allow-nonfinite asks: {describe_nonfinite(found)}; planned weights "
            "among them stay in float32 (no grid holds NaN/Inf), the rest are stored as they are",
            ExportWarning,
            stacklevel=3,
        )
    unusable = {fqn for fqn in parameters if fqn in found}
    return [
        PlannedWeight(fqn, bits[fqn], dims.get(fqn), parameters[fqn].detach())
        for fqn in parameters
        if fqn in bits and fqn not in unusable
    ]


def gemm_keys(model: nn.Module, plan: BitPlan) -> dict[str, str]:
    """state_dict key -> planned weight FQN, for every key a quantized GEMM reads the weight under.

    Training quantizes a weight only where a planned GEMM or lookup reads it: the module that runs
    it (named by the plan entry) reads it as its own attribute, or a functional GEMM reads the
    parameter itself. Any other key of the same tensor (a tied table whose lookup the plan leaves
    out, as plans made before lookups were layers do) reads the float32 weight, so exports store it
    apart, in float32 (docs/export.md, "Lookups and tied weights").
    """
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    keys: dict[str, str] = {}
    for entry in plan.layers:
        if entry.weight is None or entry.bits >= FULL_PRECISION_BITS or entry.weight not in parameters:
            continue
        module = modules.get(entry.name.split("#", 1)[0])
        own = [name for name, value in module.named_parameters(recurse=False) if value is parameters[entry.weight]] if module is not None else []
        keys[f"{entry.name.split('#', 1)[0]}.{own[0]}" if own else entry.weight] = entry.weight
    return keys


def unique_state(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state_dict with each tied tensor once, and the aliases: state_dict key -> the key kept for it."""
    kept: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}  # (storage, offset, shape) -> first key
    for key, tensor in model.state_dict().items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if identity in seen:
            aliases[key] = seen[identity]
        else:
            seen[identity] = key
            kept[key] = tensor.detach()
    return kept, aliases


def split_state(model: nn.Module, plan: BitPlan) -> tuple[dict[str, Tensor], dict[str, str], dict[str, str]]:
    """The state_dict to store, a tied tensor once per arithmetic: (tensors, aliases, quantized keys).

    A planned weight is stored under the first key its GEMMs read (quantized keys: key -> FQN);
    keys that read it outside a planned GEMM (a tied embedding's lookup) get one float32 tensor
    of their own. Aliases map every other key to the key stored for it.
    """
    quantized_by = gemm_keys(model, plan)
    kept: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    quantized: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], bool], str] = {}  # (storage, offset, shape, quantized use) -> key
    for key, tensor in model.state_dict().items():
        use = key in quantized_by
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), use)
        if identity in seen:
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        kept[key] = tensor.detach()
        if use:
            quantized[key] = quantized_by[key]
    return kept, aliases, quantized


def weight_codes(weight: PlannedWeight, grid: ZeroPoint | str) -> Codes:
    """``weight``'s codes on ``grid`` at its planned bits (scale and zero point flattened to [C] or []).

    Eager kernels: each weight is quantized once, so compiling a kernel (seconds) never pays off here;
    both paths give the same codes bit for bit.
    """
    with quant.kernel_policy(compile=False):
        codes, scale, zero_point = quant.uniform_codes(
            weight.tensor.float(), weight.bits, channel_dim=weight.channel_dim, grid=grid
        )
    return Codes(codes, scale.reshape(-1) if weight.channel_dim is not None else scale, _flat(zero_point, weight), ZeroPoint(grid))


def target_codes(weights: list[PlannedWeight], plan: BitPlan, target: str) -> dict[str, Codes]:
    """Codes on the integer grid (what ``target`` stores); a float-grid plan moves there with a warning.

    The warning states the largest |integer-grid weight − float-grid weight| over all layers: the
    change from the weights the plan trained with.
    """
    codes = {weight.fqn: weight_codes(weight, ZeroPoint.integer) for weight in weights}
    if plan.zero_point is ZeroPoint.integer or not weights:
        return codes
    worst, where = 0.0, ""
    for weight in weights:
        trained = weight_codes(weight, ZeroPoint.float).dequantize(weight)
        error = float((codes[weight.fqn].dequantize(weight) - trained).abs().max()) if trained.numel() else 0.0
        if error >= worst:
            worst, where = error, weight.fqn
    warnings.warn(
        f"the plan quantizes on the float-zero-point grid, {target} on the integer grid: weights moved to the "
        f"nearest integer grid at the same bits, largest weight change {worst:.3g} (in `{where}`); make the plan "
        "with `--zero-point integer` and train it for an exact export",
        ExportWarning,
        stacklevel=3,
    )
    return codes


def widen(bits: int, supported: list[int], what: str, target: str, *, strict: bool) -> int | None:
    """The narrowest supported width ≥ ``bits`` (None: none, the layer stays in float), warning when it differs.

    Raises:
        ExportError: With ``strict``, when ``bits`` is not supported as is.
    """
    if bits in supported:
        return bits
    wider = next((width for width in sorted(supported) if width > bits), None)
    outcome = f"widened to {wider} bits (its values unchanged)" if wider is not None else "left in float32"
    refuse_or_warn(
        f"{target} has no {bits}-bit weights: `{what}` is {outcome}",
        f"--strict refuses to change it: plan {target}'s widths ({_ranges(supported)}).",
        strict=strict,
    )
    return wider


def leave_out(names: list[str], why: str, target: str, *, strict: bool) -> None:
    """Warn (or with ``strict`` refuse) that ``names`` stay in float in ``target``.

    Raises:
        ExportError: With ``strict`` and some names.
    """
    if names:
        refuse_or_warn(
            f"{target} cannot quantize {why}: {name_list(names)} left in float32",
            "--strict refuses to leave planned layers out: export another format.",
            strict=strict,
        )


def name_list(names: list[str], shown: int = 8) -> str:
    """```a`, `b` and 3 more``: the first ``shown`` names, quoted, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"`{name}`" for name in names[:shown]) + more


def refuse_or_warn(message: str, refusal: str, *, strict: bool, consequence: str = "") -> None:
    """With ``strict`` raise ``message; refusal``, else warn ``message`` (plus ``consequence``) as an ExportWarning.

    Raises:
        ExportError: With ``strict``.
    """
    if strict:
        raise ExportError(f"{message}; {refusal}")
    warnings.warn(message + consequence, ExportWarning, stacklevel=4)


def check_fused_widths(plan: BitPlan, model: nn.Module, target: str, *, strict: bool) -> None:
    """Warn (or with ``strict`` refuse) when a fused group (q/k/v, gate/up) has members of different widths.

    Serving stacks run such a group as one GEMM with its first member's scheme, unchecked, so the
    others would be served at the wrong width (``bitplan.plan.fused``).

    Raises:
        ExportError: With ``strict`` and a group whose widths differ.
    """
    bits = plan.bits_by_weight()
    linear = [
        (path, module.in_features) for path, module in model.named_modules()
        if isinstance(module, nn.Linear) and f"{path}.weight" in bits
    ]
    for names in fused_groups(linear):
        widths = {name: bits[f"{name}.weight"] for name in names}
        if len(set(widths.values())) == 1:
            continue
        shown = ", ".join(f"`{name}` {width if width < FULL_PRECISION_BITS else 'fp32'}" for name, width in widths.items())
        message = (
            f"{shown} differ in width, but vLLM serves them as one fused layer with the first one's scheme, so the "
            f"others would be served at the wrong width ({target} as written loads correctly in transformers)"
        )
        if strict:
            raise ExportError(f"{message}; --strict refuses: make the plan with `bitplan plan --tie fused`.")
        warnings.warn(message + "; make the plan with `--tie fused` to serve it with vLLM", ExportWarning, stacklevel=3)


def linear_layers(plan: BitPlan, model: nn.Module | None, *, tables: bool = False) -> tuple[dict[str, int], list[str]]:
    """Planned ``nn.Linear`` modules (path -> bits), with ``tables`` also ``nn.Embedding`` tables, and the
    other planned weights' names.

    The module is the one that runs the GEMM or lookup (the plan entry's name), so a head tied to an
    embedding counts as the head, its lookup as the embedding. With ``model``, an entry counts when that
    module is an ``nn.Linear`` (or ``nn.Embedding``) whose ``weight`` is the planned weight; without, when
    the entry is a ``linear`` (or ``embedding``) named after a module path (no ``#`` suffix) and its
    weight is a ``weight``.
    """
    modules = dict(model.named_modules()) if model is not None else {}
    parameters = dict(model.named_parameters()) if model is not None else {}
    kinds = (nn.Linear, nn.Embedding) if tables else (nn.Linear,)
    ops = (GemmOp.linear, GemmOp.embedding) if tables else (GemmOp.linear,)
    linear: dict[str, int] = {}
    others: list[str] = []
    for entry in plan.layers:
        if entry.weight is None or entry.bits >= FULL_PRECISION_BITS or entry.weight in others:
            continue
        path = entry.name
        if model is not None:
            module = modules.get(path)
            is_linear = isinstance(module, kinds) and module.weight is parameters.get(entry.weight)
        else:
            is_linear = entry.op in ops and "#" not in path and entry.weight.rpartition(".")[2] == "weight"
        if is_linear:
            linear[path] = entry.bits
        elif path not in linear:
            others.append(entry.weight)
    return linear, others


def refuse_lookups(plan: BitPlan, target: str, why: str, among: list[str] | None = None) -> None:
    """Refuse a plan that quantizes a table read by a lookup (of the weights ``among``, default all), for a
    format that cannot store it.

    Leaving the table in float32 would serve weights the plan says are narrower, so this never warns.

    Raises:
        ExportError: Naming the first such lookup, its width, and the fix.
    """
    lookups = [
        entry for entry in plan.layers
        if entry.op.lookup and entry.bits < FULL_PRECISION_BITS and (among is None or entry.weight in among)
    ]
    if not lookups:
        return
    first = lookups[0]
    more = f" (and {name_list([entry.name for entry in lookups[1:]])})" if len(lookups) > 1 else ""
    raise ExportError(
        f"{target} cannot store a quantized lookup table ({why}): the plan gives the table `{first.weight}` of "
        f"lookup `{first.name}`{more} {first.bits} bits, and writing it in float32 would serve weights the plan "
        f"does not have. Keep the table in float with `bitplan plan ... --keep {first.name}` (a table tied to "
        "the output head keeps the head in float too), or export `--format packed` or `--format onnx`, which "
        "store quantized tables."
    )


def require(module: str) -> ModuleType:
    """Import an optional dependency, or raise naming the pip command that installs it.

    Raises:
        ExportError: The module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module, module)
        raise ExportError(
            f"this export needs `{module}`, which is not installed; install it with `pip install 'bitplan[{extra}]'`."
        ) from None


def _ranges(widths: list[int]) -> str:
    """``1–8`` for a run of consecutive widths, ``4, 8, 16`` otherwise."""
    ordered = sorted(widths)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(str(width) for width in ordered)


def _broadcast(weight: PlannedWeight) -> tuple[int, ...]:
    if weight.channel_dim is None:
        return ()
    return tuple(size if axis == weight.channel_dim else 1 for axis, size in enumerate(weight.tensor.shape))


def _flat(value: Tensor, weight: PlannedWeight) -> Tensor:
    return value.reshape(-1) if weight.channel_dim is not None else value.reshape(())
