"""``apply``: make a model compute every planned GEMM at the plan's bits; ``strip``: undo it.

Both work in place by swapping module classes (see ``layers`` and ``scoped``), so parameter names,
state_dict keys and the optimizer's parameter objects are untouched.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from bitplan.qat.finite import refuse_nonfinite
from bitplan.qat.layers import channel_dim_of, twin_base, twin_class
from bitplan.qat.runtime import NOT_QUANTIZED, OBSERVER, ForwardQuant, LayerQuant, QuantRuntime
from bitplan.qat.scoped import OBSERVERS, ScopeQuant, Slot, scoped_class, track_children
from bitplan.errors import PlanError
from bitplan.frontends.torch import trace
from bitplan.plan import BitPlan, LayerPlan, as_plan, verify_fingerprint
from bitplan.profile.schema import ModelProfile, split_virtual_weight
from bitplan.quant import ActivationObserver, GradQuant


@dataclass
class _ModuleTarget:
    """Everything the plan asks of one module."""

    path: str
    module: nn.Module
    twin_weights: dict[str, tuple[str, int]] = field(default_factory=dict)  # attribute -> (FQN, bits)
    scoped_weights: list[tuple[str, int]] = field(default_factory=list)  # (FQN, bits) per GEMM entry
    activation_entries: dict[str, int] = field(default_factory=dict)  # suffix -> bits


def apply(
    model: nn.Module,
    plan: BitPlan | str | os.PathLike,
    example_inputs: tuple | None = None,
    *,
    seed: int = 0,
    forward_quant: ForwardQuant | str = ForwardQuant.uniform,
    gradient_samples: int = 1,
    verify: bool = True,
    strict: bool = False,
) -> nn.Module:
    """Quantize ``model``'s planned GEMMs in place: weights, inputs and output gradients.

    Every planned GEMM with fewer than 32 bits computes with its weight fake-quantized to the plan's
    bits (per output channel or per tensor, round to nearest, straight-through gradient), its input
    quantized to ``plan.activation_bits`` and, in backward, the gradient at its output quantized to
    ``plan.gradient_bits`` (``plan.gradient_quant``). Other layers stay in full precision.

    Args:
        model: The plain model (any device). Parameter names must match the plan's.
        plan: A ``BitPlan`` or the path of a plan file.
        example_inputs: Inputs of one forward call, used to fingerprint the model; None builds the
            plan's model spec to get its default inputs.
        seed: Seed of the stochastic-rounding generators (give each rank its own in DDP).
        forward_quant: ``uniform`` (min/max, the default) or ``sawb`` (LUQ's 4-bit forward).
        gradient_samples: LUQ's SMP: average this many gradient quantizations.
        verify: Check the fingerprint (skip only when the caller has just checked it).
        strict: Refuse a model whose weights hold NaN or Inf (no grid represents them).

    Returns:
        ``model`` itself, quantized.

    Raises:
        PlanError: The plan was made for another architecture, names a weight or module the model
            lacks, or the model is already quantized.
        NonFiniteWeightsError: ``strict`` and some weight holds NaN or Inf (named, with counts).

    Example:
        >>> model = apply(load_model("zoo:resnet20").model, "plans/resnet20_A_Cminus_4-8.json")  # doctest: +SKIP
    """
    plan = as_plan(plan)
    if is_quantized(model):
        raise PlanError("this model already has a plan applied; call `bitplan.strip(model)` before applying another")
    if strict:
        refuse_nonfinite(model, "bitplan.apply(strict=True)", "call `apply` without `strict=True` to quantize them as they are")
    if verify:
        verify_plan(model, plan, example_inputs)
    targets = _resolve(model, plan)
    runtime = QuantRuntime(seed, gradient_samples=gradient_samples)
    kind = ForwardQuant(forward_quant)
    parameters = dict(model.named_parameters())
    for target in targets:
        _attach(target, plan, runtime, kind, parameters, model)
    return model


def strip(model: nn.Module) -> nn.Module:
    """Undo ``apply`` in place: original classes back, quantizer state removed.

    Returns:
        ``model`` itself, computing in full precision again; its state_dict is unchanged.
    """
    for module in model.modules():
        layer = module.__dict__.pop("bitplan_quant", None)
        scope = module.__dict__.pop("bitplan_scope", None)
        if scope is not None:
            for handle in scope.hooks:
                handle.remove()
            layer = scope.layer
        if layer is None:
            continue
        module.__class__ = layer.original_class
        module.__dict__.pop("bitplan_substituting", None)
        for name in (OBSERVER, OBSERVERS):
            if hasattr(module, name):
                delattr(module, name)
    return model


def is_quantized(model: nn.Module) -> bool:
    """Whether ``apply`` has been called on ``model`` (and not undone)."""
    return any(_layer_of(module) is not None for module in model.modules())


def quant_runtime(model: nn.Module) -> QuantRuntime | None:
    """The runtime (RNG, bit cap) shared by a quantized model's layers, None for a plain model."""
    for module in model.modules():
        layer = _layer_of(module)
        if layer is not None:
            return layer.runtime
    return None


def quant_state_dict(model: nn.Module) -> dict:
    """Quantizer state outside the model's state_dict: generators and running activation ranges."""
    runtime = quant_runtime(model)
    ranges = {name: buffer.detach().clone() for name, buffer in model.named_buffers() if _is_observer_buffer(name)}
    return {"generators": runtime.state_dict() if runtime else {}, "ranges": ranges}


def _is_observer_buffer(name: str) -> bool:
    return f".{OBSERVER}." in f".{name}" or f".{OBSERVERS}." in f".{name}"


def load_quant_state_dict(model: nn.Module, state: dict) -> None:
    """Restore what ``quant_state_dict`` saved (for resuming a run exactly)."""
    runtime = quant_runtime(model)
    if runtime is not None:
        runtime.load_state_dict(state.get("generators", {}))
    buffers = dict(model.named_buffers())
    for name, value in state.get("ranges", {}).items():
        if name in buffers:
            buffers[name].copy_(value)


def weight_channel_dims(model: nn.Module, plan: BitPlan) -> dict[str, int | None]:
    """The dimension ``apply`` gives each planned weight one range per index of (None: one per tensor).

    Export reads it so that stored codes decode to exactly the weights training computed with.

    Raises:
        PlanError: As ``apply`` (a plan entry the model lacks).
    """
    if is_quantized(model):
        return _applied_channel_dims(model)
    channel = plan.weight_granularity == "channel"
    parameters = dict(model.named_parameters())
    dims: dict[str, int | None] = {}
    for target in _resolve(model, plan):
        if target.twin_weights:
            dim = channel_dim_of(twin_base(target.module))
            dims.update({fqn: dim if channel else None for fqn, _ in target.twin_weights.values()})
        dims.update({fqn: 0 if channel and parameters[fqn].dim() >= 2 else None for fqn, _ in target.scoped_weights})
    return dims


def _applied_channel_dims(model: nn.Module) -> dict[str, int | None]:
    """``weight_channel_dims`` read off the layers of a model ``apply`` has quantized."""
    dims: dict[str, int | None] = {}
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        if "bitplan_quant" in module.__dict__:
            layer = module.__dict__["bitplan_quant"]
            dims.update({prefix + name: layer.channel_dim for name in layer.weight_bits})
        elif "bitplan_scope" in module.__dict__:
            scope = module.__dict__["bitplan_scope"]
            channel = scope.layer.channel_dim is not None
            dims.update({fqn: 0 if channel and weight.dim() >= 2 else None for fqn, weight, _ in scope.weights.values()})
    return dims


def verify_plan(model: nn.Module, plan: BitPlan, example_inputs: tuple | None) -> ModelProfile:
    """Refuse a plan made for another architecture (fingerprint of GEMM names and weight shapes).

    Returns:
        The model's profile (callers check which of its GEMMs the plan covers).

    Raises:
        PlanError: Fingerprints differ, or no example inputs can be found to fingerprint the model.
    """
    if example_inputs is None:
        example_inputs = _default_inputs(plan)
    profile = trace(model, tuple(example_inputs), name=type(model).__name__)
    verify_fingerprint(plan, profile)
    return profile


def _default_inputs(plan: BitPlan) -> tuple:
    from bitplan.errors import SpecError
    from bitplan.spec import load_model
    from bitplan.trust import spec_from_file

    spec = spec_from_file(plan.model, "the plan", remedy="Pass `example_inputs` to `bitplan.apply` instead.")
    try:
        return load_model(spec, device="meta").example_inputs
    except SpecError as error:
        raise PlanError(
            f"cannot build the plan's model `{plan.model}` to find example inputs ({error}); "
            "pass `example_inputs` to `bitplan.apply` to fingerprint the model"
        ) from None


def _layer_of(module: nn.Module) -> LayerQuant | None:
    if "bitplan_quant" in module.__dict__:
        return module.__dict__["bitplan_quant"]
    scope = module.__dict__.get("bitplan_scope")
    return scope.layer if scope is not None else None


def _resolve(model: nn.Module, plan: BitPlan) -> list[_ModuleTarget]:
    """Match each quantized plan entry (bits < 32) to the module that runs its GEMM."""
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    targets: dict[str, _ModuleTarget] = {}

    def target(path: str) -> _ModuleTarget:
        if path not in targets:
            targets[path] = _ModuleTarget(path, modules[path])
        return targets[path]

    for entry in plan.layers:
        if entry.bits >= NOT_QUANTIZED:
            continue
        path = _running_module(entry, modules)
        if entry.weight is None:
            target(path).activation_entries[entry.name[len(path) + 1 if path else 0 :]] = entry.bits
            continue
        stacked, index = split_virtual_weight(entry.weight)
        if stacked not in parameters or index is not None and index >= parameters[stacked].shape[0]:
            raise PlanError(
                f"the plan names weight `{entry.weight}` (layer `{entry.name}`) but the model has no such "
                f"parameter; make the plan for this model with `bitplan plan`"
            )
        parameter = parameters[stacked]
        module = modules[path]
        attribute = _own_attribute(module, parameter) if index is None else None
        if attribute is not None and twin_base(module) is not None:
            target(path).twin_weights[attribute] = (entry.weight, entry.bits)
        else:
            target(path).scoped_weights.append((entry.weight, entry.bits))
    for found in targets.values():
        if found.twin_weights and (found.scoped_weights or found.activation_entries):
            # a layer's own weights and other GEMMs in one module: the scope handles all of them
            found.scoped_weights += list(found.twin_weights.values())
            found.twin_weights = {}
        if not found.twin_weights and isinstance(found.module, nn.MultiheadAttention):
            raise PlanError(
                f"module `{found.path}` is an nn.MultiheadAttention, whose fused functional hides its GEMMs "
                "from bitplan; build attention from nn.Linear projections and F.scaled_dot_product_attention "
                "(as zoo:transformer_lm does), or set its plan entries to 32 bits"
            )
    return list(targets.values())


def _running_module(entry: LayerPlan, modules: dict[str, nn.Module]) -> str:
    """The module whose forward runs ``entry``'s GEMM: the entry name itself, or its parent path."""
    name = entry.name.split("#", 1)[0]
    if entry.weight is not None and name in modules:
        return name
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    if parent in modules:
        return parent
    raise PlanError(
        f"the plan's layer `{entry.name}` names no module of this model; "
        f"make the plan for this model with `bitplan plan`"
    )


def _own_attribute(module: nn.Module, parameter: nn.Parameter) -> str | None:
    """The weight attribute of ``module`` that is ``parameter``, or that a parametrization computes from it
    (weight_norm, spectral_norm: the twin then quantizes the computed weight it reads)."""
    for name, candidate in module.named_parameters(recurse=False):
        if candidate is parameter and (name == "weight" or name.startswith("weight_")):
            return name
    if parametrize.is_parametrized(module):
        for name, parametrizations in module.parametrizations.items():
            owns = any(candidate is parameter for candidate in parametrizations.parameters(recurse=False))
            if owns and (name == "weight" or name.startswith("weight_")):
                return name
    return None


def _settings(plan: BitPlan, runtime: QuantRuntime, kind: ForwardQuant, cls: type, channel_dim: int | None) -> LayerQuant:
    method = GradQuant(plan.gradient_quant)
    if plan.gradient_bits is None and method is GradQuant.sr:
        method = GradQuant.none
    return LayerQuant(
        original_class=cls,
        weight_bits={},
        activation_bits=plan.activation_bits,
        gradient_bits=plan.gradient_bits,
        gradient_quant=method,
        channel_dim=channel_dim if plan.weight_granularity == "channel" else None,
        forward_quant=kind,
        runtime=runtime,
        grid=plan.zero_point,
    )


def _owner(root: nn.Module, fqn: str) -> tuple[nn.Module, str]:
    """The module that registers parameter ``fqn`` and its attribute name there."""
    prefix, _, name = fqn.rpartition(".")
    return (root.get_submodule(prefix) if prefix else root), name


def _device_of(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _attach(
    target: _ModuleTarget,
    plan: BitPlan,
    runtime: QuantRuntime,
    kind: ForwardQuant,
    parameters: dict[str, nn.Parameter],
    root: nn.Module,
) -> None:
    module = target.module
    cls = type(module)
    device = _device_of(module)
    if target.twin_weights:
        base = twin_base(module)
        layer = _settings(plan, runtime, kind, cls, channel_dim_of(base))
        layer.weight_bits = {attribute: bits for attribute, (_, bits) in target.twin_weights.items()}
        setattr(module, OBSERVER, ActivationObserver(persistent=False).to(device))
        module.__dict__["bitplan_quant"] = layer
        module.__class__ = twin_class(cls, base)
        return
    layer = _settings(plan, runtime, kind, cls, 0)
    slots = 0
    weight_slots: dict[str, list[Slot]] = defaultdict(list)
    weights: dict[int, tuple[str, nn.Parameter, int | dict[int, int]]] = {}
    for fqn, bits in target.scoped_weights:
        stacked, index = split_virtual_weight(fqn)  # an expert of a fused [E, out, in] parameter: its own bits
        weight_slots[stacked].append(Slot(slots, bits))
        slots += 1
        if index is None:
            weights[id(parameters[stacked])] = (stacked, parameters[stacked], bits)
        else:
            per_matrix = weights.get(id(parameters[stacked]), (stacked, parameters[stacked], {}))[2]
            weights[id(parameters[stacked])] = (stacked, parameters[stacked], {**per_matrix, index: bits})
    activation_slots = {}
    for suffix, bits in target.activation_entries.items():
        activation_slots[suffix] = Slot(slots, bits)
        slots += 1
    owners = {fqn: _owner(root, fqn) for fqn, _, _ in weights.values()}
    scope = ScopeQuant(layer, weights, dict(weight_slots), activation_slots, owners)
    track_children(module, scope)
    observers = nn.ModuleList(ActivationObserver(persistent=False) for _ in range(2 * slots)).to(device)
    setattr(module, OBSERVERS, observers)
    module.__dict__["bitplan_scope"] = scope
    module.__class__ = scoped_class(cls)
