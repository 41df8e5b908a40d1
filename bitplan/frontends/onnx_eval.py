"""numpy evaluation of the small shape ops exporters emit, for folding without ``onnx.reference``.

Why: ``onnx.reference`` imports every one of its ~200 op implementations on first use (50–100 ms,
more than profiling resnet20's graph takes). Shape subgraphs use a handful of ops whose numpy
counterparts have exactly the ONNX semantics — indexing, concatenation, reshapes, integer
arithmetic — so those are evaluated here and anything else is left to the reference runtime.
``tests/test_onnx_eval.py`` checks each op against ``onnx.reference`` on random inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import NodeProto, helper, numpy_helper

Evaluator = Callable[[list[np.ndarray], dict, int], np.ndarray | None]
EVALUATORS: dict[str, Evaluator] = {}


def evaluate(node: NodeProto, inputs: list[np.ndarray], opset: int) -> list[np.ndarray] | None:
    """The node's single output computed with numpy, or None when this module does not evaluate it
    (or the inputs are invalid for the op).

    Args:
        node: a standard-domain node.
        inputs: its input values in order (absent optional inputs omitted at the end).
        opset: the model's default-domain opset (Unsqueeze, Squeeze and Slice moved attributes to inputs).
    """
    evaluator = EVALUATORS.get(node.op_type)
    if evaluator is None or len(node.output) != 1:
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    try:
        result = evaluator(inputs, attributes, opset)
    except (ValueError, IndexError, TypeError, KeyError):  # inputs the op refuses: the node stays unfolded
        return None
    return None if result is None else [np.asarray(result)]


def _op(*names: str) -> Callable[[Evaluator], Evaluator]:
    def register(evaluator: Evaluator) -> Evaluator:
        for name in names:
            EVALUATORS[name] = evaluator
        return evaluator

    return register


def _integers(*values: np.ndarray) -> bool:
    return all(value.dtype.kind in "iu" for value in values)


@_op("Identity")
def _identity(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    return inputs[0]


@_op("Constant")
def _constant(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray | None:
    """The value attribute (a tensor, or int/float scalars and lists); strings and sparse: reference."""
    if "value" in attributes:
        return numpy_helper.to_array(attributes["value"])
    for key, dtype in (("value_int", np.int64), ("value_ints", np.int64), ("value_float", np.float32), ("value_floats", np.float32)):
        if key in attributes:
            return np.array(attributes[key], dtype=dtype)
    return None


@_op("Gather")
def _gather(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    """Gather(data, indices, axis): negative indices count from the end, as in ``np.take``."""
    return np.take(inputs[0], inputs[1], axis=attributes.get("axis", 0))


def _axes(inputs: list[np.ndarray], attributes: dict, opset: int) -> list[int] | None:
    """Unsqueeze/Squeeze axes: an input from opset 13, an attribute before."""
    if opset >= 13:
        return [int(a) for a in inputs[1]] if len(inputs) > 1 else None
    return list(attributes["axes"]) if "axes" in attributes else None


@_op("Unsqueeze")
def _unsqueeze(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray | None:
    axes = _axes(inputs, attributes, opset)
    return None if axes is None else np.expand_dims(inputs[0], tuple(axes))


@_op("Squeeze")
def _squeeze(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    axes = _axes(inputs, attributes, opset)
    return np.squeeze(inputs[0]) if axes is None else np.squeeze(inputs[0], axis=tuple(axes))


@_op("Concat")
def _concat(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    return np.concatenate(inputs, axis=attributes["axis"])


@_op("Cast")
def _cast(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray | None:
    """Cast between integer and boolean types (float rounding and saturation: reference)."""
    target = np.dtype(helper.tensor_dtype_to_np_dtype(attributes["to"]))
    if inputs[0].dtype.kind not in "iub" or target.kind not in "iub":
        return None
    return inputs[0].astype(target)


@_op("Reshape")
def _reshape(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    """Reshape(data, shape): 0 copies the input's dim (unless ``allowzero``), −1 is inferred."""
    data, shape = inputs[0], [int(d) for d in inputs[1]]
    if not attributes.get("allowzero", 0):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return np.reshape(data, shape)


@_op("Transpose")
def _transpose(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    return np.transpose(inputs[0], attributes.get("perm"))


@_op("Slice")
def _slice(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    """Slice: starts/ends (and axes, steps) clamp exactly as Python slices do."""
    data = inputs[0]
    if opset >= 10:
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 else range(len(starts))
        steps = inputs[4] if len(inputs) > 4 else [1] * len(starts)
    else:
        starts, ends = attributes["starts"], attributes["ends"]
        axes, steps = attributes.get("axes", range(len(starts))), [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


@_op("ConstantOfShape")
def _constant_of_shape(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray:
    value = numpy_helper.to_array(attributes["value"]) if "value" in attributes else np.zeros(1, np.float32)
    return np.full([int(d) for d in inputs[0]], value.reshape(-1)[0], dtype=value.dtype)


def _integer_binary(operation: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Evaluator:
    """Integer Add/Sub/Mul of one dtype (wrapping, as ONNX); float arithmetic: reference."""

    def evaluator(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray | None:
        a, b = inputs
        return operation(a, b) if _integers(a, b) and a.dtype == b.dtype else None

    return evaluator


EVALUATORS.update({"Add": _integer_binary(np.add), "Sub": _integer_binary(np.subtract), "Mul": _integer_binary(np.multiply)})


@_op("Equal")
def _equal(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray | None:
    return np.equal(*inputs) if _integers(*inputs) or all(v.dtype == bool for v in inputs) else None


@_op("Where")
def _where(inputs: list[np.ndarray], attributes: dict, opset: int) -> np.ndarray | None:
    condition, x, y = inputs
    return np.where(condition, x, y) if condition.dtype == bool and x.dtype == y.dtype else None
