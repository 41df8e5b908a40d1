"""The op table: each torch-level call (linear, conv, matmul, attention, RNN, ...) → the GEMMs it performs.

Both torch tracers (recording and torch.export) describe a call the same way — its op name, its
arguments with tensors replaced by ``TensorRef`` — and this module turns that into ``Gemm`` records
with shapes and depths. Keeping the arithmetic here, once, is what makes the two tracers agree.
``bitplan.qat.scoped`` reads the same table (``OPS[name].operands``) to find the two operands of a
GEMM it quantizes, so the profiler and ``apply`` agree on what a GEMM is. Rules: docs/concepts.md.

Conventions (docs/concepts.md): a GEMM is ``groups`` products X[m×k]·W[k×n]; W is the weight operand
(a parameter, possibly through views) or, for activation×activation products, the right operand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bitplan.profile.schema import GemmOp


@dataclass(frozen=True)
class TensorRef:
    """What the profiler knows about a tensor.

    Attributes:
        shape: Its shape.
        depth: 1 + the largest GEMM depth it depends on (0 for inputs and parameters).
        origin: The parameter it is, views, or is computed from (the largest one for a computed weight).
        sources: Every parameter it is computed from without any model input (``{origin}`` for a view).
        data: Whether it depends on a model input (an activation, not a weight).
        pending: Builder indices of the GEMMs on constants (no model input) its value depends on: they
            are dropped as part of a weight's computation if a GEMM reads this tensor as its weight.
        rows: Rows each of the E matrices receives, when the gather's indices are known (measured routing).
        experts: E when it is a gathered view ``P[ids]`` of a stacked parameter P [E, out, in] indexed
            along its first dimension by a tensor (fused experts picked per token); 0 otherwise.
    """

    shape: tuple[int, ...]
    depth: int = 0
    origin: str | None = None
    sources: frozenset[str] = frozenset()
    data: bool = False
    experts: int = 0
    pending: frozenset[int] = frozenset()
    rows: tuple[int, ...] = ()


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
    sources: frozenset[str] = frozenset()  # parameters the weight is computed from (views: the weight itself)
    name: str | None = None  # the final layer name, when the front end knows it (ONNX)
    step: int = 0  # order of GEMMs chained inside one ONNX node (Attention: QKᵀ 0, A·V 1)
    expert: bool = False  # one expert's matrix of a gathered weight, its M counted under uniform routing


@dataclass(frozen=True)
class CallGemms:
    """The GEMMs of one call and the depth its outputs carry."""

    gemms: list[Gemm] = field(default_factory=list)
    out_depth: int = 0


Handler = Callable[[Sequence[object], dict], CallGemms]
Operands = Callable[[Sequence[object], dict], list[int]]


@dataclass(frozen=True)
class OpRule:
    """One GEMM op of the table.

    Attributes:
        gemms: The K/M/N/groups rule: call arguments (tensors as ``TensorRef``) → its GEMMs.
        operands: Positions in ``args`` of the X and W operands of its single GEMM, for ``apply``'s
            scoped quantization; None for ops ``apply`` leaves to a layer twin or refuses (RNN cells,
            attention, several GEMMs per call).
        kind: The name the profiler gives an activation×activation GEMM of this op.
    """

    gemms: Handler
    operands: Operands | None
    kind: str


OPS: dict[str, OpRule] = {}


def _positions(*positions: int) -> Operands:
    return lambda args, kwargs: list(positions)


def handles(*names: str, operands: Operands | None = None, kind: str = "matmul") -> Callable[[Handler], Handler]:
    """Register the K/M/N rule (and operand positions) for the torch-level and aten op names given."""

    def register(handler: Handler) -> Handler:
        for name in names:
            OPS[name] = OpRule(handler, operands, kind)
        return handler

    return register


def gemms_of_call(op_name: str, args: Sequence[object], kwargs: dict) -> CallGemms | None:
    """The GEMMs performed by a call to ``op_name``, or None when it is not GEMM-like."""
    rule = OPS.get(op_name)
    return rule.gemms(args, kwargs) if rule else None


def gemm_operands(op_name: str, args: Sequence[object], kwargs: dict) -> list[int]:
    """Positions of the two operands of the GEMM ``op_name`` computes; [] when ``apply`` cannot scope it."""
    rule = OPS.get(op_name)
    return rule.operands(args, kwargs) if rule is not None and rule.operands is not None else []


def _arg(args: Sequence[object], kwargs: dict, index: int, name: str, default: object = None) -> object:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def uniform_rows(tokens: int, top_k: int, experts: int) -> list[int]:
    """Rows each expert receives under uniform top-k routing; they sum to ``tokens × top_k``.

    Example:
        >>> uniform_rows(5, 2, 4)
        [3, 3, 2, 2]
    """
    base, extra = divmod(tokens * top_k, experts)
    return [base + (1 if e < extra else 0) for e in range(experts)]


def _weight_gemm(op: GemmOp, x: TensorRef, w: TensorRef, m: int, k: int, n: int, groups: int) -> CallGemms:
    depth = max(x.depth, w.depth) + 1
    return CallGemms(_gemms_on(op, w, m, k, n, groups, depth), depth)


def _gemms_on(op: GemmOp, w: TensorRef, m: int, k: int, n: int, groups: int, depth: int, suffix: str = "") -> list[Gemm]:
    """The GEMMs whose W operand is ``w`` (a weight when it comes from parameters, else an activation).

    A gathered view ``P[ids]`` (``w.experts`` = E) is not ``groups`` weights of its own: each of its
    ``groups`` matrices is one of P's E matrices, so the product becomes one GEMM per expert e on the
    virtual weight ``P[e]``, its M the rows uniform routing sends there (``uniform_rows(groups, 1, E)``
    products of m rows each; under measured routing, the rows its indices actually picked). MACs are
    unchanged; P's parameters are counted once.
    """
    if w.origin is None:
        return [Gemm(op, m, k, n, groups, depth, suffix=suffix)]
    sources = w.sources or frozenset({w.origin})
    if not w.experts:
        return [Gemm(op, m, k, n, groups, depth, w.origin, w.shape, suffix, sources)]
    matrix = tuple(w.shape[-2:])
    return [
        Gemm(op, m * rows, k, n, 1, depth, f"{w.origin}[{e}]", matrix, suffix, sources, expert=True)
        for e, rows in enumerate(w.rows or uniform_rows(groups, 1, w.experts))
        if rows
    ]


@handles("linear", operands=_positions(0, 1), kind="linear")
def linear(args: Sequence[object], kwargs: dict) -> CallGemms:
    """F.linear(x[..., in], W[out, in]): m = rows of x, k = in, n = out."""
    x, w = args[0], args[1]
    k = x.shape[-1] if x.shape else 1
    n = w.shape[0] if len(w.shape) == 2 else 1
    return _weight_gemm(GemmOp.linear, x, w, _prod(x.shape[:-1]), k, n, 1)


@handles("addmm", "addmv", operands=_positions(1, 2))
def addmm(args: Sequence[object], kwargs: dict) -> CallGemms:
    """addmm(bias, a[m, k], b[k, n]) — what linear decomposes to; addmv(bias, A[m, k], v[k]) likewise."""
    return matmul([args[1], args[2]], {})


@handles("baddbmm", operands=_positions(1, 2))
def baddbmm(args: Sequence[object], kwargs: dict) -> CallGemms:
    """baddbmm(bias, a[b, m, k], b[b, k, n]): the b products of bmm."""
    return matmul([args[1], args[2]], {})


@handles("addbmm", operands=_positions(1, 2))
def addbmm(args: Sequence[object], kwargs: dict) -> CallGemms:
    """addbmm(bias, a[B, m, k], b[B, k, n]) = bias + Σ_b a[b]·b[b]: one GEMM with K = B·k.

    The batch sum is part of the reduction: each output element sums B·k products, and a weight
    [B, k, n] is one [B·k × n] matrix.
    """
    a, b = args[1], args[2]
    batch, m, k = a.shape
    n = b.shape[-1]
    weight_left = a.origin is not None and b.origin is None
    weight, other = (a, b) if weight_left else (b, a)
    if weight_left:
        m, n = n, m
    depth = max(a.depth, b.depth) + 1
    return CallGemms(_gemms_on(GemmOp.matmul, weight, m, batch * k, n, 1, depth), depth)


@handles("matmul", "__matmul__", "mm", "bmm", "mv", operands=_positions(0, 1))
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
    return CallGemms(_gemms_on(GemmOp.matmul, weight, m * reused, k, n, groups, depth), depth)


def _einsum_operands(args: Sequence[object], kwargs: dict) -> list[int]:
    return [1, 2] if len(args) == 3 else []  # the operand-list form is left to the plain call


@handles("einsum", operands=_einsum_operands)
def einsum(args: Sequence[object], kwargs: dict) -> CallGemms:
    """Two-operand einsum (explicit or implicit output): labels in both operands and the output are
    groups, labels in both but not the output are K, labels of one operand only are M and N.

    Other operand counts, and products with nothing summed, are not profiled: their parameters land
    in the profile's ``uncovered`` list.
    """
    operands = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    depth = max((t.depth for t in operands if isinstance(t, TensorRef)), default=0)
    if len(operands) != 2:
        return CallGemms([], depth)
    a, b = operands
    (sub_a, sub_b), out = parse_equation(str(args[0]), [len(a.shape), len(b.shape)])
    size = {**dict(zip(sub_a, a.shape)), **dict(zip(sub_b, b.shape))}
    contracted = [c for c in sub_a if c in sub_b and c not in out]
    if not contracted:
        return CallGemms([], depth)
    batch = [c for c in sub_a if c in sub_b and c in out]
    only_a = [c for c in sub_a if c not in sub_b and c in out]
    only_b = [c for c in sub_b if c not in sub_a and c in out]
    m, k, n = (_prod([size[c] for c in part]) for part in (only_a, contracted, only_b))
    groups = _prod([size[c] for c in batch])
    depth = max(a.depth, b.depth) + 1
    weight_left = a.origin is not None and b.origin is None
    if weight_left:
        m, n = n, m
    return CallGemms(_gemms_on(GemmOp.matmul, a if weight_left else b, m, k, n, groups, depth), depth)


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Split an einsum equation into per-operand label lists and the output's, expanding ``...``.

    Ellipsis dims get labels ".0", ".1"... aligned from the right, as numpy broadcasts them. Without
    ``->`` the output is the ellipsis dims, then the labels that appear once, in alphabetical order
    (numpy's and torch's implicit mode: ``"ij,jk"`` means ``"ij,jk->ik"``).
    """
    equation = equation.replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    widths = [rank - (len(term) - 3) if "..." in term else 0 for term, rank in zip(lhs.split(","), ranks)]
    ellipsis = max(widths, default=0)

    def labels(term: str, width: int) -> list[str]:
        head, dots, tail = term.partition("...")
        middle = [f".{i}" for i in range(ellipsis - width, ellipsis)] if dots else []
        return [*head, *middle, *tail]

    terms = [labels(term, width) for term, width in zip(lhs.split(","), widths)]
    if "->" in equation:
        return terms, labels(rhs, ellipsis)
    counts = [label for term in terms for label in term]
    once = sorted(label for label in set(counts) if counts.count(label) == 1 and not label.startswith("."))
    return terms, [f".{i}" for i in range(ellipsis)] + once


