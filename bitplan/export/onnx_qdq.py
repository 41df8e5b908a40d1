"""A planned model as ONNX with QuantizeLinear/DequantizeLinear (QDQ) nodes, for ONNX Runtime and TensorRT.

The float model is exported with ``torch.onnx.export`` (initializers named by state_dict key), then
each planned weight's initializer is replaced by its integer codes and a ``DequantizeLinear``
(``y = (q − zero_point)·scale``, per output channel along ``axis`` or per tensor): UINT4 codes for
widths up to 4 (opset 21), UINT8 up to 8, UINT16 up to 16. A b-bit code in a wider container keeps
its values 0…2^b − 1, so the weights are exact on the integer grid. Where the plan has activation
bits, the input of every planned layer gets ``Clip → QuantizeLinear → DequantizeLinear`` with the
range bitplan's observer holds in eval; the Clip to [(0 − zp)·scale, (2^a − 1 − zp)·scale] keeps
a-bit codes inside an 8- or 16-bit container.

ONNX Runtime's default optimisations fuse a rank-2 ``DequantizeLinear → MatMul/Gemm`` into
``MatMulNBits``, whose default accuracy level quantizes the activations to int8: the model would
no longer compute what it trained with. So a rank-2 weight's codes are stored [1, out, in] with
``DequantizeLinear`` on axis 1 followed by ``Squeeze``: the same QDQ weights, which ONNX Runtime
runs exactly at its default session options. The model metadata ``bitplan.onnxruntime_session_config``
also carries the session configuration that keeps any such fusion exact (docs/export.md).

A planned lookup table is dequantized the same way for its ``Gather``: a table tied to the output
head is one weight at one width, read through one ``DequantizeLinear`` by both. A weight that other
ops read besides (added elementwise, say) is dequantized for its GEMMs and lookups only; those keep
reading the float32 initializer, as in training.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bitplan.qat import apply, is_quantized, strip
from bitplan.qat.runtime import OBSERVER
from bitplan.atomic import atomic_write_bytes
from bitplan.errors import ExportError, NonFiniteWeightsError
from bitplan.export.weights import ExportWarning, leave_out, name_list, planned_weights, require, target_codes
from bitplan.plan import BitPlan, as_plan
from bitplan.quant import SCALE_FLOOR

OPSET = 21
"""First opset whose QuantizeLinear/DequantizeLinear take INT4/UINT4."""
EXPORT_OPSET = 20
"""The TorchScript exporter's newest opset; ops it emits are unchanged at 21."""
ONNX_BITS = [4, 8, 16]
"""Code containers: UINT4, UINT8, UINT16."""
GEMM_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
LOOKUP_OPS = {"Gather"}
"""Ops that read a planned weight as a table (input 0), as ``bitplan.apply`` quantizes it."""
PASS_THROUGH = {"Transpose", "Identity", "Cast"}
TARGET = "ONNX"
SESSION_CONFIG_KEY = "bitplan.onnxruntime_session_config"
SESSION_CONFIG = {"session.qdq_matmulnbits_accuracy_level": "0"}
"""ONNX Runtime session config entries under which a fused DQ→MatMulNBits keeps float activations."""


