"""Layers: GEMMs (linear, matmul, convolutions, attention, embedding, RNNs), normalizations, pooling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bitplan.frontends.ops import conv_output_shape, parse_equation
from bitplan.frontends.shapes.elementwise import same_as_input
from bitplan.frontends.shapes.registry import NOT_HANDLED, RULES, Rule, arg, broadcast, empty, per_dim, rule, shape_of


def _channels_match(x: torch.Tensor, *per_channel: object) -> bool:
    """Every per-channel tensor given (running stats, affine weight) has one value per channel x.shape[1]."""
    return x.dim() >= 2 and all(t is None or (isinstance(t, torch.Tensor) and t.numel() == x.shape[1]) for t in per_channel)


def _statistics_norm(instance: bool) -> Rule:
    """batch_norm / instance_norm(input, four per-channel tensors in either order, training or
    use_input_stats, ...): the input's shape."""

    def rule(args: Sequence[object], kwargs: dict) -> object:
        x = args[0]
        keys = ("running_mean", "running_var", "weight", "bias")
        if not _channels_match(x, *(arg(args, kwargs, i, key) for i, key in enumerate(keys, 1))):
            return NOT_HANDLED
        # batch statistics need more than one value per channel
        per_channel = math.prod(x.shape[2:]) * (1 if instance else x.shape[0])
        if arg(args, kwargs, 5, "use_input_stats" if instance else "training", instance) and per_channel <= 1:
            return NOT_HANDLED
        return same_as_input(args, kwargs)

    return rule


RULES.update({"batch_norm": _statistics_norm(instance=False), "instance_norm": _statistics_norm(instance=True)})


@rule("group_norm")
def _group_norm(args: Sequence[object], kwargs: dict) -> object:
    """group_norm(input, num_groups, weight, bias, eps): channels split evenly into groups."""
    x, groups = args[0], int(arg(args, kwargs, 1, "num_groups"))
    ok = _channels_match(x, arg(args, kwargs, 2, "weight"), arg(args, kwargs, 3, "bias")) and x.shape[1] % groups == 0
    return same_as_input(args, kwargs) if ok else NOT_HANDLED


@rule("layer_norm", "rms_norm")
def _layer_norm(args: Sequence[object], kwargs: dict) -> object:
    """layer_norm / rms_norm(input, normalized_shape, weight, ...): the last dims are normalized_shape."""
    x, normalized = args[0], arg(args, kwargs, 1, "normalized_shape")
    normalized = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    weight = arg(args, kwargs, 2, "weight")
    ok = tuple(x.shape[x.dim() - len(normalized):]) == normalized and (weight is None or tuple(weight.shape) == normalized)
    return same_as_input(args, kwargs) if ok and x.dim() >= len(normalized) else NOT_HANDLED


# ------------------------------------------------------------------------------------------ GEMMs
# Each rule checks the operands agree, so a wrong input shape still raises (from the real kernel).
@rule("linear")
def _linear(args: Sequence[object], kwargs: dict) -> object:
    """F.linear(x[..., in], W[out, in] or [in]) → [..., out] (or [...] for a 1-D weight)."""
    x, w = args[0], arg(args, kwargs, 1, "weight")
    if x.dim() == 0 or w.dim() not in (1, 2) or x.shape[-1] != w.shape[-1]:
        return NOT_HANDLED
    return empty((*x.shape[:-1], *w.shape[:-1]), x.dtype)


@rule("matmul", "__matmul__")
def _matmul(args: Sequence[object], kwargs: dict) -> object:
    """torch.matmul's shape rule: 1-D operands gain and lose a dimension, batch dims broadcast.

    ``mm`` and ``bmm`` are matmul restricted to 2-D and to 3-D operands of one batch size.
    """
    a, b = args[0], arg(args, kwargs, 1, "other", kwargs.get("mat2"))
    if not isinstance(b, torch.Tensor) or a.dim() == 0 or b.dim() == 0 or a.dtype != b.dtype:
        return NOT_HANDLED
    a_shape = (1, *a.shape) if a.dim() == 1 else tuple(a.shape)
    b_shape = (*b.shape, 1) if b.dim() == 1 else tuple(b.shape)
    batch = broadcast(a_shape[:-2], b_shape[:-2])
    if batch is None or a_shape[-1] != b_shape[-2]:
        return NOT_HANDLED
    shape = (*batch, *a_shape[-2:-1] * (a.dim() > 1), *b_shape[-1:] * (b.dim() > 1))
    return empty(shape, a.dtype)


def _restricted(rank: int) -> Rule:
    def rule(args: Sequence[object], kwargs: dict) -> object:
        a, b = args[0], arg(args, kwargs, 1, "mat2")
        if not isinstance(b, torch.Tensor) or a.dim() != rank or b.dim() != rank or a.shape[:-2] != b.shape[:-2]:
            return NOT_HANDLED
        return _matmul(args, kwargs)

    return rule


RULES.update({"mm": _restricted(2), "bmm": _restricted(3)})


