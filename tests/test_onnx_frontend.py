"""The ONNX front end: hand-built graphs with hand-computed GEMMs, bad input, and parity with PyTorch."""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.utils.flop_counter import conv_flop_count

from bitplan.errors import OnnxError
from bitplan.frontends.onnx import trace as profile_onnx
from bitplan.frontends.onnx_names import (
    is_generated_name,
    reads_parameter,
    recovered_weight_fqn,
    rnn_weight_fqn,
    torch_scope,
)
from bitplan.profile.schema import GemmLayer, GemmOp, ModelProfile, Tracer

RNG = np.random.default_rng(0)


def init(name: str, shape: list[int] | None = None, values: list[int] | None = None) -> TensorProto:
    """A float initializer of random values, or an int64 one holding ``values``."""
    if values is not None:
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def save(path: Path, nodes: list, inputs: dict, initializers: list = (), opset: int = 17) -> Path:
    """Write a one-graph model; ``inputs`` maps name -> shape, or -> (shape, element type)."""
    values = []
    for name, spec in inputs.items():
        shape, element_type = spec if isinstance(spec, tuple) else (spec, TensorProto.FLOAT)
        values.append(helper.make_tensor_value_info(name, element_type, shape))
    outputs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", values, outputs, initializer=list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def gemm(profile: ModelProfile, name: str) -> GemmLayer:
    return next(layer for layer in profile.layers if layer.name == name)


def mkng(layer: GemmLayer) -> tuple[int, int, int, int]:
    return layer.m, layer.k, layer.n, layer.groups


# --- convolutions -------------------------------------------------------------------------------


def test_conv_with_groups_stride_dilation_and_padding(tmp_path: Path) -> None:
    # out = floor((10 + 1 + 1 - 2·(3-1) - 1) / 2) + 1 = 4 per side
    node = helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["y"], group=2, strides=[2, 2],
                            dilations=[2, 2], pads=[1, 1, 1, 1])
    initializers = [init("conv.weight", [8, 3, 3, 3]), init("conv.bias", [8])]
    path = save(tmp_path / "m.onnx", [node], {"x": [2, 6, 10, 10]}, initializers)
    profile = profile_onnx(path)
    layer = gemm(profile, "conv")
    assert mkng(layer) == (2 * 4 * 4, 3 * 9, 4, 2)
    assert (layer.weight, layer.op, layer.depth, layer.weight_shape) == ("conv.weight", GemmOp.conv, 1, [8, 3, 3, 3])
    assert layer.params == 8 * 3 * 9 and layer.macs == 32 * 27 * 4 * 2
    assert profile.tracer is Tracer.onnx and profile.batch == 2 and profile.input_shapes == [[2, 6, 10, 10]]
    assert profile.total_params == 8 * 27 + 8


def test_depthwise_conv_with_same_padding(tmp_path: Path) -> None:
    node = helper.make_node("Conv", ["x", "dw.weight"], ["y"], group=4, auto_pad="SAME_UPPER")
    path = save(tmp_path / "m.onnx", [node], {"x": [1, 4, 5, 5]}, [init("dw.weight", [4, 1, 3, 3])])
    assert mkng(gemm(profile_onnx(path), "dw")) == (25, 9, 1, 4)


@pytest.mark.parametrize(
    ("x", "w", "attrs", "expected"),
    [
        ([2, 3, 10], [5, 3, 4], {"strides": [2]}, (2 * 4, 12, 5, 1)),  # 1-D: floor((10-4)/2)+1 = 4
        ([1, 2, 4, 4, 4], [3, 2, 2, 2, 2], {}, (27, 16, 3, 1)),  # 3-D: 3×3×3 outputs, K = 2·8
    ],
)
def test_conv_of_any_spatial_rank(tmp_path: Path, x: list[int], w: list[int], attrs: dict, expected: tuple) -> None:
    node = helper.make_node("Conv", ["x", "c.weight"], ["y"], **attrs)
    path = save(tmp_path / "m.onnx", [node], {"x": x}, [init("c.weight", w)])
    assert mkng(gemm(profile_onnx(path), "c")) == expected


