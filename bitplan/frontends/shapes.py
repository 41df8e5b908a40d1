"""Output shapes of common torch calls, computed in Python, so tracing on meta runs no meta kernel.

Why: on the meta device most ops (``add``, ``relu``, ``conv2d``, ``batch_norm``, ``randn``, ...) run
torch's Python reference kernels, which import ``torch._dynamo`` and sympy on first use — about
1.2 s of a 2-core machine, more than the whole profile. The recorder and the meta model builder ask
``fake_call`` first: for the ops below it returns fresh meta tensors of the right shape and dtype,
made with ``torch.empty_strided`` (a C++ kernel); for anything else it returns ``NOT_HANDLED`` and
the caller runs the real meta kernel. The rules follow torch's own shape functions (broadcasting,
type promotion, convolution and pooling sizes); ``tests/test_shapes.py`` checks each one against the
real meta kernels, and every zoo model's profile against a trace that runs them.

Strides are contiguous, or those of an input of the output's shape (elementwise ops), so a model
that relies on an unusual memory layout may fail here: the recorder then traces again without
this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from bitplan.frontends.ops import conv_output_shape

NOT_HANDLED = object()

Rule = Callable[[Sequence[object], dict], object]
RULES: dict[str, Rule] = {}


def fake_call(name: str, args: Sequence[object], kwargs: dict) -> object:
    """The result of calling the torch function ``name`` on meta tensors, or ``NOT_HANDLED``.

    Only calls whose tensor arguments are all on the meta device, without ``out=``, are handled;
    a call whose arguments a rule cannot read (``F.linear(input=x, weight=w)``) is left to torch.
    """
    rule = RULES.get(name)
    if rule is None or "out" in kwargs:
        return NOT_HANDLED
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    tensors += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
    if any(t.device.type != "meta" for t in tensors):
        return NOT_HANDLED
    try:
        return rule(args, kwargs)
    except (IndexError, KeyError, TypeError, AttributeError, ValueError):  # a call spelled as no rule reads it
        return NOT_HANDLED


def _rule(*names: str) -> Callable[[Rule], Rule]:
    def register(rule: Rule) -> Rule:
        for name in names:
            RULES[name] = rule
        return rule

    return register


def _arg(args: Sequence[object], kwargs: dict, index: int, name: str, default: object = None) -> object:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _empty(shape: Sequence[int], dtype: torch.dtype, like: torch.Tensor | None = None) -> torch.Tensor:
    """A meta tensor of ``shape``; with ``like``'s strides when it has that shape and is dense
    (elementwise outputs keep a permuted or channels-last layout, as torch's do)."""
    shape = tuple(int(s) for s in shape)
    if like is not None and tuple(like.shape) == shape and _dense(like):
        return torch.empty_strided(shape, like.stride(), dtype=dtype, device="meta")
    return torch.empty(shape, dtype=dtype, device="meta")


def _dense(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s elements fill its memory exactly once, in some order of its dims (not expanded)."""
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda pair: pair[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _shape(value: object) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy broadcasting of ``shapes``; None when they do not broadcast (the real kernel then raises)."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, start=rank - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    return None
                out[i] = size
    return tuple(out)


# ----------------------------------------------------------------------------------- elementwise
# In-place flag of functionals that take one: its position among the arguments.
_INPLACE_POSITION = {
    "relu": 1, "relu6": 1, "silu": 1, "mish": 1, "hardswish": 1, "hardsigmoid": 1, "selu": 1,
    "elu": 2, "celu": 2, "leaky_relu": 2, "hardtanh": 3, "dropout": 3, "alpha_dropout": 3,
    "feature_alpha_dropout": 3,
}
_UNARY = (
    "sigmoid", "tanh", "softplus", "neg", "__neg__", "negative", "exp", "log", "sqrt", "rsqrt", "abs",
    "sin", "cos", "erf", "reciprocal", "square", "logsigmoid", "tanhshrink",
)
_UNARY_INPLACE = ("relu_", "neg_", "exp_", "sigmoid_", "tanh_", "sqrt_", "rsqrt_", "abs_")


def _same_as_input(args: Sequence[object], kwargs: dict, inplace: bool = False) -> object:
    """An elementwise op of a floating-point input (integer inputs may change dtype: left to torch)."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        return NOT_HANDLED
    return x if inplace else _empty(x.shape, x.dtype, x)


def _with_inplace_flag(name: str, position: int) -> Rule:
    def rule(args: Sequence[object], kwargs: dict) -> object:
        if "dropout" in name and not 0 <= _arg(args, kwargs, 1, "p", 0.5) <= 1:
            return NOT_HANDLED  # torch refuses a probability outside [0, 1]
        return _same_as_input(args, kwargs, bool(_arg(args, kwargs, position, "inplace", False)))

    return rule


@_rule("gelu")
def _gelu(args: Sequence[object], kwargs: dict) -> object:
    known = _arg(args, kwargs, 1, "approximate", "none") in ("none", "tanh")
    return _same_as_input(args, kwargs) if known else NOT_HANDLED


RULES.update({name: _same_as_input for name in _UNARY})
RULES.update({name: _with_inplace_flag(name, position) for name, position in _INPLACE_POSITION.items()})
RULES.update({name: (lambda args, kwargs: _same_as_input(args, kwargs, inplace=True)) for name in _UNARY_INPLACE})


@_rule("softmax", "log_softmax")
def _softmax(args: Sequence[object], kwargs: dict) -> object:
    """softmax(input, dim, dtype=None): the input's shape, in ``dtype`` when one is given."""
    dim = _arg(args, kwargs, 1, "dim")
    if len(args) > 2 or type(dim) is not int:  # F.softmax and torch.softmax place dtype differently
        return NOT_HANDLED
    if not -max(args[0].dim(), 1) <= dim < max(args[0].dim(), 1):
        return NOT_HANDLED
    out = _same_as_input(args, kwargs)
    dtype = kwargs.get("dtype")
    return out if dtype is None or out is NOT_HANDLED else _empty(out.shape, dtype, out)


def _channels_match(x: torch.Tensor, *per_channel: object) -> bool:
    """Every per-channel tensor given (running stats, affine weight) has one value per channel x.shape[1]."""
    return x.dim() >= 2 and all(t is None or (isinstance(t, torch.Tensor) and t.numel() == x.shape[1]) for t in per_channel)


def _statistics_norm(instance: bool) -> Rule:
    """batch_norm / instance_norm(input, four per-channel tensors in either order, training or
    use_input_stats, ...): the input's shape."""

    def rule(args: Sequence[object], kwargs: dict) -> object:
        x = args[0]
        keys = ("running_mean", "running_var", "weight", "bias")
        if not _channels_match(x, *(_arg(args, kwargs, i, key) for i, key in enumerate(keys, 1))):
            return NOT_HANDLED
        # batch statistics need more than one value per channel
        per_channel = math.prod(x.shape[2:]) * (1 if instance else x.shape[0])
        if _arg(args, kwargs, 5, "use_input_stats" if instance else "training", instance) and per_channel <= 1:
            return NOT_HANDLED
        return _same_as_input(args, kwargs)

    return rule


RULES.update({"batch_norm": _statistics_norm(instance=False), "instance_norm": _statistics_norm(instance=True)})


@_rule("group_norm")
def _group_norm(args: Sequence[object], kwargs: dict) -> object:
    """group_norm(input, num_groups, weight, bias, eps): channels split evenly into groups."""
    x, groups = args[0], int(_arg(args, kwargs, 1, "num_groups"))
    ok = _channels_match(x, _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")) and x.shape[1] % groups == 0
    return _same_as_input(args, kwargs) if ok else NOT_HANDLED


@_rule("layer_norm", "rms_norm")
def _layer_norm(args: Sequence[object], kwargs: dict) -> object:
    """layer_norm / rms_norm(input, normalized_shape, weight, ...): the last dims are normalized_shape."""
    x, normalized = args[0], _arg(args, kwargs, 1, "normalized_shape")
    normalized = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    weight = _arg(args, kwargs, 2, "weight")
    ok = tuple(x.shape[x.dim() - len(normalized):]) == normalized and (weight is None or tuple(weight.shape) == normalized)
    return _same_as_input(args, kwargs) if ok and x.dim() >= len(normalized) else NOT_HANDLED


_BINARY = {
    # name: (swap operands for promotion, true division, in place)
    "add": (False, False, False), "__add__": (False, False, False), "__radd__": (True, False, False),
    "sub": (False, False, False), "__sub__": (False, False, False), "__rsub__": (True, False, False),
    "mul": (False, False, False), "__mul__": (False, False, False), "__rmul__": (True, False, False),
    "div": (False, True, False), "true_divide": (False, True, False), "__truediv__": (False, True, False),
    "__rtruediv__": (True, True, False), "__div__": (False, True, False), "__rdiv__": (True, True, False),
    "pow": (False, False, False), "__pow__": (False, False, False), "__rpow__": (True, False, False),
    "maximum": (False, False, False), "minimum": (False, False, False),
    "add_": (False, False, True), "__iadd__": (False, False, True), "sub_": (False, False, True),
    "__isub__": (False, False, True), "mul_": (False, False, True), "__imul__": (False, False, True),
    "div_": (False, True, True), "__itruediv__": (False, True, True),
}


def _defined(name: str, dtype: torch.dtype, other: object) -> bool:
    """Whether torch defines the op for these operands (it refuses bool subtraction, integer powers
    with a negative integer exponent, and a scalar operand of maximum/minimum)."""
    if dtype == torch.bool and "sub" in name:
        return False
    if "pow" in name and not dtype.is_floating_point and type(other) is int and other < 0:
        return False
    return isinstance(other, torch.Tensor) or name not in ("maximum", "minimum")


def _binary_rule(name: str, swap: bool, true_division: bool, inplace: bool) -> Rule:
    def rule(args: Sequence[object], kwargs: dict) -> object:
        if len(args) != 2 or kwargs:  # alpha=, rounding_mode=, keyword operands: left to torch
            return NOT_HANDLED
        a, b = args
        if not isinstance(a, torch.Tensor) or not isinstance(b, (torch.Tensor, bool, int, float)):
            return NOT_HANDLED
        shape = broadcast(_shape(a), _shape(b))
        if shape is None:
            return NOT_HANDLED
        dtype = torch.result_type(*((b, a) if swap else (a, b)))
        if true_division and not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.get_default_dtype()
        if not _defined(name, dtype, b):
            return NOT_HANDLED
        if inplace:
            fits = tuple(a.shape) == shape and torch.can_cast(dtype, a.dtype)
            return a if fits else NOT_HANDLED
        like = next((v for v in (a, b) if isinstance(v, torch.Tensor) and tuple(v.shape) == shape), None)
        return _empty(shape, dtype, like)

    return rule


RULES.update({name: _binary_rule(name, *flags) for name, flags in _BINARY.items()})


# ------------------------------------------------------------------------------------------ GEMMs
# Each rule checks the operands agree, so a wrong input shape still raises (from the real kernel).
@_rule("linear")
def _linear(args: Sequence[object], kwargs: dict) -> object:
    """F.linear(x[..., in], W[out, in] or [in]) → [..., out] (or [...] for a 1-D weight)."""
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    if x.dim() == 0 or w.dim() not in (1, 2) or x.shape[-1] != w.shape[-1]:
        return NOT_HANDLED
    return _empty((*x.shape[:-1], *w.shape[:-1]), x.dtype)


@_rule("matmul", "__matmul__")
def _matmul(args: Sequence[object], kwargs: dict) -> object:
    """torch.matmul's shape rule: 1-D operands gain and lose a dimension, batch dims broadcast.

    ``mm`` and ``bmm`` are matmul restricted to 2-D and to 3-D operands of one batch size.
    """
    a, b = args[0], _arg(args, kwargs, 1, "other", kwargs.get("mat2"))
    if not isinstance(b, torch.Tensor) or a.dim() == 0 or b.dim() == 0 or a.dtype != b.dtype:
        return NOT_HANDLED
    a_shape = (1, *a.shape) if a.dim() == 1 else tuple(a.shape)
    b_shape = (*b.shape, 1) if b.dim() == 1 else tuple(b.shape)
    batch = broadcast(a_shape[:-2], b_shape[:-2])
    if batch is None or a_shape[-1] != b_shape[-2]:
        return NOT_HANDLED
    shape = (*batch, *a_shape[-2:-1] * (a.dim() > 1), *b_shape[-1:] * (b.dim() > 1))
    return _empty(shape, a.dtype)


def _restricted(rank: int) -> Rule:
    def rule(args: Sequence[object], kwargs: dict) -> object:
        a, b = args[0], _arg(args, kwargs, 1, "mat2")
        if not isinstance(b, torch.Tensor) or a.dim() != rank or b.dim() != rank or a.shape[:-2] != b.shape[:-2]:
            return NOT_HANDLED
        return _matmul(args, kwargs)

    return rule


RULES.update({"mm": _restricted(2), "bmm": _restricted(3)})


@_rule("addmm")
def _addmm(args: Sequence[object], kwargs: dict) -> object:
    """addmm(bias, a[m, k], b[k, n]) → [m, n]; the bias must broadcast to it (GPT-2's Conv1D)."""
    bias, a, b = args[0], _arg(args, kwargs, 1, "mat1"), _arg(args, kwargs, 2, "mat2")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return NOT_HANDLED
    out = (a.shape[0], b.shape[1])
    return _empty(out, a.dtype) if broadcast(_shape(bias), out) == out else NOT_HANDLED


def _conv_spatial(
    x: torch.Tensor, w: torch.Tensor, in_channels: int, stride, padding, dilation, **transpose_options
) -> list[int] | None:
    """Output spatial sizes of a convolution, or None when the operands or options do not fit."""
    spatial = w.dim() - 2
    if spatial < 1 or x.dim() not in (spatial + 1, spatial + 2) or x.shape[x.dim() - spatial - 1] != in_channels:
        return None
    if isinstance(padding, str) and (padding not in ("same", "valid") or transpose_options or any(s != 1 for s in _per_dim(stride, spatial))):
        return None
    sizes = list(conv_output_shape(x.shape, w.shape, stride, padding, dilation, **transpose_options))
    return sizes if min(sizes) >= 1 else None


@_rule("conv1d", "conv2d", "conv3d")
def _conv(args: Sequence[object], kwargs: dict) -> object:
    """conv{n}d(input[(N,) C, *S], weight[C_out, C/g, *k], bias, stride, padding, dilation, groups)."""
    x, w = args[0], args[1]
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    spatial = _conv_spatial(
        x, w, w.shape[1] * groups, _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 4, "padding", 0),
        _arg(args, kwargs, 5, "dilation", 1),
    )
    if spatial is None or w.shape[0] % groups:
        return NOT_HANDLED
    return _empty((*x.shape[: x.dim() - len(spatial) - 1], w.shape[0], *spatial), x.dtype)


@_rule("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def _conv_transpose(args: Sequence[object], kwargs: dict) -> object:
    """conv_transpose{n}d(input, weight[C_in, C_out/g, *k], bias, stride, padding, output_padding, groups, dilation)."""
    x, w = args[0], args[1]
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    spatial = _conv_spatial(
        x, w, w.shape[0], _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 4, "padding", 0),
        _arg(args, kwargs, 7, "dilation", 1), transposed=True, output_padding=_arg(args, kwargs, 5, "output_padding", 0),
    )
    if spatial is None or w.shape[0] % groups or not _output_padding_fits(args, kwargs, len(spatial)):
        return NOT_HANDLED
    return _empty((*x.shape[: x.dim() - len(spatial) - 1], w.shape[1] * groups, *spatial), x.dtype)


def _output_padding_fits(args: Sequence[object], kwargs: dict, spatial: int) -> bool:
    """torch requires output_padding < stride or < dilation in every dimension."""
    stride, dilation, padding = (
        _per_dim(_arg(args, kwargs, i, key, default), spatial)
        for i, key, default in ((3, "stride", 1), (7, "dilation", 1), (5, "output_padding", 0))
    )
    return all(p < s or p < d for p, s, d in zip(padding, stride, dilation))


@_rule("scaled_dot_product_attention")
def _attention(args: Sequence[object], kwargs: dict) -> object:
    """SDPA(q[..., L, E], k[..., S, E], v[..., S, Ev]) → [..., L, Ev].

    With ``enable_gqa`` the query heads (dim −3) are a multiple of the key/value heads, which repeat.
    """
    q, k, v = args[0], _arg(args, kwargs, 1, "key"), _arg(args, kwargs, 2, "value")
    if min(q.dim(), k.dim(), v.dim()) < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        return NOT_HANDLED
    if _arg(args, kwargs, 7, "enable_gqa", False):
        if min(q.dim(), k.dim(), v.dim()) < 3 or k.shape[-3] != v.shape[-3] or q.shape[-3] % k.shape[-3]:
            return NOT_HANDLED
        batch = broadcast(q.shape[:-3], k.shape[:-3], v.shape[:-3])
        batch = None if batch is None else (*batch, q.shape[-3])
    else:
        batch = broadcast(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return NOT_HANDLED if batch is None else _empty((*batch, q.shape[-2], v.shape[-1]), q.dtype)


@_rule("embedding")
def _embedding(args: Sequence[object], kwargs: dict) -> object:
    """F.embedding(indices[...], weight[num, dim]) → [..., dim] in the weight's dtype."""
    indices, weight = args[0], _arg(args, kwargs, 1, "weight")
    if indices.dtype not in (torch.int32, torch.int64) or weight.dim() != 2:
        return NOT_HANDLED
    return _empty((*indices.shape, weight.shape[-1]), weight.dtype)


@_rule("lstm", "gru", "rnn_tanh", "rnn_relu")
def _recurrent(args: Sequence[object], kwargs: dict) -> object:
    """_VF.lstm/gru/rnn(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
    batch_first) → (output[..., D·H_out], *hidden states shaped as hx); packed sequences are left to torch."""
    if len(args) != 9 or not isinstance(args[3], bool) or not isinstance(args[2], (list, tuple)) or not args[2]:
        return NOT_HANDLED
    x, hx, params, bidirectional = args[0], args[1], args[2], args[7]
    hidden = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    if x.dim() not in (2, 3) or x.shape[-1] != params[0].shape[-1] or not all(isinstance(h, torch.Tensor) for h in hidden):
        return NOT_HANDLED
    output = _empty((*x.shape[:-1], (2 if bidirectional else 1) * hidden[0].shape[-1]), x.dtype)
    return (output, *(_empty(h.shape, h.dtype) for h in hidden))


# ------------------------------------------------------------------------------------ pooling
def _per_dim(value: object, spatial: int) -> list[int]:
    values = [value] if isinstance(value, int) else list(value)
    return values * spatial if len(values) == 1 else values


def _pooled(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: floor (or ceil) division, and no window starting in the padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_rule(spatial: int, has_dilation: bool) -> Rule:
    """max_pool{n}d(input, kernel, stride, padding, dilation, ceil_mode, return_indices) and
    avg_pool{n}d(input, kernel, stride, padding, ceil_mode, ...)."""

    def rule(args: Sequence[object], kwargs: dict) -> object:
        x = args[0]
        kernel = _per_dim(_arg(args, kwargs, 1, "kernel_size"), spatial)
        stride = _arg(args, kwargs, 2, "stride") or kernel
        stride = _per_dim(stride, spatial)
        padding = _per_dim(_arg(args, kwargs, 3, "padding", 0), spatial)
        dilation = _per_dim(_arg(args, kwargs, 4, "dilation", 1), spatial) if has_dilation else [1] * spatial
        ceil_mode = bool(_arg(args, kwargs, 5 if has_dilation else 4, "ceil_mode", False))
        if x.dim() not in (spatial + 1, spatial + 2) or any(2 * p > k for p, k in zip(padding, kernel)):
            return NOT_HANDLED
        sizes = [
            _pooled(x.shape[x.dim() - spatial + i], kernel[i], padding[i], stride[i], dilation[i], ceil_mode)
            for i in range(spatial)
        ]
        if min(sizes) < 1:
            return NOT_HANDLED
        return _pool_output(x, sizes, has_dilation and _arg(args, kwargs, 6, "return_indices", False))

    return rule


def _adaptive_rule(spatial: int, has_indices: bool) -> Rule:
    """adaptive_{avg,max}_pool{n}d(input, output_size[, return_indices]); None keeps the input's size."""

    def rule(args: Sequence[object], kwargs: dict) -> object:
        x = args[0]
        sizes = _per_dim(_arg(args, kwargs, 1, "output_size"), spatial)
        sizes = [x.shape[x.dim() - spatial + i] if s is None else s for i, s in enumerate(sizes)]
        if x.dim() not in (spatial + 1, spatial + 2):
            return NOT_HANDLED
        return _pool_output(x, sizes, has_indices and _arg(args, kwargs, 2, "return_indices", False))

    return rule


def _pool_output(x: torch.Tensor, sizes: list[int], with_indices: bool) -> object:
    """x's leading dims, then the pooled sizes; max pooling may also return int64 indices of that shape."""
    out = _empty((*x.shape[: x.dim() - len(sizes)], *sizes), x.dtype)
    return (out, _empty(out.shape, torch.int64)) if with_indices else out


for _n in (1, 2, 3):
    RULES[f"max_pool{_n}d"] = _pool_rule(_n, has_dilation=True)
    RULES[f"avg_pool{_n}d"] = _pool_rule(_n, has_dilation=False)
    RULES[f"adaptive_avg_pool{_n}d"] = _adaptive_rule(_n, has_indices=False)
    RULES[f"adaptive_max_pool{_n}d"] = _adaptive_rule(_n, has_indices=True)


# ---------------------------------------------------------------------------------- reductions
@_rule("mean", "sum", "amax", "amin")
def _reduction(args: Sequence[object], kwargs: dict) -> object:
    """mean/sum/amax/amin(input, dim=None, keepdim=False) of a floating input (``dtype=`` honoured)."""
    x = args[0]
    dim, keepdim = _arg(args, kwargs, 1, "dim"), bool(_arg(args, kwargs, 2, "keepdim", False))
    if not x.dtype.is_floating_point or set(kwargs) - {"dim", "keepdim", "dtype"}:
        return NOT_HANDLED
    rank = max(x.dim(), 1)
    dims = range(x.dim()) if dim is None or dim == [] or dim == () else [dim] if type(dim) is int else list(dim)
    if not all(type(d) is int and -rank <= d < rank for d in dims):
        return NOT_HANDLED
    reduced = {d % rank for d in dims}
    if len(reduced) != len(list(dims)):
        return NOT_HANDLED  # a dimension named twice: torch raises
    shape = [1 if i in reduced else size for i, size in enumerate(x.shape) if keepdim or i not in reduced]
    return _empty(shape, kwargs.get("dtype") or x.dtype)


# ------------------------------------------------------------------------------------- joining
@_rule("cat", "concat", "concatenate")
def _cat(args: Sequence[object], kwargs: dict) -> object:
    """cat(tensors, dim): sizes add along ``dim``; 1-D empty tensors are skipped, as torch does."""
    tensors = [t for t in _arg(args, kwargs, 0, "tensors") if not (t.dim() == 1 and t.shape[0] == 0)]
    if not tensors:
        return NOT_HANDLED
    rank = tensors[0].dim()
    dim = int(_arg(args, kwargs, 1, "dim", kwargs.get("axis", 0))) % max(rank, 1)
    if any(t.dim() != rank or t.shape[:dim] != tensors[0].shape[:dim] or t.shape[dim + 1 :] != tensors[0].shape[dim + 1 :] for t in tensors):
        return NOT_HANDLED
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _empty(shape, _promoted(tensors))


@_rule("stack")
def _stack(args: Sequence[object], kwargs: dict) -> object:
    """stack(tensors, dim): a new dimension of size len(tensors) at ``dim``."""
    tensors = list(_arg(args, kwargs, 0, "tensors"))
    if not tensors or any(t.shape != tensors[0].shape for t in tensors):
        return NOT_HANDLED
    shape = list(tensors[0].shape)
    shape.insert(int(_arg(args, kwargs, 1, "dim", 0)) % (len(shape) + 1), len(tensors))
    return _empty(shape, _promoted(tensors))


def _promoted(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


@_rule("outer", "ger")
def _outer(args: Sequence[object], kwargs: dict) -> object:
    a, b = args[0], _arg(args, kwargs, 1, "vec2")
    if a.dim() != 1 or b.dim() != 1:
        return NOT_HANDLED
    return _empty((a.shape[0], b.shape[0]), torch.promote_types(a.dtype, b.dtype))


# ----------------------------------------------------------------------------------- factories
_FACTORY_OPTIONS = frozenset({"dtype", "device", "layout", "requires_grad", "generator", "pin_memory", "size"})


def _made(size: object, kwargs: dict, dtype: torch.dtype) -> object:
    """The tensor a factory makes on meta, or NOT_HANDLED for options or devices left to torch."""
    if not _FACTORY_OPTIONS.issuperset(kwargs) or kwargs.get("layout") not in (None, torch.strided) or kwargs.get("pin_memory"):
        return NOT_HANDLED
    device = kwargs.get("device")
    if device is not None and torch.device(device).type != "meta":  # the builder asks under torch.device("meta")
        return NOT_HANDLED
    size = tuple(size)
    if not all(type(s) is int and s >= 0 for s in size):
        return NOT_HANDLED
    return _empty(size, kwargs.get("dtype") or dtype).requires_grad_(bool(kwargs.get("requires_grad")))


def _size_from(args: Sequence[object], kwargs: dict) -> object:
    """A factory's size: ``f(2, 3)``, ``f((2, 3))`` or ``f(size=(2, 3))``."""
    if "size" in kwargs:
        return kwargs["size"]
    return args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args


@_rule("randn", "rand", "zeros", "ones", "empty")
def _filled(args: Sequence[object], kwargs: dict) -> object:
    return _made(_size_from(args, kwargs), {k: v for k, v in kwargs.items() if k != "size"}, torch.get_default_dtype())


@_rule("randint")
def _randint(args: Sequence[object], kwargs: dict) -> object:
    """randint(high, size) or randint(low, high, size): int64 unless ``dtype`` says otherwise."""
    bounds = [a for a in args if type(a) is int]
    rest = args[len(bounds):]
    size = kwargs.get("size", rest[0] if len(rest) == 1 else None)
    if size is None or not 1 <= len(bounds) + ("high" in kwargs) + ("low" in kwargs) <= 2:
        return NOT_HANDLED
    return _made(size, {k: v for k, v in kwargs.items() if k not in ("size", "low", "high")}, torch.int64)


@_rule("full")
def _full(args: Sequence[object], kwargs: dict) -> object:
    """full(size, fill_value): the fill value's type decides the dtype (bool, int64 or the default)."""
    size, fill = _arg(args, kwargs, 0, "size"), _arg(args, kwargs, 1, "fill_value")
    if not isinstance(fill, (bool, int, float)) or size is None:
        return NOT_HANDLED
    dtype = torch.bool if isinstance(fill, bool) else torch.int64 if isinstance(fill, int) else torch.get_default_dtype()
    return _made(size, {k: v for k, v in kwargs.items() if k not in ("size", "fill_value")}, dtype)


@_rule("arange")
def _arange(args: Sequence[object], kwargs: dict) -> object:
    """arange(end) or arange(start, end[, step]), positional: ceil((end − start) / step) values."""
    if not 1 <= len(args) <= 3 or not all(type(v) in (int, float) for v in args):
        return NOT_HANDLED
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
    if step == 0 or (end - start) * step < 0:
        return NOT_HANDLED
    dtype = torch.int64 if all(type(v) is int for v in args) else torch.get_default_dtype()
    return _made((math.ceil((end - start) / step),), kwargs, dtype)