@rule("addmm")
def _addmm(args: Sequence[object], kwargs: dict) -> object:
    """addmm(bias, a[m, k], b[k, n]) → [m, n]; the bias must broadcast to it (GPT-2's Conv1D)."""
    bias, a, b = args[0], arg(args, kwargs, 1, "mat1"), arg(args, kwargs, 2, "mat2")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return NOT_HANDLED
    out = (a.shape[0], b.shape[1])
    return empty(out, a.dtype) if broadcast(shape_of(bias), out) == out else NOT_HANDLED


@rule("baddbmm")
def _baddbmm(args: Sequence[object], kwargs: dict) -> object:
    """baddbmm(input, b1[B, n, m], b2[B, m, p]) → [B, n, p]; ``input`` broadcasts to it."""
    bias, a, b = args[0], arg(args, kwargs, 1, "batch1"), arg(args, kwargs, 2, "batch2")
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1] or a.dtype != b.dtype:
        return NOT_HANDLED
    out = (a.shape[0], a.shape[1], b.shape[2])
    return empty(out, a.dtype) if broadcast(shape_of(bias), out) == out else NOT_HANDLED


@rule("einsum")
def _einsum(args: Sequence[object], kwargs: dict) -> object:
    """einsum(equation, *operands): each label's size (size-1 dims broadcast), in the output's order."""
    operands = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    if kwargs or not isinstance(args[0], str) or not operands or len({t.dtype for t in operands}) != 1:
        return NOT_HANDLED
    terms, out = parse_equation(args[0], [t.dim() for t in operands])
    if len(terms) != len(operands) or len(set(out)) != len(out):
        return NOT_HANDLED
    sizes: dict[str, int] = {}
    for term, tensor in zip(terms, operands):
        if len(term) != tensor.dim():
            return NOT_HANDLED
        within = dict(zip(term, tensor.shape))
        if any(within[label] != size for label, size in zip(term, tensor.shape)):
            return NOT_HANDLED  # a label repeated in one operand (a diagonal) needs equal sizes there
        for label, size in zip(term, tensor.shape):
            known = sizes.get(label)
            if known is None or known == 1:
                sizes[label] = size
            elif size not in (known, 1):
                return NOT_HANDLED
    if not all(label in sizes for label in out):
        return NOT_HANDLED
    return empty([sizes[label] for label in out], operands[0].dtype)


def _conv_output(
    x: torch.Tensor, w: torch.Tensor, in_channels: int, out_channels: int, stride, padding, dilation, **transpose_options
) -> object:
    """A convolution's output [(N,) out_channels, *sizes], or NOT_HANDLED when the operands or options do not fit."""
    spatial = w.dim() - 2
    if spatial < 1 or x.dim() not in (spatial + 1, spatial + 2) or x.shape[x.dim() - spatial - 1] != in_channels:
        return NOT_HANDLED
    if isinstance(padding, str) and (padding not in ("same", "valid") or transpose_options or any(s != 1 for s in per_dim(stride, spatial))):
        return NOT_HANDLED
    sizes = conv_output_shape(x.shape, w.shape, stride, padding, dilation, **transpose_options)
    if min(sizes) < 1:
        return NOT_HANDLED
    return empty((*x.shape[: x.dim() - spatial - 1], out_channels, *sizes), x.dtype)


@rule("conv1d", "conv2d", "conv3d")
def _conv(args: Sequence[object], kwargs: dict) -> object:
    """conv{n}d(input[(N,) C, *S], weight[C_out, C/g, *k], bias, stride, padding, dilation, groups)."""
    x, w = args[0], args[1]
    groups = int(arg(args, kwargs, 6, "groups", 1))
    if w.shape[0] % groups:
        return NOT_HANDLED
    return _conv_output(
        x, w, w.shape[1] * groups, w.shape[0], arg(args, kwargs, 3, "stride", 1), arg(args, kwargs, 4, "padding", 0),
        arg(args, kwargs, 5, "dilation", 1),
    )


