"""The Python shape rules (``bitplan.frontends.shapes``) against torch's own meta kernels.

Oracle: the same call run by torch on meta tensors. For every generated call, a rule either returns
what torch returns (shapes and dtypes, and the very input tensor for in-place ops) or declines
(``NOT_HANDLED``); it never returns a result where torch raises. Then whole models: a profile traced
with the rules equals one traced on the real meta kernels, for every zoo model, transformers models
and modules built to reach the rarer branches.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bitplan.frontends.moe import uniform_routing
from bitplan.frontends.shapes import NOT_HANDLED, RULES, broadcast, fake_call
from bitplan.frontends.torch_record import record_gemms
from bitplan.spec import load_model
from bitplan import zoo

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
DTYPES = (*FLOATS, torch.int64, torch.int32, torch.bool)


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def check(name: str, func, *args, expect_handled: bool = True, **kwargs) -> None:
    """The rule for ``name`` agrees with ``func`` run by torch on the same meta arguments."""
    fake = fake_call(name, args, kwargs)
    try:
        real = func(*args, **kwargs)
    except Exception:  # torch refuses the call: the rule must not invent a result
        assert fake is NOT_HANDLED, f"{name}{_describe(args, kwargs)}: torch raises, the rule returned a result"
        return
    if fake is NOT_HANDLED:
        assert not expect_handled, f"{name}{_describe(args, kwargs)} declined a call torch accepts"
        return
    assert _signature(fake) == _signature(real), f"{name}{_describe(args, kwargs)}"
    if args and real is args[0]:  # in place: the result is the input itself
        assert fake is args[0]


def _signature(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.dtype, value.device.type
    if isinstance(value, (tuple, list)):
        return tuple(_signature(v) for v in value)
    return value


def _describe(args: tuple, kwargs: dict) -> str:
    show = lambda v: f"T{tuple(v.shape)}:{str(v.dtype)[6:]}" if isinstance(v, torch.Tensor) else repr(v)
    return "(" + ", ".join([*map(show, args), *(f"{k}={show(v)}" for k, v in kwargs.items())]) + ")"


shapes = st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=4).map(tuple)


# ------------------------------------------------------------------------------ elementwise
@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(n for n in RULES if n.strip("_").removeprefix("r").removeprefix("i") in
                                {"add", "sub", "mul", "div", "truediv", "true_divide", "pow", "maximum", "minimum",
                                 "add_", "sub_", "mul_", "div_"} or n in ("__rsub__", "__rdiv__", "__rtruediv__", "__rpow__"))),
    a=shapes, b=shapes, a_dtype=st.sampled_from(DTYPES), b_dtype=st.sampled_from(DTYPES),
    scalar=st.sampled_from([None, 2, -1, 0.5, True]),
)
def test_binary_ops_follow_broadcasting_and_type_promotion(name, a, b, a_dtype, b_dtype, scalar) -> None:
    other = scalar if scalar is not None else meta(*b, dtype=b_dtype)
    check(name, getattr(torch.Tensor, name), meta(*a, dtype=a_dtype), other, expect_handled=False)


def test_binary_rules_handle_the_common_cases() -> None:
    """The cases models use every step are answered by the rules, not declined."""
    x, row = meta(2, 3, 4), meta(4)
    for name in ("__add__", "__mul__", "__sub__", "__truediv__", "add", "mul", "__radd__", "__rmul__", "__rtruediv__"):
        check(name, getattr(torch.Tensor, name), x, row)
        check(name, getattr(torch.Tensor, name), x, 2.0)
    check("__iadd__", torch.Tensor.__iadd__, meta(2, 3, 4), row)
    check("div", torch.div, meta(3, dtype=torch.int64), meta(3, dtype=torch.int64))  # true division: float


def test_outputs_keep_a_dense_layout_and_never_alias() -> None:
    """Like torch: a channels-last input gives a channels-last output, an expanded one a fresh dense one."""
    channels_last = meta(2, 3, 4, 5).to(memory_format=torch.channels_last)
    assert fake_call("relu", (channels_last,), {}).stride() == torch.relu(channels_last).stride()
    expanded = meta(3, 1).expand(3, 4)
    out = fake_call("__add__", (expanded, 1.0), {})
    assert out.is_contiguous() and out.stride() == (expanded + 1.0).stride()


def test_broadcast_matches_torch() -> None:
    assert broadcast((2, 1, 3), (4, 1)) == torch.broadcast_shapes((2, 1, 3), (4, 1))
    assert broadcast((2, 3), (3, 2)) is None
    assert broadcast() == ()


@settings(max_examples=60, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), inplace=st.booleans())
def test_unary_and_activation_ops(shape, dtype, inplace) -> None:
    x = meta(*shape, dtype=dtype)
    for name, func, kwargs in [
        ("relu", F.relu, {"inplace": inplace}), ("silu", F.silu, {"inplace": inplace}),
        ("hardtanh", F.hardtanh, {"inplace": inplace}), ("leaky_relu", F.leaky_relu, {"inplace": inplace}),
        ("dropout", F.dropout, {"inplace": inplace, "p": 0.1}), ("gelu", F.gelu, {}), ("gelu", F.gelu, {"approximate": "tanh"}),
        ("sigmoid", torch.sigmoid, {}), ("tanh", torch.tanh, {}), ("neg", torch.neg, {}), ("exp", torch.exp, {}),
        ("rsqrt", torch.rsqrt, {}), ("relu_", torch.relu_, {}), ("__neg__", torch.Tensor.__neg__, {}),
    ]:
        check(name, func, x, expect_handled=dtype in FLOATS, **kwargs)


def test_softmax_dims_and_dtype() -> None:
    x = meta(2, 5)
    check("softmax", F.softmax, x, dim=-1)
    check("log_softmax", F.log_softmax, x, dim=1, dtype=torch.float64)
    assert fake_call("softmax", (x,), {"dim": 2}) is NOT_HANDLED  # out of range: CPU raises (meta does not check)
    check("dropout", F.dropout, x, p=1.5)


@pytest.mark.parametrize("channels_given", [4, 3])
def test_normalisations_check_their_channels(channels_given) -> None:
    x = meta(2, 4, 5, 5)
    stats = [meta(channels_given) for _ in range(4)]
    check("batch_norm", F.batch_norm, x, *stats, expect_handled=channels_given == 4)
    check("batch_norm", F.batch_norm, meta(1, 4), *stats, training=True)  # one value per channel: torch raises
    check("instance_norm", F.instance_norm, x, weight=stats[2], bias=stats[3])
    check("group_norm", F.group_norm, x, 2, stats[2], stats[3], expect_handled=channels_given == 4)
    check("group_norm", F.group_norm, x, 3)  # 4 channels in 3 groups: torch raises
    check("layer_norm", F.layer_norm, x, (5, 5))
    check("layer_norm", F.layer_norm, x, (4,))
    check("rms_norm", F.rms_norm, x, [5], meta(5))


@settings(max_examples=80, deadline=None)
@given(a=shapes, b=shapes, a_dtype=st.sampled_from(DTYPES), scalar=st.sampled_from([None, 0, 1.5]))
def test_comparisons_masks_and_where(a, b, a_dtype, scalar) -> None:
    x, other = meta(*a, dtype=a_dtype), scalar if scalar is not None else meta(*b)
    for name in ("eq", "__lt__", "ge", "__ne__"):
        func = getattr(torch.Tensor, name)
        check(name, func, x, other, expect_handled=False)
    mask = meta(*b, dtype=torch.bool)
    check("masked_fill", torch.Tensor.masked_fill, x, mask, 0.5, expect_handled=False)
    check("masked_fill_", torch.Tensor.masked_fill_, meta(*a, dtype=a_dtype), mask, 0, expect_handled=False)
    check("where", torch.where, mask, x, other, expect_handled=False)
    for name, func in (("logical_not", torch.logical_not), ("__invert__", torch.Tensor.__invert__)):
        check(name, func, x, expect_handled=False)


def test_mask_rules_handle_the_common_cases() -> None:
    scores = meta(2, 4, 7, 7)
    causal = meta(7, 7, dtype=torch.bool)
    check("triu", torch.triu, meta(7, 7, dtype=torch.bool), 1)
    check("tril", torch.tril, scores)
    check("triu", torch.triu, meta(7))  # 1-D: torch raises
    check("masked_fill", torch.Tensor.masked_fill, scores, causal, float("-inf"))
    check("where", torch.where, causal, scores, 0.0)
    check("eq", torch.eq, meta(3, dtype=torch.int64), 0)
    check("logical_not", torch.logical_not, causal)
    check("__invert__", torch.Tensor.__invert__, causal)
    check("clamp", torch.clamp, scores, 0, 6)
    check("clamp", torch.clamp, scores, max=1.5)
    check("clamp_min", torch.clamp_min, scores, 1e-6)
    check("normalize", F.normalize, scores, dim=-1)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), data=st.data())
def test_flip_roll_cumsum(shape, data) -> None:
    x = meta(*shape)
    dims = data.draw(st.lists(st.integers(-3, 2), min_size=1, max_size=2))
    check("flip", torch.flip, x, dims, expect_handled=False)
    check("roll", torch.roll, x, data.draw(st.integers(-3, 3)), expect_handled=False)
    check("roll", torch.roll, x, [1] * len(dims), dims, expect_handled=False)
    check("cumsum", torch.cumsum, x, dims[0], expect_handled=False)


def test_rearranging_rules_handle_valid_calls() -> None:
    x = meta(2, 3, 4)
    check("flip", torch.flip, x, [0, -1])
    check("roll", torch.roll, x, (1, 2), (0, 2))
    check("roll", torch.roll, x, 5)
    check("cumsum", torch.cumsum, x, -1)


# ------------------------------------------------------------------------------------- GEMMs
@settings(max_examples=150, deadline=None)
@given(a=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=4), b=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=4))
def test_matmul_shapes(a, b) -> None:
    x, y = meta(*a), meta(*b)
    check("matmul", torch.matmul, x, y, expect_handled=False)
    check("__matmul__", torch.Tensor.__matmul__, x, y, expect_handled=False)
    check("mm", torch.mm, x, y, expect_handled=False)
    check("bmm", torch.bmm, x, y, expect_handled=False)


def test_matmul_rules_handle_valid_products() -> None:
    check("matmul", torch.matmul, meta(2, 1, 3, 4), meta(5, 4, 6))
    check("matmul", torch.matmul, meta(4), meta(2, 4, 6))
    check("matmul", torch.matmul, meta(2, 3, 4), meta(4))
    check("mm", torch.mm, meta(3, 4), meta(4, 5))
    check("bmm", torch.bmm, meta(2, 3, 4), meta(2, 4, 5))
    check("linear", F.linear, meta(2, 7, 4), meta(5, 4), meta(5))
    check("linear", F.linear, meta(2, 4), meta(4))
    check("linear", F.linear, meta(2, 3), meta(5, 4))  # wrong in-features: torch raises


@settings(max_examples=120, deadline=None)
@given(
    spatial=st.integers(1, 3), batched=st.booleans(), groups=st.sampled_from([1, 2]), out_per_group=st.integers(1, 2),
    size=st.integers(1, 7), kernel=st.integers(1, 3), stride=st.integers(1, 3), dilation=st.integers(1, 2),
    padding=st.sampled_from([0, 1, 2, "same", "valid"]), in_per_group=st.integers(1, 2),
)
def test_convolutions(spatial, batched, groups, out_per_group, size, kernel, stride, dilation, padding, in_per_group) -> None:
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    x = meta(*(2,) * batched, groups * in_per_group, *(size,) * spatial)
    w = meta(groups * out_per_group, in_per_group, *(kernel,) * spatial)
    check(conv.__name__, conv, x, w, None, stride, padding, dilation, groups, expect_handled=False)
    if not isinstance(padding, str):
        transposed = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[spatial - 1]
        wt = meta(groups * in_per_group, out_per_group, *(kernel,) * spatial)
        for output_padding in (0, 1):
            check(transposed.__name__, transposed, x, wt, None, stride, padding, output_padding, groups, dilation,
                  expect_handled=False)


def test_convolution_rules_handle_valid_calls() -> None:
    check("conv2d", F.conv2d, meta(2, 4, 9, 9), meta(6, 2, 3, 3), None, 2, 1, 1, 2)
    check("conv2d", F.conv2d, meta(4, 9, 9), meta(6, 4, 3, 3), padding="same")
    check("conv1d", F.conv1d, meta(1, 3, 10), meta(5, 3, 3), stride=3, dilation=2)
    check("conv_transpose2d", F.conv_transpose2d, meta(1, 4, 5, 5), meta(4, 3, 3, 3), stride=2, padding=1, output_padding=1)
    check("conv2d", F.conv2d, meta(1, 3, 9, 9), meta(6, 2, 3, 3))  # channels do not match: torch raises


def test_attention_and_embedding() -> None:
    q, k, v = meta(2, 4, 7, 8), meta(2, 4, 5, 8), meta(2, 4, 5, 6)
    check("scaled_dot_product_attention", F.scaled_dot_product_attention, q, k, v)
    check("scaled_dot_product_attention", F.scaled_dot_product_attention, q, meta(2, 4, 5, 3), v)
    check("scaled_dot_product_attention", F.scaled_dot_product_attention, meta(2, 8, 7, 8), k, v, enable_gqa=True)
    check("scaled_dot_product_attention", F.scaled_dot_product_attention, meta(2, 6, 7, 8), k, v, enable_gqa=True)
    check("embedding", F.embedding, meta(2, 7, dtype=torch.int64), meta(100, 16))
    check("embedding", F.embedding, meta(2, 7), meta(100, 16))  # float indices: torch raises


def test_addmm() -> None:
    check("addmm", torch.addmm, meta(5), meta(3, 4), meta(4, 5))
    check("addmm", torch.addmm, meta(3, 1), meta(3, 4), meta(4, 5))
    check("addmm", torch.addmm, meta(4), meta(3, 4), meta(4, 5))  # bias does not broadcast: torch raises


@settings(max_examples=80, deadline=None)
@given(shape=shapes, dim=st.sampled_from([None, 0, -1, 1, 3, (0, 1), (1, -1), (0, 0), ()]), keepdim=st.booleans(),
       dtype=st.sampled_from(DTYPES))
def test_reductions(shape, dim, keepdim, dtype) -> None:
    x = meta(*shape, dtype=dtype)
    for name in ("mean", "sum", "amax"):
        check(name, getattr(torch, name), *((x,) if dim is None else (x, dim, keepdim)), expect_handled=False)
    check("mean", torch.mean, x, -1, True, dtype=torch.float64, expect_handled=False)


def test_reductions_handle_the_common_cases() -> None:
    check("mean", torch.mean, meta(2, 3, 4), -1, True)
    check("sum", torch.sum, meta(2, 3, 4), (0, 2))
    check("mean", torch.Tensor.mean, meta(2, 3), None)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), count=st.integers(1, 3))
def test_einsum(data, count) -> None:
    letters = "abcd"
    terms = [data.draw(st.lists(st.sampled_from(letters), min_size=0, max_size=3)) for _ in range(count)]
    used = sorted({label for term in terms for label in term})
    out = data.draw(st.lists(st.sampled_from(used), unique=True)) if used else []
    size = {label: data.draw(st.integers(1, 3)) for label in letters}
    operands = [meta(*(data.draw(st.sampled_from([size[label], 1])) for label in term)) for term in terms]
    equation = ",".join("".join(term) for term in terms) + "->" + "".join(out)
    check("einsum", torch.einsum, equation, *operands, expect_handled=False)
    check("einsum", torch.einsum, equation.split("->")[0], *operands, expect_handled=False)  # implicit output


def test_einsum_and_baddbmm_handle_valid_calls() -> None:
    check("einsum", torch.einsum, "bhqd,bhkd->bhqk", meta(2, 4, 7, 8), meta(2, 4, 5, 8))
    check("einsum", torch.einsum, "...ij,jk", meta(3, 2, 4), meta(4, 5))
    check("einsum", torch.einsum, "ij,jk->ik", [meta(2, 4), meta(4, 5)])
    check("baddbmm", torch.baddbmm, meta(1, 3, 5), meta(2, 3, 4), meta(2, 4, 5))
    check("baddbmm", torch.baddbmm, meta(2, 2, 5), meta(2, 3, 4), meta(2, 4, 5))  # input does not broadcast


# ----------------------------------------------------------------------------------- pooling
@settings(max_examples=150, deadline=None)
@given(
    spatial=st.integers(1, 3), batched=st.booleans(), size=st.integers(1, 9), kernel=st.integers(1, 4),
    stride=st.sampled_from([None, 1, 2, 3]), padding=st.integers(0, 2), dilation=st.integers(1, 2), ceil_mode=st.booleans(),
)
def test_pooling(spatial, batched, size, kernel, stride, padding, dilation, ceil_mode) -> None:
    x = meta(*(2,) * batched, 3, *(size,) * spatial)
    max_pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
    avg_pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
    check(f"max_pool{spatial}d", max_pool, x, kernel, stride, padding, dilation, ceil_mode, expect_handled=False)
    check(f"max_pool{spatial}d", max_pool, x, kernel, stride, padding, dilation, ceil_mode, return_indices=True,
          expect_handled=False)
    check(f"avg_pool{spatial}d", avg_pool, x, kernel, stride, padding, ceil_mode, expect_handled=False)
    adaptive = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[spatial - 1]
    check(f"adaptive_avg_pool{spatial}d", adaptive, x, kernel)


def test_pooling_rules_handle_valid_calls() -> None:
    check("max_pool2d", F.max_pool2d, meta(1, 3, 7, 7), 3, 2, 1, ceil_mode=True)
    check("avg_pool2d", F.avg_pool2d, meta(1, 3, 7, 7), 2)
    check("avg_pool2d", F.avg_pool2d, meta(3, 1, 1), 2, ceil_mode=True)
    check("avg_pool3d", F.avg_pool3d, meta(3, 1, 1, 1), 2, None, 1, True)  # smaller than its kernel: torch raises
    check("adaptive_avg_pool2d", F.adaptive_avg_pool2d, meta(1, 3, 7, 9), (None, 2))
    check("adaptive_max_pool2d", F.adaptive_max_pool2d, meta(1, 3, 7, 9), 2, return_indices=True)


# ---------------------------------------------------------------------- joining, factories
def test_joining() -> None:
    a, b = meta(2, 3), meta(2, 5)
    check("cat", torch.cat, [a, b], dim=1)
    check("cat", torch.cat, [a, meta(0)], 0)  # a 1-D empty tensor is skipped
    check("cat", torch.cat, [a, b], 0)  # sizes differ off the cat dimension: torch raises
    check("cat", torch.cat, (a, meta(2, 3, dtype=torch.float16)), -1)
    check("stack", torch.stack, [a, a], 2)
    check("cat", torch.cat, [a, a], 2)  # no dim 2: torch raises
    check("stack", torch.stack, [a, a], -4)
    check("outer", torch.outer, meta(3), meta(4))


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), dim=st.integers(-4, 4))
def test_cat_and_stack_dims(shape, dim) -> None:
    x = meta(*shape)
    check("cat", torch.cat, [x, x], dim, expect_handled=False)
    check("stack", torch.stack, [x, x], dim, expect_handled=False)


def test_factories_on_meta() -> None:
    on_meta = {"device": "meta"}
    check("randn", torch.randn, 2, 3, **on_meta)
    check("zeros", torch.zeros, (4, 5), dtype=torch.int32, **on_meta)
    check("ones", torch.ones, size=(2,), **on_meta)
    check("full", torch.full, (2, 2), 7, **on_meta)
    check("full", torch.full, (2, 2), True, **on_meta)
    check("randint", torch.randint, 10, (3, 4), **on_meta)
    check("randint", torch.randint, 2, 10, (3,), **on_meta)
    for args in [(5,), (1, 10, 3), (0, 1, 0.25), (2.5,), (10, 0, -3)]:
        check("arange", torch.arange, *args, **on_meta)
    assert fake_call("zeros", (2,), {"device": "cpu"}) is NOT_HANDLED
    assert fake_call("randn", (2,), {"dtype": torch.int64, "device": "meta"}) is NOT_HANDLED  # CPU refuses random integers
    assert fake_call("zeros", (2, 2), {"memory_format": torch.channels_last}) is NOT_HANDLED


def test_calls_a_rule_cannot_read_are_left_to_torch() -> None:
    assert fake_call("linear", (), {"input": meta(2, 4), "weight": meta(3, 4)}) is NOT_HANDLED
    assert fake_call("conv2d", (meta(1, 3, 8, 8),), {}) is NOT_HANDLED


def test_like_factories_and_padding() -> None:
    x = meta(2, 3, 4, 5).to(memory_format=torch.channels_last)
    for name in ("zeros_like", "ones_like", "empty_like", "rand_like", "randn_like"):
        check(name, getattr(torch, name), x)
        check(name, getattr(torch, name), x, dtype=torch.float16)
    check("zeros_like", torch.zeros_like, meta(3, dtype=torch.int64))
    check("randn_like", torch.randn_like, meta(3, dtype=torch.int64))  # random integers: torch raises
    check("full_like", torch.full_like, x, 7)
    assert fake_call("empty_like", (x,), {}).stride() == torch.empty_like(x).stride()
    check("pad", F.pad, x, (1, 2))
    check("pad", F.pad, x, (1, 2, 0, 3, 1, 1), value=0.5)
    check("pad", F.pad, meta(2, 3), (1, 1, 1, 1, 1, 1))  # more pads than dims: torch raises


def test_tensors_off_meta_are_left_to_torch() -> None:
    assert fake_call("relu", (torch.zeros(2),), {}) is NOT_HANDLED
    assert fake_call("add", (meta(2), meta(2)), {"out": meta(2)}) is NOT_HANDLED


# ------------------------------------------------------------------------------ whole models
def _profiles(model: nn.Module, inputs: tuple) -> tuple[object, object]:
    model.eval()
    built = []
    parameters = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    for fake in (True, False):
        with uniform_routing(model):  # mixture-of-experts modules route as the profiler routes them
            builder = record_gemms(model, inputs, fake_shapes=fake)
        built.append(builder.build(model="m", batch=1, tracer="record", input_shapes=[], parameters=parameters))
    assert built[0].gemm_params <= built[0].total_params  # each weight once (zoo and hf models alike)
    return built[0].model_dump(), built[1].model_dump()


ZOO_SPECS = [f"zoo:{name}" for name in zoo.names()] + [
    "zoo:transformer_lm?style=llama&n_layers=1", "zoo:mobilenet_v2?width=0.5&input_size=96", "zoo:resnet50?input_size=64",
]


@pytest.mark.parametrize("spec", ZOO_SPECS)
def test_zoo_profiles_equal_the_real_meta_kernels(spec) -> None:
    loaded = load_model(spec, device="meta")
    fake, real = _profiles(loaded.model, loaded.example_inputs)
    assert fake == real


HF_SPECS = [
    "hf:bert?hidden_size=32&num_hidden_layers=1&num_attention_heads=2&intermediate_size=64&vocab_size=100&seq_len=8",
    "hf:gpt2?n_embd=32&n_layer=1&n_head=2&vocab_size=100&seq_len=8",
    "hf:llama?hidden_size=32&num_hidden_layers=1&num_attention_heads=4&num_key_value_heads=2&intermediate_size=64&vocab_size=100&seq_len=8",
    "hf:t5?d_model=32&d_kv=8&d_ff=64&num_layers=1&num_decoder_layers=1&num_heads=4&vocab_size=100&seq_len=8",
    "hf:mistral?hidden_size=32&num_hidden_layers=1&num_attention_heads=4&num_key_value_heads=2&intermediate_size=64&vocab_size=100&seq_len=8",
    "hf:opt?hidden_size=32&num_hidden_layers=1&num_attention_heads=2&ffn_dim=64&vocab_size=100&seq_len=8&word_embed_proj_dim=32",
    "hf:qwen2_moe?hidden_size=32&intermediate_size=48&moe_intermediate_size=24&shared_expert_intermediate_size=40"
    "&num_hidden_layers=1&num_attention_heads=4&num_key_value_heads=2&num_experts=4&num_experts_per_tok=2&vocab_size=100&seq_len=8",
]


@pytest.mark.parametrize("spec", HF_SPECS)
def test_transformers_profiles_equal_the_real_meta_kernels(spec) -> None:
    pytest.importorskip("transformers", reason="the hf: specs need transformers")
    loaded = load_model(spec, device="meta")
    fake, real = _profiles(loaded.model, loaded.example_inputs)
    assert fake == real


class _Rarer(nn.Module):
    """Reaches the rules models rarely use: RNN variants, transposed conv, ceil-mode and adaptive pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.instance = nn.InstanceNorm2d(4, affine=True)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.lstm = nn.LSTM(4 * 4, 6, num_layers=2, bidirectional=True, batch_first=True, proj_size=3)
        self.gru = nn.GRU(6, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.instance(self.norm(F.relu(self.up(x)))))  # [B, 4, 8, 8] -> [B, 4, 4, 4]
        x = F.adaptive_avg_pool2d(x, (4, None)).flatten(2)  # [B, 4, 16]
        x, _ = self.lstm(x)  # [B, 4, 6]
        x, _ = self.gru(x.transpose(0, 1))  # [4, B, 5]
        return self.head(x).softmax(dim=-1)