def test_conv_transpose_is_the_col2im_gemm(tmp_path: Path) -> None:
    # W [C_in=4, C_out/g=2, 2, 2], g=2: M = 9 input positions, K = C_in/g = 2, N = C_out/g·kernel = 8
    node = helper.make_node("ConvTranspose", ["x", "up.weight"], ["y"], group=2, strides=[2, 2])
    path = save(tmp_path / "m.onnx", [node], {"x": [1, 4, 3, 3]}, [init("up.weight", [4, 2, 2, 2])])
    layer = gemm(profile_onnx(path), "up")
    assert mkng(layer) == (9, 2, 8, 2) and layer.op is GemmOp.conv_transpose
    assert layer.macs == 9 * 2 * 2 * 4 * 4 // 2  # batch·in positions·kernel·C_in·C_out/g, torch's count
    assert layer.params == 4 * 2 * 2 * 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c_in_per_group=st.integers(1, 3), c_out_per_group=st.integers(1, 3), groups=st.integers(1, 3),
    kernel=st.integers(1, 3), stride=st.integers(1, 2), dilation=st.integers(1, 2), pad=st.integers(0, 2),
    size=st.integers(5, 8), transposed=st.booleans(),
)
def test_conv_macs_match_torch_flop_counter(tmp_path: Path, c_in_per_group: int, c_out_per_group: int, groups: int,
                                            kernel: int, stride: int, dilation: int, pad: int, size: int,
                                            transposed: bool) -> None:
    c_in, c_out = c_in_per_group * groups, c_out_per_group * groups
    attrs = {"group": groups, "strides": [stride] * 2, "dilations": [dilation] * 2, "pads": [pad] * 4}
    if transposed:
        weight, op = [c_in, c_out_per_group, kernel, kernel], "ConvTranspose"
        module = nn.ConvTranspose2d(c_in, c_out, kernel, stride, pad, groups=groups, dilation=dilation)
    else:
        weight, op = [c_out, c_in_per_group, kernel, kernel], "Conv"
        module = nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation, groups)
    x = torch.zeros(2, c_in, size, size)
    with torch.no_grad():
        out = module(x)
    path = save(tmp_path / "m.onnx", [helper.make_node(op, ["x", "c.weight"], ["y"], **attrs)], {"x": list(x.shape)},
                [init("c.weight", weight)])
    flops = conv_flop_count(list(x.shape), list(module.weight.shape), list(out.shape), transposed)
    assert profile_onnx(path).total_macs == flops // 2  # FlopCounterMode's rule, 2 FLOPs per MAC


# --- Gemm, MatMul, Einsum -----------------------------------------------------------------------


def test_gemm_with_trans_b(tmp_path: Path) -> None:
    node = helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1)
    path = save(tmp_path / "m.onnx", [node], {"x": [5, 7]}, [init("fc.weight", [3, 7]), init("fc.bias", [3])])
    profile = profile_onnx(path)
    layer = gemm(profile, "fc")
    assert mkng(layer) == (5, 7, 3, 1) and layer.op is GemmOp.linear and layer.weight_shape == [3, 7]
    assert profile.total_params == 24


def test_weight_on_the_left_swaps_m_and_n(tmp_path: Path) -> None:
    # Y[4×5] = W[4×7]·X[7×5]: each weight element is used once per column of X
    nodes = [helper.make_node("Gemm", ["w", "x"], ["y"], name="left")]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, {"x": [7, 5]}, [init("w", [4, 7])]))
    assert mkng(gemm(profile, "left")) == (5, 7, 4, 1) and gemm(profile, "left").weight == "w"
    # batched right operand: Y[2,4,5] = W[4,7]·X[2,7,5]
    nodes = [helper.make_node("MatMul", ["w", "x"], ["y"], name="left")]
    profile = profile_onnx(save(tmp_path / "b.onnx", nodes, {"x": [2, 7, 5]}, [init("w", [4, 7])]))
    assert mkng(gemm(profile, "left")) == (10, 7, 4, 1)


def test_matmul_reads_the_weight_through_transpose_and_cast(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Transpose", ["proj.weight"], ["wt"], perm=[1, 0]),
        helper.make_node("Cast", ["wt"], ["wc"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "wc"], ["y"]),
    ]
    path = save(tmp_path / "m.onnx", nodes, {"x": [2, 3, 5, 7]}, [init("proj.weight", [4, 7])])
    layer = gemm(profile_onnx(path), "proj")
    assert mkng(layer) == (2 * 3 * 5, 7, 4, 1)
    assert (layer.weight, layer.weight_shape, layer.shared) == ("proj.weight", [4, 7], False)