def to_onnx(
    model: nn.Module,
    plan: BitPlan | str | os.PathLike,
    path: str | os.PathLike,
    example_inputs: tuple | None = None,
    *,
    strict: bool = False,
    allow_nonfinite: bool = False,
) -> Path:
    """Write ``model`` as an ONNX QDQ model at the plan's bits (atomically).

    Args:
        model: The model, plain or quantized by ``bitplan.apply`` (its observers give the
            activation ranges; a plain model's are measured on ``example_inputs``, with a warning).
        plan: The plan (``zero_point="integer"`` makes the export exact).
        path: The ``.onnx`` file to write.
        example_inputs: Inputs of one forward call (default: the plan's model spec's); the first
            dimension of each is exported as a dynamic batch.
        strict: Refuse instead of warning when a width or a layer cannot be kept.
        allow_nonfinite: Export a model holding NaN/Inf (its planned weights and activation ranges
            with them stay in float).

    Returns:
        ``path``.

    Raises:
        ExportError: onnx is missing, the model cannot be exported, or ``strict`` and the plan does not fit.
        NonFiniteWeightsError: A weight or trained activation range holds NaN/Inf (without ``allow_nonfinite``).

    Example:
        >>> to_onnx(model, plan, "/tmp/model.onnx")  # doctest: +SKIP
    """
    onnx = require("onnx")
    plan = as_plan(plan)
    inputs = tuple(example_inputs) if example_inputs is not None else _plan_inputs(plan)
    plain = strip(copy.deepcopy(model)) if is_quantized(model) else model
    weights = planned_weights(plain, plan, allow_nonfinite=allow_nonfinite)
    ranges = _activation_ranges(model, plan, inputs) if plan.activation_bits is not None else {}
    ranges = _finite_ranges(ranges, allow_nonfinite)
    codes = target_codes(weights, plan, TARGET)
    graph_model = _export_float(plain.eval(), inputs, onnx)
    graph = graph_model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    missing = [weight.fqn for weight in weights if weight.fqn not in initializers]
    leave_out(missing, "weights the exporter folded or renamed", TARGET, strict=strict)
    too_wide = [weight.fqn for weight in weights if _container(weight.bits) is None]
    leave_out(too_wide, f"weights wider than {ONNX_BITS[-1]} bits", TARGET, strict=strict)
    for weight in weights:
        if weight.fqn in initializers and weight.fqn not in too_wide:
            container = _container(weight.bits)
            _dequantize_weight(graph, initializers[weight.fqn], codes[weight.fqn], container, weight.channel_dim, onnx)
    if ranges:
        _quantize_activations(graph, ranges, plan.activation_bits, onnx, strict=strict)
    for opset in graph_model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET
    onnx.helper.set_model_props(graph_model, {SESSION_CONFIG_KEY: json.dumps(SESSION_CONFIG)})
    onnx.checker.check_model(graph_model)
    atomic_write_bytes(path, graph_model.SerializeToString())
    return Path(path)


def _container(bits: int) -> int | None:
    """The narrowest code container holding ``bits``-bit codes exactly (None: wider than 16 bits)."""
    return next((container for container in ONNX_BITS if container >= bits), None)


def _plan_inputs(plan: BitPlan) -> tuple:
    from bitplan.spec import load_model

    meta = load_model(plan.model, device="meta").example_inputs
    return tuple(torch.zeros(t.shape, dtype=t.dtype) if isinstance(t, Tensor) else t for t in meta)


def _export_float(model: nn.Module, inputs: tuple, onnx):
    names = [f"input_{i}" for i in range(len(inputs))]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        try:
            torch.onnx.export(
                model, inputs, buffer, dynamo=False, do_constant_folding=False, opset_version=EXPORT_OPSET,
                input_names=names, output_names=["output_0"],
                dynamic_axes={**{name: {0: "batch"} for name in names}, "output_0": {0: "batch"}},
            )
        except Exception as error:  # the exporter raises many types for unsupported code
            raise ExportError(
                f"torch.onnx.export cannot export this model ({type(error).__name__}: {str(error).splitlines()[0]}); "
                "export another format (packed, torchao, compressed-tensors)"
            ) from None
    return onnx.load_from_string(buffer.getvalue())


def _activation_ranges(model: nn.Module, plan: BitPlan, inputs: tuple) -> dict[str, tuple[float, float]]:
    """Weight FQN -> (low, high) of its layer's input range in eval, for layers with their own observer."""
    quantized = model
    if not is_quantized(model):
        warnings.warn(
            f"{TARGET}: the model has no trained activation ranges; measured them on one forward pass of the "
            "example inputs (export from a training checkpoint to use the trained ranges)",
            ExportWarning,
            stacklevel=3,
        )
        quantized = apply(copy.deepcopy(model), plan, inputs, verify=False).train()
        with torch.no_grad():
            quantized(*inputs)
    ranges = {}
    for path, module in quantized.named_modules():
        layer = module.__dict__.get("bitplan_quant")
        observer = getattr(module, OBSERVER, None)
        if layer is None or observer is None or int(observer.num_batches) == 0:
            continue  # not a twin layer, or never saw a training batch (eval would use each batch's range)
        for name in layer.weight_bits:
            ranges[f"{path}.{name}" if path else name] = (observer.running_min.clone(), observer.running_max.clone())
    return ranges


