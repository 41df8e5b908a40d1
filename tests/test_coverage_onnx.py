"""The coverage ledger of the ONNX front end, and DeformConv (docs/onnx.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bitplan.frontends.onnx import trace  # noqa: E402
from bitplan.profile.schema import GemmOp, UncoveredKind  # noqa: E402

RNG = np.random.default_rng(0)


def weight(name: str, *shape: int) -> TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def save(path: Path, nodes: list, inputs: dict, initializers: list, opsets: list) -> Path:
    values = [helper.make_tensor_value_info(name, element, shape) for name, (shape, element) in inputs.items()]
    outputs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", values, outputs, initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def test_deform_conv_is_a_convolution_gemm(tmp_path: Path) -> None:
    # X [2, 4, 8, 8], W [6, 2, 3, 3] in 2 groups, offsets [2, 2·9, 6, 6]: M = 2·6·6, K = 2·9, N = 3 per group
    nodes = [helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], kernel_shape=[3, 3], group=2)]
    inputs = {"x": ([2, 4, 8, 8], TensorProto.FLOAT), "offset": ([2, 18, 6, 6], TensorProto.FLOAT)}
    path = save(tmp_path / "deform.onnx", nodes, inputs, [weight("w", 6, 2, 3, 3)], [helper.make_opsetid("", 19)])
    (layer,) = trace(path).layers
    assert (layer.op, layer.weight, layer.m, layer.k, layer.n, layer.groups) == (GemmOp.conv, "w", 72, 18, 3, 2)


def test_unknown_ops_holding_a_weight_are_uncovered_with_the_op(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),  # [2, 5, 8]
        helper.make_node("MatMul", ["emb", "proj"], ["h"]),  # covered
        helper.make_node("CausalConvWithState", ["h", "kernel"], ["y"], domain="com.example"),
    ]
    inputs = {"ids": ([2, 5], TensorProto.INT64)}
    initializers = [weight("table", 10, 8), weight("proj", 8, 4), weight("kernel", 4, 4, 3)]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    path = save(tmp_path / "custom.onnx", nodes, inputs, initializers, opsets)
    with pytest.warns(UserWarning, match="CausalConvWithState"):
        profile = trace(path)
    assert [(layer.weight, layer.m, layer.k, layer.n) for layer in profile.layers] == [("proj", 10, 8, 4)]
    listed = {entry.parameter: (entry.op, entry.kind) for entry in profile.uncovered}
    assert listed == {
        "table": ("Gather", UncoveredKind.embedding),
        "kernel": ("CausalConvWithState", UncoveredKind.unsupported),
    }
    assert [entry.parameter for entry in profile.suspect_uncovered] == ["kernel"]
    assert profile.coverage.gemm_params == 32 and profile.coverage.uncovered_params == 80 + 48