def test_matmul_with_a_stack_of_weights_is_grouped(tmp_path: Path) -> None:
    # X[2,3,5,7]·W[3,7,4]: 3 weight matrices, each used by 2 batches × 5 rows
    nodes = [helper.make_node("MatMul", ["x", "experts.weight"], ["y"])]
    path = save(tmp_path / "m.onnx", nodes, {"x": [2, 3, 5, 7]}, [init("experts.weight", [3, 7, 4])])
    layer = gemm(profile_onnx(path), "experts")
    assert mkng(layer) == (10, 7, 4, 3) and layer.params == 3 * 7 * 4


def test_quantized_matmul_counts_its_int8_weight(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(RNG.integers(-8, 8, (4, 5)).astype(np.int8), "q.weight")
    nodes = [helper.make_node("MatMulInteger", ["x", "q.weight"], ["y"])]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, {"x": ([3, 4], TensorProto.UINT8)}, [weight]))
    assert mkng(gemm(profile, "q")) == (3, 4, 5, 1) and profile.total_params == 20


def test_matmul_of_two_activations(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, {"a": [2, 4, 6, 8], "b": [2, 4, 8, 6]}))
    layer = gemm(profile, "mm.matmul")
    assert mkng(layer) == (6, 8, 6, 8) and layer.weight is None and layer.params == 0 and layer.op is GemmOp.matmul


def test_attention_pattern_is_recognised(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Div", ["s", "scale"], ["z"]),
        helper.make_node("Softmax", ["z"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"], name="av"),
    ]
    scale = numpy_helper.from_array(np.array(8.0**0.5, dtype=np.float32), "scale")
    inputs = {"q": [2, 4, 6, 8], "kt": [2, 4, 8, 6], "v": [2, 4, 6, 8]}
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, inputs, [scale]))
    qk, av = gemm(profile, "qk.attention_qk"), gemm(profile, "av.attention_av")
    assert (mkng(qk), qk.depth) == ((6, 8, 6, 8), 1)
    assert (mkng(av), av.depth) == ((6, 6, 8, 8), 2)
    assert profile.total_params == 0


@pytest.mark.parametrize(
    ("equation", "a", "b", "weight", "expected"),
    [
        ("bij,jk->bik", [2, 5, 4], [4, 3], True, (10, 4, 3, 1)),
        ("bhqd,bhkd->bhqk", [2, 3, 5, 8], [2, 3, 7, 8], False, (5, 8, 7, 6)),
        ("...ij,...jk->...ik", [2, 3, 4, 5], [2, 3, 5, 6], False, (4, 5, 6, 6)),
        ("ij,jk", [4, 5], [5, 6], False, (4, 5, 6, 1)),  # implicit output "ik"
    ],
)
def test_einsum(tmp_path: Path, equation: str, a: list[int], b: list[int], weight: bool, expected: tuple) -> None:
    node = helper.make_node("Einsum", ["a", "b"], ["y"], name="e", equation=equation)
    inputs, initializers = ({"a": a}, [init("b", b)]) if weight else ({"a": a, "b": b}, [])
    layer = profile_onnx(save(tmp_path / "m.onnx", [node], inputs, initializers, opset=17)).layers[0]
    assert mkng(layer) == expected and (layer.weight == "b") is weight


def test_onnx_attention_op(tmp_path: Path) -> None:
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")
    inputs = {"q": [1, 2, 5, 8], "k": [1, 2, 7, 8], "v": [1, 2, 7, 4]}
    profile = profile_onnx(save(tmp_path / "m.onnx", [node], inputs, opset=23))
    qk, av = gemm(profile, "attn.attention_qk"), gemm(profile, "attn.attention_av")
    assert (mkng(qk), qk.depth, mkng(av), av.depth) == ((5, 8, 7, 2), 1, (5, 7, 4, 2), 2)


# --- recurrent layers ---------------------------------------------------------------------------