@rule("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def _conv_transpose(args: Sequence[object], kwargs: dict) -> object:
    """conv_transpose{n}d(input, weight[C_in, C_out/g, *k], bias, stride, padding, output_padding, groups, dilation).

    torch requires output_padding < stride or < dilation in every dimension.
    """
    x, w = args[0], args[1]
    stride, padding, output_padding, groups, dilation = (
        arg(args, kwargs, i, key, default)
        for i, key, default in ((3, "stride", 1), (4, "padding", 0), (5, "output_padding", 0), (6, "groups", 1), (7, "dilation", 1))
    )
    spatial = w.dim() - 2
    fits = zip(*(per_dim(value, spatial) for value in (output_padding, stride, dilation)))
    if w.shape[0] % int(groups) or not all(p < s or p < d for p, s, d in fits):
        return NOT_HANDLED
    return _conv_output(
        x, w, w.shape[0], w.shape[1] * int(groups), stride, padding, dilation, transposed=True, output_padding=output_padding
    )


@rule("scaled_dot_product_attention")
def _attention(args: Sequence[object], kwargs: dict) -> object:
    """SDPA(q[..., L, E], k[..., S, E], v[..., S, Ev]) → [..., L, Ev].

    With ``enable_gqa`` the query heads (dim −3) are a multiple of the key/value heads, which repeat.
    """
    q, k, v = args[0], arg(args, kwargs, 1, "key"), arg(args, kwargs, 2, "value")
    if min(q.dim(), k.dim(), v.dim()) < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        return NOT_HANDLED
    if arg(args, kwargs, 7, "enable_gqa", False):
        if min(q.dim(), k.dim(), v.dim()) < 3 or k.shape[-3] != v.shape[-3] or q.shape[-3] % k.shape[-3]:
            return NOT_HANDLED
        batch = broadcast(q.shape[:-3], k.shape[:-3], v.shape[:-3])
        batch = None if batch is None else (*batch, q.shape[-3])
    else:
        batch = broadcast(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return NOT_HANDLED if batch is None else empty((*batch, q.shape[-2], v.shape[-1]), q.dtype)


@rule("embedding")
def _embedding(args: Sequence[object], kwargs: dict) -> object:
    """F.embedding(indices[...], weight[num, dim]) → [..., dim] in the weight's dtype."""
    indices, weight = args[0], arg(args, kwargs, 1, "weight")
    if indices.dtype not in (torch.int32, torch.int64) or weight.dim() != 2:
        return NOT_HANDLED
    return empty((*indices.shape, weight.shape[-1]), weight.dtype)


@rule("lstm", "gru", "rnn_tanh", "rnn_relu")
def _recurrent(args: Sequence[object], kwargs: dict) -> object:
    """_VF.lstm/gru/rnn(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
    batch_first) → (output[..., D·H_out], *hidden states shaped as hx); packed sequences are left to torch."""
    if len(args) != 9 or not isinstance(args[3], bool) or not isinstance(args[2], (list, tuple)) or not args[2]:
        return NOT_HANDLED
    x, hx, params, bidirectional = args[0], args[1], args[2], args[7]
    hidden = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    if x.dim() not in (2, 3) or x.shape[-1] != params[0].shape[-1] or not all(isinstance(h, torch.Tensor) for h in hidden):
        return NOT_HANDLED
    output = empty((*x.shape[:-1], (2 if bidirectional else 1) * hidden[0].shape[-1]), x.dtype)
    return (output, *(empty(h.shape, h.dtype) for h in hidden))


# ------------------------------------------------------------------------------------ pooling
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
        kernel = per_dim(arg(args, kwargs, 1, "kernel_size"), spatial)
        stride = arg(args, kwargs, 2, "stride") or kernel
        stride = per_dim(stride, spatial)
        padding = per_dim(arg(args, kwargs, 3, "padding", 0), spatial)
        dilation = per_dim(arg(args, kwargs, 4, "dilation", 1), spatial) if has_dilation else [1] * spatial
        ceil_mode = bool(arg(args, kwargs, 5 if has_dilation else 4, "ceil_mode", False))
        if x.dim() not in (spatial + 1, spatial + 2) or any(2 * p > k for p, k in zip(padding, kernel)):
            return NOT_HANDLED
        inputs = x.shape[x.dim() - spatial :]
        if spatial == 3 and not has_dilation and any(size < k for size, k in zip(inputs, kernel)):
            return NOT_HANDLED  # avg_pool3d alone refuses an input smaller than its kernel, padding or not
        sizes = [
            _pooled(x.shape[x.dim() - spatial + i], kernel[i], padding[i], stride[i], dilation[i], ceil_mode)
            for i in range(spatial)
        ]
        if min(sizes) < 1:
            return NOT_HANDLED
        return _pool_output(x, sizes, has_dilation and arg(args, kwargs, 6, "return_indices", False))

    return rule


def _adaptive_rule(spatial: int, has_indices: bool) -> Rule:
    """adaptive_{avg,max}_pool{n}d(input, output_size[, return_indices]); None keeps the input's size."""

    def rule(args: Sequence[object], kwargs: dict) -> object:
        x = args[0]
        sizes = per_dim(arg(args, kwargs, 1, "output_size"), spatial)
        sizes = [x.shape[x.dim() - spatial + i] if s is None else s for i, s in enumerate(sizes)]
        if x.dim() not in (spatial + 1, spatial + 2):
            return NOT_HANDLED
        return _pool_output(x, sizes, has_indices and arg(args, kwargs, 2, "return_indices", False))

    return rule


def _pool_output(x: torch.Tensor, sizes: list[int], with_indices: bool) -> object:
    """x's leading dims, then the pooled sizes; max pooling may also return int64 indices of that shape."""
    out = empty((*x.shape[: x.dim() - len(sizes)], *sizes), x.dtype)
    return (out, empty(out.shape, torch.int64)) if with_indices else out


for _n in (1, 2, 3):
    RULES[f"max_pool{_n}d"] = _pool_rule(_n, has_dilation=True)
    RULES[f"avg_pool{_n}d"] = _pool_rule(_n, has_dilation=False)
    RULES[f"adaptive_avg_pool{_n}d"] = _adaptive_rule(_n, has_indices=False)
    RULES[f"adaptive_max_pool{_n}d"] = _adaptive_rule(_n, has_indices=True)