def _finite_ranges(ranges: dict[str, tuple[Tensor, Tensor]], allow_nonfinite: bool) -> dict[str, tuple[Tensor, Tensor]]:
    """The activation ranges without NaN/Inf; any such range is refused, or with ``allow_nonfinite`` left out."""
    broken = {fqn: bounds for fqn, bounds in ranges.items() if not all(bool(torch.isfinite(end).all()) for end in bounds)}
    if not broken:
        return ranges
    shown = name_list(list(broken))
    if not allow_nonfinite:
        raise NonFiniteWeightsError(
            f"the export refuses this model: the activation ranges of the layers reading {shown} are NaN or infinite "
            "(training diverged); retrain, or pass --allow-nonfinite to leave these inputs in float."
        )
    warnings.warn(f"{TARGET}: non-finite activation ranges of {shown}: their inputs stay in float", ExportWarning, stacklevel=3)
    return {fqn: bounds for fqn, bounds in ranges.items() if fqn not in broken}


def _integer_grid(low: Tensor, high: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """scale and zero point of bitplan's integer grid for the range [low, high] (uniform._affine's arithmetic)."""
    qmax = torch.full((), 2**bits - 1, dtype=torch.float32)
    low, high = low.float().clamp_max(0), high.float().clamp_min(0)
    scale = (high - low).div_(qmax).clamp_min_(SCALE_FLOOR)
    zero_point = torch.div(low.neg(), scale).round_().clamp_(min=0).clamp_(max=qmax)
    return scale, zero_point


def _dequantize_weight(graph, initializer, codes, container: int, channel_dim: int | None, onnx) -> None:
    """Feed the GEMMs and lookups reading ``initializer`` its codes through DequantizeLinear (rank 2:
    [1, out, in] + Squeeze).

    Other readers keep the float32 initializer; without any, it is removed.
    """
    from onnx import helper, numpy_helper

    name = initializer.name
    data_type = {4: onnx.TensorProto.UINT4, 8: onnx.TensorProto.UINT8, 16: onnx.TensorProto.UINT16}[container]
    numpy_type = {4: "uint8", 8: "uint8", 16: "uint16"}[container]
    values = codes.codes.to(torch.int32).numpy().astype(numpy_type)
    zero_point = codes.zero_point.to(torch.int32).numpy().astype(numpy_type)
    wrapped = values.ndim == 2  # ONNX Runtime fuses rank-2 DQ→MatMul into MatMulNBits (int8 activations)
    if wrapped:
        values = values[None]  # [1, out, in]
    readers = [node for node in graph.node if name in node.input]
    gemm_readers = [node for node in readers if _reads_as_weight(node, name, graph)]
    output = name if len(gemm_readers) == len(readers) else f"{name}_dequantized"
    if output == name:
        graph.initializer.remove(initializer)
    for node in gemm_readers:
        node.input[:] = [output if value == name else value for value in node.input]
    graph.initializer.extend([
        helper.make_tensor(f"{name}_quantized", data_type, values.shape, values.flatten().tolist()),
        numpy_helper.from_array(codes.scale.float().numpy(), f"{name}_scale"),
        helper.make_tensor(f"{name}_zero_point", data_type, zero_point.shape, zero_point.flatten().tolist()),
    ])
    attributes = {"axis": channel_dim + int(wrapped)} if channel_dim is not None else {}
    dequantized = f"{name}_rank3" if wrapped else output
    nodes = [helper.make_node(
        "DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"], [dequantized],
        name=f"{name}_DequantizeLinear", **attributes,
    )]
    if wrapped:
        graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}_squeeze_axes"))
        nodes.append(helper.make_node("Squeeze", [dequantized, f"{name}_squeeze_axes"], [output], name=f"{name}_Squeeze"))
    for offset, node in enumerate(nodes):
        graph.node.insert(offset, node)