def test_rarer_layers_profile_equal_the_real_meta_kernels() -> None:
    with torch.device("meta"):
        model = _Rarer()
    fake, real = _profiles(model, (meta(2, 3, 4, 4),))
    assert fake == real
    assert len(fake["layers"]) == 1 + 2 * 2 * 3 + 2 + 1  # conv-transpose, LSTM ih/hh/hr ×2 layers ×2 directions, GRU, head


class _CausalAttention(nn.Module):
    """Attention written out by hand, as many research models do: masks, einsum, a learned position table."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.embed, self.qkv, self.out = heads, nn.Embedding(50, dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.position = nn.Parameter(torch.zeros(1, 12, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[:, : ids.shape[1]]  # [B, T, D]
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * (dim // self.heads) ** -0.5
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=ids.device), 1)
        weights = scores.masked_fill(causal, float("-inf")).softmax(-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, length, dim))


class _Mixer(nn.Module):
    """MLP-Mixer: patches by a strided conv, token mixing through transposes, a class token by cat."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, 8, stride=8)
        self.token_norm, self.tokens = nn.LayerNorm(dim), nn.Linear(16, 16)
        self.channel_norm = nn.LayerNorm(dim)
        self.channels = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))
        self.cls, self.head = nn.Parameter(torch.zeros(1, 1, dim)), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patches(x).flatten(2).transpose(1, 2)  # [B, 16, D]
        x = x + self.tokens(self.token_norm(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.channels(self.channel_norm(x))
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), F.pad(x, (0, 0, 0, 0))], dim=1)
        return self.head(x.mean(dim=1))


@pytest.mark.parametrize(
    "make", [lambda: (_CausalAttention(), meta(2, 12, dtype=torch.int64)), lambda: (_Mixer(), meta(2, 3, 32, 32))],
    ids=["hand-written attention", "mlp-mixer"],
)
def test_hand_written_models_profile_equal_the_real_meta_kernels(make) -> None:
    with torch.device("meta"):
        model, x = make()
    fake, real = _profiles(model, (x,))
    assert fake == real and fake["layers"]