def test_bidirectional_lstm_per_direction_gemms_and_depth(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "pre.weight"], ["h"]),  # depth 1
        helper.make_node("LSTM", ["h", "lstm.W", "lstm.R", "lstm.B", "", "lstm.h0"], ["seq"], hidden_size=6,
                         direction="bidirectional"),  # [5, 2, 3, 6], depth 2
        helper.make_node("MatMul", ["seq", "post.weight"], ["y"]),  # depth 3
    ]
    initializers = [init("pre.weight", [4, 4]), init("lstm.W", [2, 24, 4]), init("lstm.R", [2, 24, 6]),
                    init("lstm.B", [2, 48]), init("lstm.h0", [2, 3, 6]), init("post.weight", [6, 2])]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, {"x": [5, 3, 4]}, initializers))
    names = [layer.name for layer in profile.layers]
    assert names == ["pre", "lstm.W[0]", "lstm.R[0]", "lstm.W[1]", "lstm.R[1]", "post"]
    ih, hh = gemm(profile, "lstm.W[1]"), gemm(profile, "lstm.R[1]")
    assert (mkng(ih), ih.op, ih.depth, ih.weight_shape) == ((15, 4, 24, 1), GemmOp.rnn_ih, 2, [24, 4])
    assert (mkng(hh), hh.op, hh.depth, hh.weight_shape) == ((15, 6, 24, 1), GemmOp.rnn_hh, 2, [24, 6])
    assert (mkng(gemm(profile, "post")), gemm(profile, "post").depth) == ((30, 6, 2, 1), 3)
    # the initial state is not a parameter; W, R, B are
    assert profile.total_params == 16 + 192 + 288 + 96 + 12
    assert profile.gemm_params == 16 + 192 + 288 + 12


def test_gru_batch_first_layout(tmp_path: Path) -> None:
    node = helper.make_node("GRU", ["x", "gru.W", "gru.R"], ["y"], hidden_size=6, layout=1)
    path = save(tmp_path / "m.onnx", [node], {"x": [3, 5, 4]}, [init("gru.W", [1, 18, 4]), init("gru.R", [1, 18, 6])],
                opset=14)
    profile = profile_onnx(path)
    assert [(layer.name, mkng(layer)) for layer in profile.layers] == [
        ("gru.W", (15, 4, 18, 1)), ("gru.R", (15, 6, 18, 1))
    ]


# --- sharing, depth, parameters -----------------------------------------------------------------


def test_shared_initializers(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Gather", ["emb.weight", "ids"], ["h"]),  # [2, 3, 4]
        helper.make_node("MatMul", ["h", "blk.weight"], ["h1"]),
        helper.make_node("MatMul", ["h1", "blk.weight"], ["h2"]),  # the same block applied twice
        helper.make_node("Transpose", ["emb.weight"], ["emb_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["h2", "emb_t"], ["y"]),  # tied output head
    ]
    inputs = {"ids": ([2, 3], TensorProto.INT64)}
    initializers = [init("emb.weight", [10, 4]), init("blk.weight", [4, 4])]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, inputs, initializers))
    # the Gather is a lookup (6 ids, a 10×4 table; it adds no depth), the tied head a GEMM on its table
    assert [(layer.name, layer.weight, layer.op, layer.shared, layer.depth) for layer in profile.layers] == [
        ("emb", "emb.weight", GemmOp.embedding, True, 1), ("blk", "blk.weight", GemmOp.linear, True, 1),
        ("blk#2", "blk.weight", GemmOp.linear, True, 2), ("emb#2", "emb.weight", GemmOp.linear, True, 3),
    ]
    assert mkng(gemm(profile, "emb")) == (6, 10, 4, 1) and gemm(profile, "emb").macs == 0
    assert mkng(gemm(profile, "emb#2")) == (6, 4, 10, 1)
    assert profile.total_params == 40 + 16 and profile.gemm_params == 40 + 16


def test_parallel_branches_do_not_add_depth(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "a.weight"], ["a"]),  # 1
        helper.make_node("MatMul", ["a", "b.weight"], ["b"]),  # 2
        helper.make_node("MatMul", ["a", "c.weight"], ["c"]),  # 2
        helper.make_node("MatMul", ["c", "d.weight"], ["d"]),  # 3
        helper.make_node("Add", ["b", "d"], ["s"]),
        helper.make_node("MatMul", ["s", "e.weight"], ["y"]),  # 4
    ]
    initializers = [init(f"{name}.weight", [4, 4]) for name in "abcde"]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, {"x": [3, 4]}, initializers))
    assert [(layer.name, layer.depth) for layer in profile.layers] == [("a", 1), ("b", 2), ("c", 2), ("d", 3), ("e", 4)]