@handles("inner", "dot", "vdot", operands=_positions(0, 1))
def inner(args: Sequence[object], kwargs: dict) -> CallGemms:
    """inner(a[*A, k], b[*B, k]) → [*A, *B]: M = prod(A), K = k, N = prod(B) (b read as W[k × prod(B)]).

    ``dot(a[k], b[k])`` and ``vdot`` (conjugating a) are its 1-D case: M = N = 1, K = k; a weight
    vector is a k × 1 W.
    """
    a, b = args[0], args[1]
    m, k, n = _prod(a.shape[:-1]), (a.shape[-1] if a.shape else 1), _prod(b.shape[:-1])
    return _pair_gemm(a, b, m, k, n)


@handles("tensordot", operands=_positions(0, 1))
def tensordot(args: Sequence[object], kwargs: dict) -> CallGemms:
    """tensordot(a, b, dims): K = the contracted dims' sizes, M = a's other dims, N = b's other dims.

    ``dims`` is an int d (a's last d dims with b's first d) or two lists of dims (torch.export's form).
    """
    a, b = args[0], args[1]
    dims = _arg(args, kwargs, 2, "dims", 2)
    if len(args) > 3 or isinstance(dims, (list, tuple)) and len(dims) == 2 and isinstance(dims[0], (list, tuple)):
        dims_a, dims_b = (args[2], args[3]) if len(args) > 3 else dims
    else:
        d = int(dims)
        dims_a, dims_b = list(range(len(a.shape) - d, len(a.shape))), list(range(d))
    dims_a = [int(i) % len(a.shape) for i in dims_a]
    dims_b = [int(i) % len(b.shape) for i in dims_b]
    k = _prod(a.shape[i] for i in dims_a)
    m = _prod(size for i, size in enumerate(a.shape) if i not in dims_a)
    n = _prod(size for i, size in enumerate(b.shape) if i not in dims_b)
    return _pair_gemm(a, b, m, k, n)


