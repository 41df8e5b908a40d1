"""numpy evaluation of shape ops (``bitplan.frontends.onnx_eval``) against ``onnx.reference``.

Oracle: the reference runtime on the same one-node model. Every generated case must give the same
values, dtype and shape, or be declined (None) by the numpy evaluator.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx", reason="the ONNX front end needs onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from bitplan.frontends.onnx_eval import EVALUATORS, evaluate  # noqa: E402


def agree(op_type: str, inputs: list[np.ndarray], opset: int = 17, expect_handled: bool = True, **attributes) -> None:
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op_type, names, ["out"], **attributes)
    mine = evaluate(node, inputs, opset)
    model = helper.make_model(
        helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in zip(names, inputs)],
            [helper.make_empty_tensor_value_info("out")],
        ),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    try:
        (reference,) = ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))
    except Exception:  # the reference refuses these inputs (an invalid model): nothing to compare
        return
    if mine is None:
        assert not expect_handled, f"{op_type} declined inputs the reference evaluates"
        return
    (value,) = mine
    reference = np.asarray(reference)
    assert value.dtype == reference.dtype and value.shape == reference.shape and np.array_equal(value, reference), op_type


small_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def ints(shape: tuple[int, ...], seed: int, low: int = -5, high: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape, dtype=np.int64)


@settings(max_examples=80, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 10**6), data=st.data())
def test_gather(shape, seed, data) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    size = shape[axis]
    indices = np.array(data.draw(st.lists(st.integers(-size, size - 1), min_size=0, max_size=3)), dtype=np.int64)
    agree("Gather", [ints(shape, seed), indices], axis=axis)
    agree("Gather", [ints(shape, seed), np.array(data.draw(st.integers(-size, size - 1)), dtype=np.int64)], axis=axis)


@settings(max_examples=60, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 10**6), data=st.data(), opset=st.sampled_from([11, 13, 17]))
def test_unsqueeze_and_squeeze(shape, seed, data, opset) -> None:
    out_rank = len(shape) + data.draw(st.integers(1, 2))
    axes = data.draw(st.lists(st.integers(-out_rank, out_rank - 1), min_size=out_rank - len(shape),
                              max_size=out_rank - len(shape), unique_by=lambda a: a % out_rank))
    x = ints(shape, seed)
    if opset < 13:  # the reference applies attribute axes one at a time: equal to the spec for sorted ones
        axes = sorted(a % out_rank for a in axes)
    if opset >= 13:
        agree("Unsqueeze", [x, np.array(axes, dtype=np.int64)], opset)
    else:
        agree("Unsqueeze", [x], opset, axes=axes)
    expanded = np.expand_dims(x, tuple(axes))
    if opset >= 13:
        agree("Squeeze", [expanded, np.array(axes, dtype=np.int64)], opset)
        agree("Squeeze", [expanded], opset)
    else:
        agree("Squeeze", [expanded], opset, axes=axes)


@settings(max_examples=60, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 10**6), data=st.data())
def test_concat_transpose_and_casts(shape, seed, data) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    other = list(shape)
    other[axis] = data.draw(st.integers(1, 3))
    agree("Concat", [ints(shape, seed), ints(tuple(other), seed + 1)], axis=axis)
    perm = data.draw(st.permutations(range(len(shape))))
    agree("Transpose", [ints(shape, seed)], perm=list(perm))
    agree("Transpose", [ints(shape, seed)])
    for to in (TensorProto.INT32, TensorProto.INT8, TensorProto.BOOL, TensorProto.INT64):
        agree("Cast", [ints(shape, seed)], to=to)
    agree("Cast", [ints(shape, seed) > 0], to=TensorProto.INT64)
    agree("Cast", [ints(shape, seed).astype(np.float32)], to=TensorProto.INT64, expect_handled=False)


@settings(max_examples=80, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 10**6), data=st.data(), allowzero=st.sampled_from([0, 1]))
def test_reshape(shape, seed, data, allowzero) -> None:
    total = int(np.prod(shape))
    target = list(data.draw(st.permutations(shape)))
    position = data.draw(st.integers(0, len(target) - 1))
    choice = data.draw(st.sampled_from(["keep", "infer", "copy"]))
    if choice == "infer":
        target[position] = -1
    elif choice == "copy" and position < len(shape) and shape[position] == target[position]:
        target[position] = 0
    agree("Reshape", [ints(shape, seed), np.array(target, dtype=np.int64)], allowzero=allowzero)
    agree("Reshape", [ints(shape, seed), np.array([total], dtype=np.int64)])


bounds = st.sampled_from([-(2**63) + 1, -10, -3, -1, 0, 1, 2, 3, 10, 2**63 - 1])


@settings(max_examples=120, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 10**6), data=st.data(), opset=st.sampled_from([9, 13]))
def test_slice(shape, seed, data, opset) -> None:
    count = data.draw(st.integers(1, len(shape)))
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=count, max_size=count,
                              unique_by=lambda a: a % len(shape)))
    starts, ends = [data.draw(bounds) for _ in axes], [data.draw(bounds) for _ in axes]
    x = ints(shape, seed)
    if opset >= 10:
        steps = [data.draw(st.sampled_from([1, 2, -1, -2])) for _ in axes]
        vectors = [np.array(v, dtype=np.int64) for v in (starts, ends, axes, steps)]
        agree("Slice", [x, *vectors], opset)
        if count == len(shape):  # axes and steps omitted: every axis, step 1
            agree("Slice", [x, *vectors[:2]], opset)
    else:
        agree("Slice", [x], opset, starts=starts, ends=ends, axes=axes)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 3), min_size=0, max_size=3), kind=st.sampled_from(["none", "int", "float"]))
def test_constant_of_shape(shape, kind) -> None:
    value = {"none": {}, "int": {"value": numpy_helper.from_array(np.array([7], dtype=np.int64))},
             "float": {"value": numpy_helper.from_array(np.array([0.5], dtype=np.float32))}}[kind]
    agree("ConstantOfShape", [np.array(shape, dtype=np.int64)], **value)


@settings(max_examples=60, deadline=None)
@given(a=small_shapes, b=small_shapes, seed=st.integers(0, 10**6))
def test_integer_arithmetic_equal_and_where(a, b, seed) -> None:
    x, y = ints(a, seed), ints(b, seed + 1)
    for op in ("Add", "Sub", "Mul", "Equal"):
        agree(op, [x, y])
    agree("Add", [x.astype(np.float32), y.astype(np.float32)], expect_handled=False)
    agree("Where", [x > 0, x, np.zeros(b, dtype=np.int64)])


def test_constants() -> None:
    agree("Constant", [], value=numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3)))
    agree("Constant", [], value_ints=[1, -2, 3])
    agree("Constant", [], value_int=4)
    agree("Constant", [], value_floats=[0.5, 1.5])
    agree("Identity", [np.arange(4)])


def test_every_evaluator_is_checked_here() -> None:
    tested = {"Identity", "Constant", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Reshape", "Transpose", "Slice",
              "ConstantOfShape", "Add", "Sub", "Mul", "Equal", "Where"}
    assert set(EVALUATORS) == tested
