"""The reference tracer: walk the aten-level FX graph that torch.export produces.

Slower than recording (torch.export costs seconds even for small models) but independent of how
the model calls torch; ``nn_module_stack`` gives module paths and the graph signature parameter names.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from bitplan.frontends.builder import ProfileBuilder
from bitplan.frontends.ops import TensorRef
from bitplan.frontends.torch_calls import meta_like, op_name_of, record_call


def _module_path(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path if isinstance(path, str) else ""


def export_gemms(model: nn.Module, example_inputs: tuple) -> ProfileBuilder:
    """Export ``model`` (non-strict) and collect its GEMMs.

    torch.export propagates fake tensors, so real parameters and inputs are never computed on;
    a model built on the meta device gets meta inputs to match.
    """
    inputs = tuple(example_inputs)
    if any(p.device.type == "meta" for p in model.parameters()):
        inputs = tree_map(lambda v: meta_like(v) if isinstance(v, torch.Tensor) else v, inputs)
    program = torch.export.export(model, inputs, strict=False)
    signature = program.graph_signature
    canonical = _canonical_names(model)
    kinds = torch.export.graph_signature.InputKind
    parameters = {
        spec.arg.name: canonical.get(spec.target, spec.target) for spec in signature.input_specs if spec.kind == kinds.PARAMETER
    }
    user_inputs = {spec.arg.name for spec in signature.input_specs if spec.kind == kinds.USER_INPUT}
    builder = ProfileBuilder()
    refs: dict[str, TensorRef] = {}

    def as_ref(value: object) -> object:
        if isinstance(value, torch.fx.Node):
            return refs.get(value.name, TensorRef(()))
        return value

    for node in program.graph.nodes:
        value = node.meta.get("val")
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
        if node.op == "placeholder":
            parameter = parameters.get(node.name)
            sources = frozenset({parameter}) if parameter else frozenset()
            refs[node.name] = TensorRef(shape, 0, parameter, sources, node.name in user_inputs)
            continue
        if node.op != "call_function":
            continue
        ref_args, ref_kwargs = tree_map(as_ref, node.args), tree_map(as_ref, dict(node.kwargs))
        inputs = [leaf for leaf in tree_flatten((ref_args, ref_kwargs))[0] if isinstance(leaf, TensorRef)]
        produces_tensor = any(isinstance(leaf, torch.Tensor) for leaf in tree_flatten(value)[0])
        carried = record_call(
            builder, _module_path(node), op_name_of(node.target), ref_args, ref_kwargs, inputs, produces_tensor
        )
        refs[node.name] = replace(carried, shape=shape)
    return builder


def _canonical_names(model: nn.Module) -> dict[str, str]:
    """Map every name of a parameter (tied weights have several) to its first name, as
    ``named_parameters()`` reports it, so both tracers name shared weights alike."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        aliases[name] = first.setdefault(id(parameter), name)
    return aliases