def test_which_initializers_count_as_parameters(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Add", ["x", "pos"], ["h"]),  # a named parameter added to the input: counted
        helper.make_node("Reshape", ["h", "shape"], ["r"]),  # int64 shape: not a parameter
        helper.make_node("Conv", ["r", "conv.weight"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.mean", "bn.var"], ["n"]),
        helper.make_node("Add", ["n", "val_7"], ["y"]),  # an exporter's folded constant (a mask): not counted
    ]
    initializers = [init("pos", [2, 8]), init("shape", values=[2, 2, 2, 2]), init("conv.weight", [3, 2, 1, 1]),
                    init("bn.weight", [3]), init("bn.bias", [3]), init("bn.mean", [3]),
                    init("bn.var", [3]), init("val_7", [2, 3, 2, 2])]
    profile = profile_onnx(save(tmp_path / "m.onnx", nodes, {"x": [2, 8]}, initializers))
    assert profile.total_params == 16 + 6 + 3 + 3


def test_weights_in_external_data_are_never_read(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "fc.weight"], ["y"])]
    initializers = [init("shape", values=[6, 4]), init("fc.weight", [4, 64])]
    path = save(tmp_path / "m.onnx", nodes, {"x": [2, 3, 4]}, initializers)
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, location="m.data", size_threshold=64)
    (tmp_path / "m.data").unlink()  # only the 1 KB weight lived there
    assert mkng(profile_onnx(path).layers[0]) == (6, 4, 64, 1)
    # small integer constants in external data are read: shape inference needs their values
    onnx.save(model, path, save_as_external_data=True, location="all.data", size_threshold=0)
    assert mkng(profile_onnx(path).layers[0]) == (6, 4, 64, 1)
    (tmp_path / "all.data").unlink()
    with pytest.raises(OnnxError, match="initializer `shape`.*external data"):
        profile_onnx(path)


def test_shape_computations_are_folded_when_inference_cannot_see_through_them(tmp_path: Path) -> None:
    ones = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("ConstantOfShape", ["rank"], ["ones"], value=ones),  # [1, 1, 1]
        helper.make_node("Expand", ["x", "ones"], ["e"]),  # [2, 1, 4]
        helper.make_node("Tile", ["e", "repeats"], ["t"]),  # [2, 5, 4]
        helper.make_node("MatMul", ["t", "fc.weight"], ["y"]),
    ]
    path = save(tmp_path / "m.onnx", nodes, {"x": [2, 1, 4]},
                [init("rank", values=[3]), init("repeats", values=[1, 5, 1]), init("fc.weight", [4, 3])])
    inferred = onnx.shape_inference.infer_shapes(onnx.load(path), data_prop=True)
    tile = next(v for v in inferred.graph.value_info if v.name == "t")
    assert not all(d.HasField("dim_value") for d in tile.type.tensor_type.shape.dim)  # the case folding exists for
    assert mkng(profile_onnx(path).layers[0]) == (10, 4, 3, 1)


# --- input shapes and bad input -----------------------------------------------------------------


def _symbolic_conv(tmp_path: Path, shape: list | None) -> Path:
    node = helper.make_node("Conv", ["x", "conv.weight"], ["y"], pads=[1, 1, 1, 1])
    return save(tmp_path / "m.onnx", [node], {"x": shape}, [init("conv.weight", [4, 3, 3, 3])])


def test_symbolic_batch_is_resolved_by_batch_or_input_shapes(tmp_path: Path) -> None:
    path = _symbolic_conv(tmp_path, ["batch_size", 3, 8, 8])
    with pytest.raises(OnnxError, match=r"input `x`.*\(batch_size, 3, 8, 8\).*--input-shape 1x3x8x8"):
        profile_onnx(path)
    assert gemm(profile_onnx(path, batch=5), "conv").m == 5 * 64
    profile = profile_onnx(path, input_shapes=[[2, 3, 16, 16]], name="net")
    assert (gemm(profile, "conv").m, profile.batch, profile.model) == (2 * 256, 2, "net")
    with pytest.raises(OnnxError, match="--input-shape"):
        profile_onnx(_symbolic_conv(tmp_path, ["N", 3, "H", "W"]), batch=2)
    shapeless = _symbolic_conv(tmp_path, None)
    with pytest.raises(OnnxError, match="input `x` .* has shape unknown"):
        profile_onnx(shapeless, batch=2)
    assert gemm(profile_onnx(shapeless, input_shapes=[[1, 3, 4, 4]]), "conv").m == 16


