"""Map one torch-level call (linear, conv, matmul, attention, RNN, ...) to the GEMMs it performs.

Both torch tracers (recording and torch.export) describe a call the same way — its op name, its
arguments with tensors replaced by ``TensorRef`` — and this module turns that into ``Gemm`` records
with shapes and depths. Keeping the arithmetic here, once, is what makes the two tracers agree.

Conventions (docs/concepts.md): a GEMM is ``groups`` products X[m×k]·W[k×n]; W is the weight operand
(a parameter, possibly through views) or, for activation×activation products, the right operand.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bitplan.profile.schema import GemmOp


@dataclass(frozen=True)
class TensorRef:
    """What the profiler knows about a tensor: shape, GEMM depth, and the parameter it views."""

    shape: tuple[int, ...]
    depth: int = 0
    origin: str | None = None


@dataclass(frozen=True)
class Gemm:
    """One GEMM found in a call; ``suffix`` distinguishes several GEMMs of one call."""

    op: GemmOp
    m: int
    k: int
    n: int
    groups: int
    depth: int
    weight: str | None = None
    weight_shape: tuple[int, ...] | None = None
    suffix: str = ""


@dataclass(frozen=True)
class CallGemms:
    """The GEMMs of one call and the depth its outputs carry."""

    gemms: list[Gemm] = field(default_factory=list)
    out_depth: int = 0


Handler = Callable[[Sequence[object], dict], CallGemms]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for the torch-level (and aten) op names it understands."""

    def register(handler: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = handler
        return handler

    return register


def gemms_of_call(op_name: str, args: Sequence[object], kwargs: dict) -> CallGemms | None:
    """The GEMMs performed by a call to ``op_name``, or None when it is not GEMM-like."""
    handler = HANDLERS.get(op_name)
    return handler(args, kwargs) if handler else None


def _arg(args: Sequence[object], kwargs: dict, index: int, name: str, default: object = None) -> object:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def _weight_gemm(op: GemmOp, x: TensorRef, w: TensorRef, m: int, k: int, n: int, groups: int) -> CallGemms:
    depth = max(x.depth, w.depth) + 1
    gemm = Gemm(op, m, k, n, groups, depth, w.origin, w.shape if w.origin else None)
    return CallGemms([gemm], depth)


@handles("linear")
def linear(args: Sequence[object], kwargs: dict) -> CallGemms:
    """F.linear(x[..., in], W[out, in]): m = rows of x, k = in, n = out."""
    x, w = args[0], args[1]
    k = x.shape[-1] if x.shape else 1
    n = w.shape[0] if len(w.shape) == 2 else 1
    return _weight_gemm(GemmOp.linear, x, w, _prod(x.shape[:-1]) or 1, k, n, 1)


@handles("addmm")
def addmm(args: Sequence[object], kwargs: dict) -> CallGemms:
    """addmm(bias, a[m, k], b[k, n]) — what linear decomposes to."""
    return matmul([args[1], args[2]], {})


@handles("baddbmm")
def baddbmm(args: Sequence[object], kwargs: dict) -> CallGemms:
    return matmul([args[1], args[2]], {})


@handles("matmul", "__matmul__", "mm", "bmm")
def matmul(args: Sequence[object], kwargs: dict) -> CallGemms:
    """torch.matmul semantics (1-D promotion, broadcasting batch dims) for any operand pair.

    The weight operand is the one that views a parameter. When it is the left operand, Y = W·X is
    read as Yᵀ = Xᵀ·Wᵀ, so m is still the number of uses of each weight element.
    Broadcast batch dimensions the weight lacks fold into m (each weight element is reused there).
    """
    a, b = args[0], args[1]
    a_shape = (1, *a.shape) if len(a.shape) == 1 else tuple(a.shape)
    b_shape = (*b.shape, 1) if len(b.shape) == 1 else tuple(b.shape)
    batch_a, batch_b = a_shape[:-2], b_shape[:-2]
    rank = max(len(batch_a), len(batch_b))
    batch_a = (1,) * (rank - len(batch_a)) + batch_a
    batch_b = (1,) * (rank - len(batch_b)) + batch_b
    batch = tuple(max(p, q) for p, q in zip(batch_a, batch_b))
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    weight_left = a.origin is not None and b.origin is None
    weight, other, weight_batch = (a, b, batch_a) if weight_left else (b, a, batch_b)
    if weight_left:
        m, n = n, m
    if weight.origin is None:
        # activation × activation: every batch entry is its own product
        depth = max(a.depth, b.depth) + 1
        return CallGemms([Gemm(GemmOp.matmul, m, k, n, _prod(batch), depth)], depth)
    reused = _prod(d for d, wd in zip(batch, weight_batch) if wd == 1)
    groups = _prod(weight_batch)
    depth = max(a.depth, b.depth) + 1
    gemm = Gemm(GemmOp.matmul, m * reused, k, n, groups, depth, weight.origin, weight.shape)
    return CallGemms([gemm], depth)


@handles("einsum")
def einsum(args: Sequence[object], kwargs: dict) -> CallGemms | None:
    """Two-operand einsum: contracted letters form k, shared kept letters groups, the rest m and n."""
    equation = str(args[0]).replace(" ", "")
    operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
    if len(operands) != 2 or "->" not in equation:
        return CallGemms([], max((t.depth for t in operands if isinstance(t, TensorRef)), default=0))
    a, b = operands
    lhs, out = equation.split("->")
    sub_a, sub_b = lhs.split(",")
    ellipsis_a = len(a.shape) - (len(sub_a) - 3) if "..." in sub_a else 0
    ellipsis_b = len(b.shape) - (len(sub_b) - 3) if "..." in sub_b else 0
    letters = "".join(c for c in string.ascii_letters if c not in equation)[: max(ellipsis_a, ellipsis_b)]
    # broadcast dims align from the right, like named batch dims
    sub_a = sub_a.replace("...", letters[len(letters) - ellipsis_a :])
    sub_b = sub_b.replace("...", letters[len(letters) - ellipsis_b :])
    out = out.replace("...", letters)
    size = {**dict(zip(sub_a, a.shape)), **dict(zip(sub_b, b.shape))}
    contracted = [c for c in sub_a if c in sub_b and c not in out]
    batch = [c for c in sub_a if c in sub_b and c in out]
    only_a = [c for c in sub_a if c not in sub_b and c in out]
    only_b = [c for c in sub_b if c not in sub_a and c in out]
    m, k, n = (_prod([size[c] for c in part]) for part in (only_a, contracted, only_b))
    groups = _prod([size[c] for c in batch])
    depth = max(a.depth, b.depth) + 1
    weight_left = a.origin is not None and b.origin is None
    weight = a if weight_left else b
    if weight_left:
        m, n = n, m
    if weight.origin is None:
        return CallGemms([Gemm(GemmOp.matmul, m, k, n, groups, depth)], depth)
    return CallGemms([Gemm(GemmOp.matmul, m, k, n, groups, depth, weight.origin, weight.shape)], depth)


def _conv(x: TensorRef, w: TensorRef, out_shape: Sequence[int], groups: int, transposed: bool) -> CallGemms:
    """Convolution as GEMM. Normal: m = batch × output positions, k = C_in/g × kernel volume, n = C_out/g.

    Transposed (col2im view, the GEMM of conv's input gradient): m = batch × input positions,
    k = C_in/g, n = C_out/g × kernel volume; macs then equal PyTorch's FLOP counter.
    """
    spatial = len(w.shape) - 2
    kernel = _prod(w.shape[2:])
    batched = len(x.shape) == spatial + 2
    batch = x.shape[0] if batched else 1
    if transposed:
        c_in, c_out_per_group = w.shape[0], w.shape[1]
        m = batch * _prod(x.shape[-spatial:])
        return _weight_gemm(GemmOp.conv_transpose, x, w, m, c_in // groups, c_out_per_group * kernel, groups)
    c_out, c_in_per_group = w.shape[0], w.shape[1]
    m = batch * _prod(out_shape[-spatial:])
    return _weight_gemm(GemmOp.conv, x, w, m, c_in_per_group * kernel, c_out // groups, groups)


def conv_output_shape(
    x_shape: Sequence[int], w_shape: Sequence[int], stride, padding, dilation, transposed=False, output_padding=0
) -> tuple[int, ...]:
    """Spatial output size of a convolution (used when the tracer gives no output shape)."""
    spatial = len(w_shape) - 2

    def per_dim(value, default):
        if value is None:
            return [default] * spatial
        if isinstance(value, int):
            return [value] * spatial
        values = list(value)
        return values * spatial if len(values) == 1 else values

    stride, dilation = per_dim(stride, 1), per_dim(dilation, 1)
    output_padding = per_dim(output_padding, 0)
    sizes = list(x_shape[-spatial:])
    if isinstance(padding, str):
        if padding == "same":
            return tuple(sizes)
        padding = 0
    padding = per_dim(padding, 0)
    out = []
    for i in range(spatial):
        kernel = dilation[i] * (w_shape[2 + i] - 1) + 1
        if transposed:
            out.append((sizes[i] - 1) * stride[i] - 2 * padding[i] + kernel + output_padding[i])
        else:
            out.append((sizes[i] + 2 * padding[i] - kernel) // stride[i] + 1)
    return tuple(out)


@handles("conv1d", "conv2d", "conv3d")
def conv(args: Sequence[object], kwargs: dict) -> CallGemms:
    """torch.conv{1,2,3}d(input, weight, bias, stride, padding, dilation, groups)."""
    x, w = args[0], args[1]
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    out = conv_output_shape(
        x.shape, w.shape, _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 4, "padding", 0),
        _arg(args, kwargs, 5, "dilation", 1),
    )
    return _conv(x, w, out, groups, transposed=False)


@handles("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose(args: Sequence[object], kwargs: dict) -> CallGemms:
    """torch.conv_transpose{n}d(input, weight, bias, stride, padding, output_padding, groups, dilation)."""
    x, w = args[0], args[1]
    return _conv(x, w, (), int(_arg(args, kwargs, 6, "groups", 1)), transposed=True)


@handles("convolution", "_convolution")
def convolution(args: Sequence[object], kwargs: dict) -> CallGemms:
    """aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)."""
    x, w = args[0], args[1]
    transposed = bool(_arg(args, kwargs, 6, "transposed", False))
    groups = int(_arg(args, kwargs, 8, "groups", 1))
    out = conv_output_shape(x.shape, w.shape, args[3], args[4], args[5])
    return _conv(x, w, out, groups, transposed)


@handles(
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
)
def attention(args: Sequence[object], kwargs: dict) -> CallGemms:
    """SDPA(q[..., L, E], k[..., S, E], v[..., S, Ev]) = softmax(QKᵀ)·V: two activation GEMMs."""
    q, k, v = args[0], args[1], args[2]
    groups = _prod(q.shape[:-2])
    length, embed = q.shape[-2], q.shape[-1]
    source, value_dim = k.shape[-2], v.shape[-1]
    qk_depth = max(q.depth, k.depth) + 1
    av_depth = max(qk_depth, v.depth) + 1
    return CallGemms(
        [
            Gemm(GemmOp.attention_qk, length, embed, source, groups, qk_depth, suffix="attention_qk"),
            Gemm(GemmOp.attention_av, length, source, value_dim, groups, av_depth, suffix="attention_av"),
        ],
        av_depth,
    )


@handles("lstm", "gru", "rnn_tanh", "rnn_relu")
def recurrent(args: Sequence[object], kwargs: dict) -> CallGemms:
    """aten.lstm/gru/rnn(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first).

    Per layer and direction: an input–hidden GEMM (k = layer input size) and a hidden–hidden GEMM
    (k = hidden size), each with m = batch × time steps and n = gates × hidden. Both read the layer's
    input depth d and run in parallel, so both get d + 1, as does the layer's output.
    """
    x = args[0]
    params = list(args[2])
    has_biases, num_layers = bool(args[3]), int(args[4])
    bidirectional = bool(args[7])
    batch_first = bool(args[8]) if len(args) > 8 else False
    directions = 2 if bidirectional else 1
    if len(x.shape) == 2:
        rows = x.shape[0]
    else:
        time, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        rows = time * batch
    per_direction = len(params) // (num_layers * directions)
    gemms: list[Gemm] = []
    depth = x.depth
    for layer in range(num_layers):
        layer_depth = depth + 1
        for direction in range(directions):
            start = (layer * directions + direction) * per_direction
            group = params[start : start + per_direction]
            w_ih, w_hh = group[0], group[1]
            # proj_size > 0 adds a projection weight w_hr after the biases
            has_projection = per_direction == (5 if has_biases else 3)
            w_hr = group[-1] if has_projection else None
            for w, op in ((w_ih, GemmOp.rnn_ih), (w_hh, GemmOp.rnn_hh)):
                gemms.append(Gemm(op, rows, w.shape[1], w.shape[0], 1, layer_depth, w.origin, w.shape))
            if w_hr is not None:
                gemms.append(Gemm(GemmOp.rnn_hh, rows, w_hr.shape[1], w_hr.shape[0], 1, layer_depth, w_hr.origin, w_hr.shape))
        depth = layer_depth
    return CallGemms(gemms, depth)