def _pair_gemm(a: TensorRef, b: TensorRef, m: int, k: int, n: int) -> CallGemms:
    """A[m×k]·B[k×n] with whichever operand is a weight as W (a weight on the left swaps m and n)."""
    depth = max(a.depth, b.depth) + 1
    if a.origin is not None and b.origin is None:
        return CallGemms(_gemms_on(GemmOp.matmul, a, n, k, m, 1, depth), depth)
    return CallGemms(_gemms_on(GemmOp.matmul, b, m, k, n, 1, depth), depth)


@handles("linalg_multi_dot", "multi_dot", "chain_matmul")
def multi_dot(args: Sequence[object], kwargs: dict) -> CallGemms:
    """linalg.multi_dot([A₁, …, Aₙ]): one GEMM per product, in the order torch evaluates the chain.

    torch multiplies 2 matrices directly; for 3 it computes (A₁A₂)A₃ unless A₁(A₂A₃) costs strictly
    fewer MACs; for more it takes the cheapest parenthesisation (matrix-chain order, first split on ties).
    A 1-D first (last) operand is a row (column) vector. Every product the chain evaluates is a GEMM
    (the MACs equal torch's FLOP counter); a product of two weights is also a weight itself, so the GEMM
    that reads it is attributed to all of its parameters (``x·(W₁W₂)`` covers W₁ and W₂).
    """
    operands = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
    chain = [
        TensorRef((1, *t.shape) if i == 0 and len(t.shape) == 1 else
                  (*t.shape, 1) if len(t.shape) == 1 else tuple(t.shape), t.depth, t.origin, t.sources, t.data)
        for i, t in enumerate(operands)
    ]
    gemms: list[Gemm] = []

    def product(left: TensorRef, right: TensorRef) -> TensorRef:
        shape = (left.shape[0], right.shape[1])
        found = matmul([left, right], {})
        gemms.extend(found.gemms)
        if left.sources and right.sources and not (left.data or right.data):  # W₁W₂: a weight made of both
            main = max((left, right), key=lambda ref: _prod(ref.shape))
            return TensorRef(shape, found.out_depth, main.origin, left.sources | right.sources)
        return TensorRef(shape, found.out_depth, data=left.data or right.data)

    def evaluate(i: int, j: int) -> TensorRef:
        if i == j:
            return chain[i]
        split = _chain_split(chain, i, j)
        return product(evaluate(i, split), evaluate(split + 1, j))

    result = evaluate(0, len(chain) - 1) if chain else TensorRef(())
    return CallGemms(gemms, result.depth)


