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
    # the Gather on the table is a lookup layer (10 ids, a 10×8 table), no longer uncovered
    assert [(layer.weight, layer.m, layer.k, layer.n) for layer in profile.layers] == [("table", 10, 10, 8), ("proj", 10, 8, 4)]
    listed = {entry.parameter: (entry.op, entry.kind) for entry in profile.uncovered}
    assert listed == {"kernel": ("CausalConvWithState", UncoveredKind.unsupported)}
    assert [entry.parameter for entry in profile.suspect_uncovered] == ["kernel"]
    assert profile.coverage.gemm_params == 80 + 32 and profile.coverage.uncovered_params == 48


def test_causal_conv_with_state_is_a_depthwise_conv(tmp_path: Path) -> None:
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    # X [2, 6, 10], W [6, 1, 4]: each channel its own group, M = 2·10, K = 4, N = 1
    nodes = [helper.make_node("CausalConvWithState", ["x", "w"], ["y", "state"], activation="silu")]
    path = save(tmp_path / "causal.onnx", nodes, {"x": ([2, 6, 10], TensorProto.FLOAT)}, [weight("w", 6, 1, 4)],
                [helper.make_opsetid("", 27)])
    (layer,) = trace(path).layers
    assert (layer.op, layer.weight, layer.m, layer.k, layer.n, layer.groups) == (GemmOp.conv, "w", 20, 4, 1, 6)
    x, w = torch.randn(2, 6, 10), torch.randn(6, 1, 4)
    with FlopCounterMode(display=False) as counter:  # the same convolution in torch: left-padded by k-1
        F.conv1d(F.pad(x, (3, 0)), w, groups=6)
    assert layer.macs == counter.get_total_flops() // 2


@pytest.mark.parametrize(("rule", "reads"), [("linear", False), ("gated", False), ("delta", True), ("gated_delta", True)])
def test_linear_attention_counts_its_recurrent_state(tmp_path: Path, rule: str, reads: bool) -> None:
    # B = 2, T = 5, 4 query heads sharing 2 KV heads, d_k = 3, d_v = 6
    inputs = {"q": ([2, 5, 12], TensorProto.FLOAT), "k": ([2, 5, 6], TensorProto.FLOAT), "v": ([2, 5, 12], TensorProto.FLOAT)}
    extra = {"gated": ["", "g"], "delta": ["", "", "b"], "gated_delta": ["", "g", "b"]}.get(rule, [])
    inputs.update({name: ([2, 5, 2], TensorProto.FLOAT) for name in extra if name})
    node = helper.make_node("LinearAttention", ["q", "k", "v", *extra], ["o", "state"], name="mixer",
                            q_num_heads=4, kv_num_heads=2, update_rule=rule)
    profile = trace(save(tmp_path / "linear.onnx", [node], inputs, [], [helper.make_opsetid("", 27)]))
    got = [(layer.name, layer.m, layer.k, layer.n, layer.groups, layer.depth) for layer in profile.layers]
    update, read, output = ("mixer.state_update", 3, 5, 6, 4, 1), ("mixer.state_read", 5, 3, 6, 4, 1), ("mixer.output", 5, 3, 6, 8, 2)
    assert got == ([update, read, output] if reads else [update, output])
    # per token and KV head, k⊗v is d_k·d_v MACs; per token and query head, qᵀS is d_k·d_v
    assert sum(layer.macs for layer in profile.layers) == 18 * 5 * 2 * (2 + 4 + (2 if reads else 0))
    assert profile.unknown_ops == []


def test_ops_with_no_rule_are_listed_with_their_count(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("FancyMix", ["h"], ["h2"], domain="com.example"),
        helper.make_node("FancyMix", ["h2"], ["h3"], domain="com.example"),
        helper.make_node("Relu", ["h3"], ["y"]),  # a standard op with no GEMM: known, not listed
    ]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    path = save(tmp_path / "mix.onnx", nodes, {"x": ([2, 4], TensorProto.FLOAT)}, [weight("w", 4, 4)], opsets)
    with pytest.warns(UserWarning, match="com.example::FancyMix"):
        profile = trace(path)
    assert [(entry.op, entry.count) for entry in profile.unknown_ops] == [("com.example::FancyMix", 2)]
    from typer.testing import CliRunner

    from bitplan.cli.app import app

    runner = CliRunner()
    lenient = runner.invoke(app, ["profile", str(path), "--format", "json"])
    assert lenient.exit_code == 0 and lenient.stderr.count("warning") == 1 and "com.example::FancyMix ×2" in lenient.stderr
    assert runner.invoke(app, ["profile", str(path), "--strict", "--format", "json"]).exit_code == 1