def test_input_shapes_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = _symbolic_conv(tmp_path, ["N", 3, 8, 8])
    with pytest.raises(OnnxError, match="2 input shapes were given but .* has 1 input"):
        profile_onnx(path, input_shapes=[[1, 3, 8, 8], [1, 3, 8, 8]])
    with pytest.raises(OnnxError, match="rank 4 .* has rank 3"):
        profile_onnx(path, input_shapes=[[3, 8, 8]])
    with pytest.raises(OnnxError, match="at least 1"):
        profile_onnx(path, batch=0)


def test_shapes_baked_into_a_reshape_are_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "fc.weight"], ["y"])]
    initializers = [init("shape", values=[2, 16]), init("fc.weight", [16, 3])]
    path = save(tmp_path / "m.onnx", nodes, {"x": [2, 4, 4]}, initializers)
    assert gemm(profile_onnx(path), "fc").m == 2
    with pytest.raises(OnnxError, match=r"Reshape .* \(3, 4, 4\) into \(2, 16\).*baked in"):
        profile_onnx(path, batch=3)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(OnnxError, match="`.*nope.onnx` does not exist"):
        profile_onnx(tmp_path / "nope.onnx")
    with pytest.raises(OnnxError, match="is a directory"):
        profile_onnx(tmp_path)


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"this is not a model\n", b""])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxError, match="not a readable ONNX model.*re-export"):
        profile_onnx(path)


def test_custom_domain_gemms_are_reported(tmp_path: Path) -> None:
    node = helper.make_node("FusedMatMul", ["x", "w"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [init("w", [4, 4])])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.warns(UserWarning, match="com.microsoft::FusedMatMul"):
        profile = profile_onnx(tmp_path / "m.onnx")
    assert profile.layers == [] and [entry.op for entry in profile.unknown_ops] == ["com.microsoft::FusedMatMul"]


def test_gemms_inside_control_flow_are_reported(tmp_path: Path) -> None:
    then_branch = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 4])])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 4])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)
    inputs = {"cond": ([], TensorProto.BOOL), "x": [2, 4]}
    with pytest.warns(UserWarning, match="If"):
        profile = profile_onnx(save(tmp_path / "m.onnx", [node], inputs, [init("w", [4, 4])]))
    assert profile.layers == [] and [(entry.op, entry.count) for entry in profile.unknown_ops] == [("If", 1)]


def test_the_front_end_imports_without_onnx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    frontend = importlib.import_module("bitplan.frontends.onnx")

    monkeypatch.setitem(sys.modules, "onnx", None)  # any `import onnx` now fails
    try:
        importlib.reload(frontend)
        with pytest.raises(OnnxError, match="needs the `onnx` package.*pip install onnx"):
            frontend.trace(tmp_path / "m.onnx")
    finally:
        monkeypatch.undo()
        importlib.reload(frontend)


# --- torch exporter metadata --------------------------------------------------------------------


def _node_with_scope(scopes: list[str], call: str) -> onnx.NodeProto:
    node = helper.make_node("MatMul", ["x", "val_3"], ["y"])
    for key, value in (("pkg.torch.onnx.name_scopes", repr(scopes)), ("pkg.torch.onnx.fx_node", call)):
        prop = node.metadata_props.add()
        prop.key, prop.value = key, value
    return node


def test_torch_names_from_exporter_metadata() -> None:
    call = (
        "%linear_2 = call_function[target=torch.ops.aten.linear.default]"
        "(args = (%x, %p_blocks_0_fc_weight, %p_blocks_0_fc_bias))"
    )
    scope = torch_scope(_node_with_scope(["", "blocks", "blocks.0", "blocks.0.fc", "linear_2"], call))
    assert (scope.module_path, scope.leaf) == ("blocks.0.fc", "linear_2")
    assert recovered_weight_fqn(scope) == "blocks.0.fc.weight"
    assert reads_parameter(scope, "blocks.0.fc.bias") and not reads_parameter(scope, "x")
    assert rnn_weight_fqn(scope, 1, hidden=True, reverse=True) == "blocks.0.fc.weight_hh_l1_reverse"
    assert torch_scope(helper.make_node("Relu", ["x"], ["y"])) is None
    names = ("val_12", "onnx::MatMul_7", "fc.weight", "value")
    assert [is_generated_name(name) for name in names] == [True, True, False, False]


# --- parity with the PyTorch front end ----------------------------------------------------------