def _reads_as_weight(node, value: str, graph) -> bool:
    """Whether ``node`` reads ``value`` as a Conv/Gemm/MatMul weight or a Gather's table, directly or through
    Transpose/Identity/Cast."""
    for _ in range(4):
        if node.op_type in GEMM_OPS:
            return list(node.input).index(value) == 1
        if node.op_type in LOOKUP_OPS:
            return list(node.input).index(value) == 0
        if node.op_type not in PASS_THROUGH:
            return False
        value = node.output[0]
        readers = [other for other in graph.node if value in other.input]
        if len(readers) != 1:
            return False
        node = readers[0]
    return False


def _quantize_activations(graph, ranges: dict, bits: int, onnx, *, strict: bool) -> None:
    from onnx import helper, numpy_helper

    container = max(8, _container(bits) or 0)  # activations in UINT8 or UINT16
    if container > ONNX_BITS[-1] or bits > ONNX_BITS[-1]:
        leave_out(list(ranges), f"{bits}-bit activations (inputs of these layers)", TARGET, strict=strict)
        return
    data_type = onnx.TensorProto.UINT8 if container == 8 else onnx.TensorProto.UINT16
    consumers: dict[str, list] = {}
    for node in graph.node:
        for value in node.input:
            consumers.setdefault(value, []).append(node)
    unmatched = []
    for fqn, (low, high) in ranges.items():
        gemm = _gemm_of(fqn, consumers)
        if gemm is None:
            unmatched.append(fqn)
            continue
        scale, zero_point = _integer_grid(low, high, bits)
        prefix = f"{fqn}_input"
        lowest = (-zero_point * scale).reshape(())
        highest = ((2**bits - 1 - zero_point) * scale).reshape(())
        graph.initializer.extend([
            numpy_helper.from_array(scale.reshape(()).numpy(), f"{prefix}_scale"),
            helper.make_tensor(f"{prefix}_zero_point", data_type, [], [int(zero_point)]),
            numpy_helper.from_array(lowest.numpy(), f"{prefix}_min"),
            numpy_helper.from_array(highest.numpy(), f"{prefix}_max"),
        ])
        source = gemm.input[0]
        nodes = [
            helper.make_node("Clip", [source, f"{prefix}_min", f"{prefix}_max"], [f"{prefix}_clipped"], name=f"{prefix}_Clip"),
            helper.make_node("QuantizeLinear", [f"{prefix}_clipped", f"{prefix}_scale", f"{prefix}_zero_point"],
                             [f"{prefix}_quantized"], name=f"{prefix}_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{prefix}_quantized", f"{prefix}_scale", f"{prefix}_zero_point"],
                             [f"{prefix}_dequantized"], name=f"{prefix}_DequantizeLinear"),
        ]
        gemm.input[0] = f"{prefix}_dequantized"
        position = list(graph.node).index(gemm)
        for offset, node in enumerate(nodes):
            graph.node.insert(position + offset, node)
    leave_out(unmatched, "the inputs of these layers (no Conv/Gemm/MatMul reads their weight)", TARGET, strict=strict)


def _gemm_of(weight: str, consumers: dict[str, list]):
    """The Conv/Gemm/MatMul node reading ``weight`` (through Transpose/Identity/Cast), None if not exactly one."""
    value = weight
    for _ in range(4):
        nodes = consumers.get(value, [])
        if len(nodes) != 1:
            return None
        node = nodes[0]
        if node.op_type in GEMM_OPS:
            return node if list(node.input).index(value) == 1 else None
        if node.op_type not in PASS_THROUGH:
            return None
        value = node.output[0]
    return None
