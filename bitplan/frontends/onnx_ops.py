"""ONNX operators as GEMMs: each handler maps one node to its Y[M×N] = X[M×K]·W[K×N] products.

Handlers are registered per op type with ``@handles``; nodes of other types (and of other domains) are not
GEMMs. Definitions match the PyTorch front end (docs/concepts.md, docs/onnx.md); shapes come from ONNX
shape inference through ``OnnxGraph.static_shape``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from onnx import NodeProto, helper

from bitplan.frontends.onnx_graph import FLOAT_TYPES, STANDARD_DOMAINS, OnnxGraph, WeightRef
from bitplan.frontends.onnx_names import rnn_weight_fqn, torch_scope
from bitplan.frontends.ops import Gemm, parse_equation
from bitplan.profile.schema import GemmOp

# Elementwise ops that sit between QKᵀ and its softmax (scale, mask, bias) or after the softmax (dropout).
SCORE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Cast", "Dropout", "Identity", "Reshape"})
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
LINEAR_CALL = "target=torch.ops.aten.linear."


def draft(op: GemmOp, m: int, k: int, n: int, groups: int, weight: WeightRef | None = None, name: str | None = None,
          step: int = 0) -> Gemm:
    """One GEMM of a node as the shared ``Gemm`` record; its depth is set when the graph is walked.

    ``weight`` names the parameter and the constant it is read from (the record's ``sources``); ``name`` is
    set by handlers that know the final name (RNNs name each GEMM after its weight).
    """
    if weight is None:
        return Gemm(op, m, k, n, groups, 0, name=name, step=step)
    return Gemm(op, m, k, n, groups, 0, weight.name, tuple(weight.shape), sources=frozenset({weight.source}), name=name,
                step=step)


Handler = Callable[[NodeProto, OnnxGraph], list[Gemm]]
HANDLERS: dict[str, Handler] = {}


def handles(*op_types: str) -> Callable[[Handler], Handler]:
    """Register a handler for the given standard-domain op types."""

    def register(handler: Handler) -> Handler:
        for op_type in op_types:
            HANDLERS[op_type] = handler
        return handler

    return register


# Contrib-domain ops with the standard op's semantics (ONNX Runtime's com.microsoft forms).
CONTRIB_ALIASES = frozenset({("com.microsoft", "CausalConvWithState"), ("com.microsoft", "LinearAttention")})


def has_rule(node: NodeProto) -> bool:
    """Whether a handler counts ``node``'s GEMMs (a standard-domain op, or a contrib alias of one)."""
    standard = node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in CONTRIB_ALIASES
    return standard and node.op_type in HANDLERS


def gemms_of(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """Every GEMM ``node`` computes (empty for non-GEMM ops and ops of custom domains)."""
    return HANDLERS[node.op_type](node, graph) if has_rule(node) else []


def attribute(node: NodeProto, name: str, default: object) -> object:
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


# Where X and W sit among a conv-like op's inputs.
CONV_OPERANDS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "DeformConv": (0, 1)}


@handles(*CONV_OPERANDS)
def conv(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """Conv of any spatial rank: X[N, C_in, *S] * W[C_out, C_in/g, *kernel] -> Y[N, C_out, *S_out].

    Per group: M = N·prod(S_out) output positions, K = C_in/g·prod(kernel), N = C_out/g. DeformConv
    (opset 19) samples X at learned offsets, then computes the same GEMM (offset groups only change
    where it samples).
    """
    x_index, w_index = CONV_OPERANDS[node.op_type]
    w = graph.static_shape(node.input[w_index], node)
    y = graph.static_shape(node.output[0], node)
    groups = int(attribute(node, "group", 1))
    return [
        draft(
            op=GemmOp.conv, m=y[0] * math.prod(y[2:]), k=w[1] * math.prod(w[2:]), n=w[0] // groups,
            groups=groups, weight=graph.resolve_weight(node.input[w_index], node),
        )
    ]


@handles("ConvTranspose")
def conv_transpose(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """ConvTranspose in its col2im form: X[N, C_in, *S] * W[C_in, C_out/g, *kernel].

    Per group: each input position's C_in/g channels are multiplied by W into C_out/g·prod(kernel) columns,
    then scattered into the output, so M = N·prod(S) input positions, K = C_in/g, N = C_out/g·prod(kernel).
    M·K·N·g equals the MACs torch's FlopCounterMode reports for conv_transpose.
    """
    x = graph.static_shape(node.input[0], node)
    w = graph.static_shape(node.input[1], node)
    groups = int(attribute(node, "group", 1))
    return [
        draft(
            op=GemmOp.conv_transpose, m=x[0] * math.prod(x[2:]), k=w[0] // groups, n=w[1] * math.prod(w[2:]),
            groups=groups, weight=graph.resolve_weight(node.input[1], node),
        )
    ]


@handles("Gemm")
def gemm(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """Y = A'·B' (+C) with A' = A or Aᵀ [M×K] and B' = B or Bᵀ [K×N]."""
    a = graph.static_shape(node.input[0], node)
    b = graph.static_shape(node.input[1], node)
    m, k = reversed(a) if attribute(node, "transA", 0) else a
    n = b[0] if attribute(node, "transB", 0) else b[1]
    return [_product(node, graph, node.input[0], node.input[1], m=m, k=k, n=n, a_groups=1, b_groups=1, total=1)]


@handles("Gather")
def gather(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """A lookup: Gather(table[V, *D], ids, axis=0) on a float parameter table with ids computed from the
    model's inputs; M = the ids' elements, K = V rows, N = the elements of one row (no MACs).

    Gathers of shapes, of constant ids (a folded position slice) or along another axis are no lookups.
    """
    if len(node.input) < 2 or graph.is_constant(node.input[1]) or not graph.is_constant(node.input[0]):
        return []
    table = graph.resolve_weight(node.input[0], node)
    initializer = graph.initializers.get(table.initializer) if table is not None and table.initializer else None
    if initializer is None or initializer.data_type not in FLOAT_TYPES or len(table.shape) < 2:
        return []
    if int(attribute(node, "axis", 0)) % len(table.shape) != 0:
        return []
    ids = graph.static_shape(node.input[1], node)
    return [draft(GemmOp.embedding, math.prod(ids), table.shape[0], math.prod(table.shape[1:]), 1, table)]


# Where A and B sit among a matmul-like op's inputs.
MATMUL_OPERANDS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


@handles(*MATMUL_OPERANDS)
def matmul(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """numpy matmul: A[*batch_a, M, K] · B[*batch_b, K, N] with broadcast batch dims (1-D operands promoted)."""
    a_index, b_index = MATMUL_OPERANDS[node.op_type]
    a = graph.static_shape(node.input[a_index], node)
    b = graph.static_shape(node.input[b_index], node)
    a = [1, *a] if len(a) == 1 else a  # [K] -> [1, K]
    b = [*b, 1] if len(b) == 1 else b  # [K] -> [K, 1]
    batch = _broadcast(a[:-2], b[:-2])
    return [
        _product(node, graph, node.input[a_index], node.input[b_index], m=a[-2], k=a[-1], n=b[-1],
                 a_groups=math.prod(a[:-2]), b_groups=math.prod(b[:-2]), total=math.prod(batch))
    ]


@handles("Einsum")
def einsum(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """Two-operand einsum as a batched GEMM: shared output labels batch, shared summed labels reduce.

    Labels only in A and the output make M, only in B and the output make N. Einsums with another number
    of operands, or with nothing to sum, are not GEMMs.
    """
    if len(node.input) != 2:
        return []
    a = graph.static_shape(node.input[0], node)
    b = graph.static_shape(node.input[1], node)
    terms, output = parse_equation(str(attribute(node, "equation", "")), [len(a), len(b)])
    sizes_a, sizes_b = dict(zip(terms[0], a)), dict(zip(terms[1], b))
    size = {label: max(sizes_a.get(label, 1), sizes_b.get(label, 1)) for label in [*terms[0], *terms[1]]}
    batch = [label for label in sizes_a if label in sizes_b and label in output]
    reduced = [label for label in sizes_a if label in sizes_b and label not in output]
    if not reduced:
        return []

    def product(labels: list[str], sizes: dict[str, int]) -> int:
        return math.prod(sizes[label] for label in labels)

    m_labels = [label for label in sizes_a if label not in sizes_b and label in output]
    n_labels = [label for label in sizes_b if label not in sizes_a and label in output]
    return [
        _product(node, graph, node.input[0], node.input[1], m=product(m_labels, size), k=product(reduced, size),
                 n=product(n_labels, size), a_groups=product(batch, sizes_a), b_groups=product(batch, sizes_b),
                 total=product(batch, size))
    ]


@handles(*RNN_GATES)
def rnn(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """LSTM/GRU/RNN: per direction an input–hidden GEMM (K = input size) and a hidden–hidden GEMM (K = hidden).

    Both run once per time step for the whole batch, so M = batch·seq_len; N = gates·hidden.
    """
    x = graph.static_shape(node.input[0], node)
    w = graph.static_shape(node.input[1], node)  # [directions, gates·hidden, input]
    r = graph.static_shape(node.input[2], node)  # [directions, gates·hidden, hidden]
    seq_len, batch = (x[1], x[0]) if attribute(node, "layout", 0) else (x[0], x[1])
    direction = str(attribute(node, "direction", "forward"))
    drafts: list[Gemm] = []
    for d in range(w[0]):
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        for hidden, index, shape in ((False, 1, w), (True, 2, r)):
            weight = _rnn_weight(node, graph, index, d, w[0], hidden=hidden, reverse=reverse)
            drafts.append(
                draft(op=GemmOp.rnn_hh if hidden else GemmOp.rnn_ih, m=batch * seq_len, k=shape[2],
                          n=shape[1], groups=1, weight=weight, name=weight.name if weight else None)
            )
    return drafts


@handles("Attention")
def attention(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """ONNX Attention (opset 23): QKᵀ then A·V per batch and query head, as two activation GEMMs.

    Q/K/V are [B, heads, S, D] (4-D) or [B, S, heads·D] (3-D, heads from q_num_heads/kv_num_heads);
    a past key (input 4) lengthens the key sequence.
    """
    q = graph.static_shape(node.input[0], node)
    k = graph.static_shape(node.input[1], node)
    v = graph.static_shape(node.input[2], node)
    if len(q) == 4:
        batch, heads, seq_q, head_dim = q
        seq_kv, value_dim = k[2], v[3]
    else:
        heads = int(attribute(node, "q_num_heads", 1))
        kv_heads = int(attribute(node, "kv_num_heads", 1))
        batch, seq_q, head_dim = q[0], q[1], q[2] // heads
        seq_kv, value_dim = k[1], v[2] // kv_heads
    if len(node.input) > 4 and node.input[4]:
        seq_kv += graph.static_shape(node.input[4], node)[2]
    groups = batch * heads
    return [
        draft(op=GemmOp.attention_qk, m=seq_q, k=head_dim, n=seq_kv, groups=groups, step=0),
        draft(op=GemmOp.attention_av, m=seq_q, k=seq_kv, n=value_dim, groups=groups, step=1),
    ]


@handles("CausalConvWithState")
def causal_conv(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """CausalConvWithState (opset 27; com.microsoft): a depthwise causal 1-D convolution.

    X [B, C, L], W [C, 1, k]: each channel is its own group, left-padded with the past state (or zeros)
    so the output keeps length L: M = B·L, K = k, N = 1, groups = C (a depthwise ``Conv``).
    """
    x = graph.static_shape(node.input[0], node)
    w = graph.static_shape(node.input[1], node)
    return [
        draft(op=GemmOp.conv, m=x[0] * math.prod(x[2:]), k=math.prod(w[1:]), n=1, groups=w[0],
              weight=graph.resolve_weight(node.input[1], node))
    ]


@handles("LinearAttention")
def linear_attention(node: NodeProto, graph: OnnxGraph) -> list[Gemm]:
    """LinearAttention (opset 27; com.microsoft): a recurrent state S [d_k × d_v] per batch and KV head.

    Q [B, T, H_q·d_k], K [B, T, H_k·d_k], V [B, T, H_kv·d_v]. Over T tokens, S accumulates k_t ⊗ v_t
    (``state_update``: M = d_k, K = T, N = d_v per KV head), the delta rules first read S_{t-1}ᵀ k_t
    (``state_read``: M = T, K = d_k, N = d_v per KV head), and o_t = q_tᵀ S_t (``output``: M = T,
    K = d_k, N = d_v per query head, one step deeper). Gates and decays are elementwise.
    """
    q = graph.static_shape(node.input[0], node)
    v = graph.static_shape(node.input[2], node)
    q_heads, kv_heads = int(attribute(node, "q_num_heads", 1)), int(attribute(node, "kv_num_heads", 1))
    batch, tokens, key_dim, value_dim = q[0], q[1], q[2] // q_heads, v[2] // kv_heads
    prefix = node.name or node.output[0]
    gemms = [draft(op=GemmOp.matmul, m=key_dim, k=tokens, n=value_dim, groups=batch * kv_heads, name=f"{prefix}.state_update")]
    if "delta" in str(attribute(node, "update_rule", "linear")):
        gemms.append(draft(op=GemmOp.matmul, m=tokens, k=key_dim, n=value_dim, groups=batch * kv_heads, name=f"{prefix}.state_read"))
    gemms.append(draft(op=GemmOp.matmul, m=tokens, k=key_dim, n=value_dim, groups=batch * q_heads, name=f"{prefix}.output", step=1))
    return gemms


def _product(node: NodeProto, graph: OnnxGraph, a_name: str, b_name: str, *, m: int, k: int, n: int,
             a_groups: int, b_groups: int, total: int) -> Gemm:
    """A[M×K]·B[K×N] repeated ``total`` times (batch), with whichever operand is a weight as W.

    A weight with G stacked matrices is G groups, each used total/G times as often as one product uses it.
    When the weight is the left operand, Y = W·X is read as Yᵀ = Xᵀ·Wᵀ, so M and N swap: each weight
    element is then used once per column of X.
    """
    weight_b = graph.resolve_weight(b_name, node)
    weight_a = graph.resolve_weight(a_name, node) if weight_b is None else None
    if weight_b is not None:
        return draft(op=_weight_op(node), m=total // b_groups * m, k=k, n=n, groups=b_groups, weight=weight_b)
    if weight_a is not None:
        return draft(op=_weight_op(node), m=total // a_groups * n, k=k, n=m, groups=a_groups, weight=weight_a)
    return draft(op=_activation_op(node, graph, a_name), m=m, k=k, n=n, groups=total)


def _weight_op(node: NodeProto) -> GemmOp:
    """linear for what came from a linear layer, matmul for a product with a parameter written by hand.

    The torch exporter's metadata says which aten op a node implements; without it, Gemm and MatMul
    (how every exporter writes a linear layer) are linear and Einsum is matmul, as in the torch front end.
    """
    scope = torch_scope(node)
    if node.op_type == "Gemm" or (scope is not None and LINEAR_CALL in scope.call):
        return GemmOp.linear
    return GemmOp.linear if scope is None and node.op_type in MATMUL_OPERANDS else GemmOp.matmul


def _activation_op(node: NodeProto, graph: OnnxGraph, a_name: str) -> GemmOp:
    """attention_qk when the product feeds a softmax, attention_av when its left operand comes from one."""
    if _reaches_softmax(node.output[0], graph, forward=True):
        return GemmOp.attention_qk
    if _reaches_softmax(a_name, graph, forward=False):
        return GemmOp.attention_av
    return GemmOp.matmul


def _reaches_softmax(name: str, graph: OnnxGraph, *, forward: bool, hops: int = 4) -> bool:
    """Whether a Softmax is within ``hops`` elementwise ops of ``name`` (after it, or before it)."""
    if hops == 0:
        return False
    if forward:
        nodes = [consumer for consumer, _ in graph.consumers.get(name, [])]
    else:
        nodes = [graph.producer[name]] if name in graph.producer else []
    for node in nodes:
        if node.op_type in ("Softmax", "LogSoftmax"):
            return True
        if node.op_type in SCORE_OPS:
            names = node.output if forward else [i for i in node.input[:1] if i]
            if any(_reaches_softmax(other, graph, forward=forward, hops=hops - 1) for other in names):
                return True
    return False


def _rnn_weight(node: NodeProto, graph: OnnxGraph, index: int, direction: int, directions: int, *,
                hidden: bool, reverse: bool) -> WeightRef | None:
    """The weight of one direction of an RNN: torch's own name when the exporter recorded it.

    Without torch metadata the name is the initializer's, with ``[d]`` for one direction of a
    bidirectional stack ([directions, gates·hidden, size] holds both directions' matrices).
    """
    ref = graph.resolve_weight(node.input[index], node)
    if ref is None:
        return None
    scope = torch_scope(node)
    if scope is not None and scope.call:  # torch's own parameter: one direction's [gates·hidden, size]
        name, shape = rnn_weight_fqn(scope, graph.call_index(node), hidden=hidden, reverse=reverse), ref.shape[1:]
    elif directions > 1:
        name, shape = f"{ref.source}[{direction}]", ref.shape[1:]
    else:
        name, shape = ref.source, ref.shape
    return WeightRef(name=name, shape=shape, initializer=ref.initializer, source=ref.source)


def _broadcast(a: list[int], b: list[int]) -> list[int]:
    """numpy broadcasting of two batch shapes."""
    width = max(len(a), len(b))
    a, b = [1] * (width - len(a)) + a, [1] * (width - len(b)) + b
    return [max(x, y) if 1 in (x, y) else x for x, y in zip(a, b)]
