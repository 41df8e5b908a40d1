"""Fold small integer shape computations into initializers so ONNX shape inference can see through them.

Graphs from torch's TorchScript exporter (and other converters) compute shapes at run time:
``Shape → Gather → Concat → ConstantOfShape → Expand``. ONNX shape inference propagates values through
some of these ops but not all, leaving dims unknown. When a GEMM's shape is still unknown after
inference, the front end evaluates such subgraphs here (with numpy for the common shape ops,
``bitplan.frontends.onnx_eval``, else ``onnx.reference``; on tensors of at most ``SMALL_TENSOR``
elements) and infers again. Only integer and boolean results become initializers, so
parameters and activations are never materialised.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import ModelProto, NodeProto, helper, numpy_helper
from onnx.external_data_helper import uses_external_data

from bitplan.frontends.onnx_eval import evaluate
from bitplan.frontends.onnx_graph import SMALL_TENSOR, STANDARD_DOMAINS, value_shape

FOLDABLE_OPS = frozenset(
    {"Shape", "Size", "Constant", "ConstantOfShape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast",
     "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Floor", "Ceil", "Min", "Max", "Mod", "Range", "Equal", "Less",
     "Greater", "Not", "Where", "Expand", "Tile", "Reshape", "Identity", "ReduceProd", "Transpose"}
)


def fold_shape_computations(model: ModelProto) -> bool:
    """Replace nodes computing small integer tensors from constants (and static shapes) by initializers.

    Args:
        model: a shape-inferred model, changed in place.

    Returns:
        Whether any node was folded (inference should then run again).
    """
    graph = model.graph
    shapes = {v.name: value_shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    values: dict[str, np.ndarray] = {
        t.name: numpy_helper.to_array(t)
        for t in graph.initializer
        if not uses_external_data(t) and math.prod(t.dims) <= SMALL_TENSOR
    }
    folded: list[int] = []
    for index, node in enumerate(graph.node):
        if node.domain not in STANDARD_DOMAINS or node.op_type not in FOLDABLE_OPS:
            continue
        outputs = _evaluate(node, values, shapes, model)
        if outputs is None:
            continue
        values.update(zip(node.output, outputs))
        if all(_is_shape_like(value) for value in outputs):
            folded.append(index)
    if not folded:
        return False
    folded_set = set(folded)
    removed = [graph.node[index] for index in folded]
    kept = [node for index, node in enumerate(graph.node) if index not in folded_set]
    del graph.node[:]
    graph.node.extend(kept)
    for node in removed:
        graph.initializer.extend(numpy_helper.from_array(values[out], out) for out in node.output if out)
    del graph.value_info[:]
    return True


def _evaluate(
    node: NodeProto, values: dict[str, np.ndarray], shapes: dict, model: ModelProto
) -> list[np.ndarray] | None:
    """The node's outputs when every input is known and small, else None."""
    if node.op_type in ("Shape", "Size"):
        shape = shapes.get(node.input[0])
        if shape is None or not all(isinstance(d, int) for d in shape):
            return None
        if node.op_type == "Size":
            return [np.array(math.prod(shape), dtype=np.int64)]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return [np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))], dtype=np.int64)]
    inputs = [values.get(name) for name in node.input if name]
    if any(value is None for value in inputs) or _too_big(node, inputs):
        return None
    outputs = evaluate(node, inputs, _default_opset(model))
    if outputs is None:
        outputs = _reference_outputs(node, inputs, model)
    return outputs if outputs is not None and all(value.size <= SMALL_TENSOR for value in outputs) else None


def _reference_outputs(node: NodeProto, inputs: list[np.ndarray], model: ModelProto) -> list[np.ndarray] | None:
    """The node run alone by ``onnx.reference``, for the ops ``onnx_eval`` leaves to it; None if it cannot."""
    from onnx.reference import ReferenceEvaluator  # 50–100 ms to import its op list: only when needed

    feeds = {name: value for name, value in zip([n for n in node.input if n], inputs)}
    tiny = helper.make_model(
        helper.make_graph(
            [node], "fold",
            [
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                for name, value in feeds.items()
            ],
            [helper.make_empty_tensor_value_info(out) for out in node.output if out],
        ),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
    )
    try:
        return [np.asarray(value) for value in ReferenceEvaluator(tiny).run(None, feeds)]
    except Exception:  # an op the reference runtime cannot run here; the node just stays unfolded
        return None


def _default_opset(model: ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in STANDARD_DOMAINS), 1)


def _too_big(node: NodeProto, inputs: list[np.ndarray]) -> bool:
    """Whether an op that creates data from a shape would create more than SMALL_TENSOR elements."""
    try:
        if node.op_type == "ConstantOfShape":
            size = math.prod(int(d) for d in inputs[0])
        elif node.op_type == "Expand":
            size = math.prod(np.broadcast_shapes(inputs[0].shape, tuple(int(d) for d in inputs[1])))
        elif node.op_type == "Tile":
            size = inputs[0].size * math.prod(int(d) for d in inputs[1])
        elif node.op_type == "Range":
            start, limit, delta = (float(v) for v in inputs)
            size = math.ceil((limit - start) / delta) if delta else SMALL_TENSOR + 1
        else:
            return False
    except (ValueError, TypeError, IndexError):
        return True
    return size > SMALL_TENSOR


def _is_shape_like(value: np.ndarray) -> bool:
    return value.dtype.kind in "iub" and value.size <= SMALL_TENSOR