def _chain_split(chain: list[TensorRef], i: int, j: int) -> int:
    """Where torch splits the chain i..j: the k of (A_i..A_k)(A_k+1..A_j)."""
    dims = [chain[0].shape[0], *(t.shape[1] for t in chain)]
    if j - i == 1:
        return i
    if len(chain) == 3:
        a, b, c, d = dims
        return 0 if a * c * (b + d) > b * d * (a + c) else 1  # A(BC) only when strictly cheaper
    cost = {}

    def best(p: int, q: int) -> tuple[int, int]:
        if p == q:
            return 0, p
        if (p, q) not in cost:
            options = [(best(p, s)[0] + best(s + 1, q)[0] + dims[p] * dims[s + 1] * dims[q + 1], s) for s in range(p, q)]
            cost[(p, q)] = min(options, key=lambda option: option[0])
        return cost[(p, q)]

    return best(i, j)[1]


@handles("bilinear")
def bilinear(args: Sequence[object], kwargs: dict) -> CallGemms:
    """F.bilinear(x1[..., in1], x2[..., in2], W[out, in1, in2]): y_o = Σ_ij x1_i·W_oij·x2_j.

    One GEMM of the outer product x1⊗x2 [rows × in1·in2] by W read as [in1·in2 × out]:
    M = rows, K = in1·in2, N = out (params = K·N = W's elements).
    """
    x1, x2, w = args[0], args[1], args[2]
    rows = _prod(x1.shape[:-1])
    depth = max(x1.depth, x2.depth, w.depth) + 1
    return CallGemms(_gemms_on(GemmOp.linear, w, rows, w.shape[1] * w.shape[2], w.shape[0], 1, depth), depth)


@handles("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")
def recurrent_cell(args: Sequence[object], kwargs: dict) -> CallGemms:
    """One step of an RNN cell, cell(x[batch, in], hx, w_ih[gates·hidden, in], w_hh[gates·hidden, hidden], ...).

    Two GEMMs, as for one time step of the full RNN: input–hidden (M = batch, K = in, N = gates·hidden)
    and hidden–hidden (M = batch, K = hidden, N = gates·hidden), both at the input's depth + 1.
    """
    x, w_ih, w_hh = args[0], args[2], args[3]
    rows = x.shape[0] if len(x.shape) == 2 else 1
    depth = x.depth + 1
    gemms = [
        gemm
        for w, op in ((w_ih, GemmOp.rnn_ih), (w_hh, GemmOp.rnn_hh))
        for gemm in _gemms_on(op, w, rows, w.shape[1], w.shape[0], 1, depth)
    ]
    return CallGemms(gemms, depth)


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
            for w, op in ((w_ih, GemmOp.rnn_ih), (w_hh, GemmOp.rnn_hh), (w_hr, GemmOp.rnn_hh)):
                if w is not None:
                    gemms.extend(_gemms_on(op, w, rows, w.shape[1], w.shape[0], 1, layer_depth))
        depth = layer_depth
    return CallGemms(gemms, depth)