class Mixed(nn.Module):
    """A grouped/dilated/depthwise CNN, a transposed conv, an MLP, a 2-layer bidirectional LSTM, an einsum
    with a parameter and attention: every GEMM kind the torch exporter writes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=8)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2)
        self.fc1 = nn.Linear(6 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 12)
        self.rnn = nn.LSTM(12, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.mix = nn.Parameter(torch.randn(12, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.dw(torch.relu(self.bn(self.conv(x)))))  # [B, 6, 8, 8]
        z = self.fc2(torch.relu(self.fc1(y.flatten(1))))  # [B, 12]
        seq, _ = self.rnn(z.unsqueeze(1).expand(-1, 5, -1))  # [B, 5, 12]
        h = torch.einsum("btd,dk->btk", seq, self.mix)  # [B, 5, 8]
        q = h.view(h.shape[0], 5, 2, 4).transpose(1, 2)  # [B, 2, 5, 4]
        return F.scaled_dot_product_attention(q, q, q).sum()


def _export(model: nn.Module, inputs: tuple, path: Path, **options: object) -> Path:
    model.eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, path, **options)
    return path


def _randomized(model: nn.Module) -> nn.Module:
    """Distinct random values everywhere: exporters merge identical constants (all-ones norm weights)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-1.0, 1.0)
    return model


def _stats(layer: GemmLayer, *, weight: bool = True) -> tuple:
    return (layer.name, layer.weight if weight else None, layer.op, layer.m, layer.k, layer.n, layer.groups,
            layer.depth, layer.shared, layer.accumulation, layer.weight_frequency, layer.params, layer.macs)


def _torch_profile(model: nn.Module, inputs: tuple) -> ModelProfile:
    from bitplan.frontends.torch import trace as profile_model

    return profile_model(model, inputs)


def test_parity_with_torch_dynamo_export(tmp_path: Path) -> None:
    model, inputs = _randomized(Mixed()), (torch.randn(2, 4, 8, 8),)
    onnx_profile = profile_onnx(_export(model, inputs, tmp_path / "mixed.onnx", dynamo=True))
    torch_profile = _torch_profile(model, inputs)
    assert [_stats(layer) for layer in onnx_profile.layers] == [_stats(layer) for layer in torch_profile.layers]
    assert onnx_profile.gemm_params == torch_profile.gemm_params
    assert onnx_profile.input_shapes == torch_profile.input_shapes == [[2, 4, 8, 8]]


def test_parity_on_zoo_transformer_lm(tmp_path: Path) -> None:
    """Attention, a tied head and layer norms, through the TorchScript exporter (no torch metadata)."""
    from bitplan import zoo

    model, inputs = zoo.build("transformer_lm")
    path = _export(_randomized(model), inputs, tmp_path / "lm.onnx", dynamo=False, do_constant_folding=False)
    onnx_profile, torch_profile = profile_onnx(path), _torch_profile(model, inputs)

    # without metadata, activation GEMMs are named after ONNX nodes and the tied head after its weight
    def comparable(layer: GemmLayer) -> tuple:
        return _stats(layer)[1:] if layer.weight is None or layer.shared else _stats(layer)

    assert [comparable(layer) for layer in onnx_profile.layers] == [comparable(layer) for layer in torch_profile.layers]
    assert [layer.op for layer in onnx_profile.layers].count(GemmOp.attention_qk) == 2
    assert any(layer.shared for layer in onnx_profile.layers)
    assert onnx_profile.total_params == torch_profile.total_params


@pytest.mark.parametrize(
    ("name", "options"), [("resnet20", None), ("mobilenet_v2", {"width": "0.5", "input_size": "32"})]
)
def test_parity_on_zoo_cnns(tmp_path: Path, name: str, options: dict | None) -> None:
    """TorchScript export without constant folding keeps batch norm and every name: all numbers match."""
    from bitplan import zoo

    model, inputs = zoo.build(name, options)
    path = _export(_randomized(model), inputs, tmp_path / f"{name}.onnx", dynamo=False, do_constant_folding=False)
    onnx_profile, torch_profile = profile_onnx(path), _torch_profile(model, inputs)
    assert [_stats(layer) for layer in onnx_profile.layers] == [_stats(layer) for layer in torch_profile.layers]
    assert onnx_profile.total_params == torch_profile.total_params == sum(p.numel() for p in model.parameters())
