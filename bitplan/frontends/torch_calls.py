"""What both torch tracers share: op names that only view a tensor, and per-call bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from bitplan.frontends.builder import EMBEDDING_OPS, ProfileBuilder
from bitplan.frontends.ops import OPS, Gemm, TensorRef, gemms_of_call
from bitplan.profile.schema import GemmOp, Routing, split_virtual_weight

# Ops whose output is the same data as their first input (or a slice or copy of it): a parameter
# seen through them is still that parameter, and they add no GEMM depth.
VIEW_OPS = frozenset(
    {
        "t", "T", "mT", "H", "mH", "transpose", "transpose_", "permute", "view", "view_as", "reshape",
        "reshape_as", "_unsafe_view", "expand", "expand_as", "unsqueeze", "squeeze", "flatten", "unflatten",
        "contiguous", "clone", "detach", "alias", "to", "_to_copy", "type", "type_as", "float", "half",
        "bfloat16", "double", "__getitem__", "narrow", "select", "slice", "split", "chunk", "unbind",
        "movedim", "swapaxes", "repeat", "numpy_T", "lift_fresh_copy", "getitem",
    }
)


def record_call(
    builder: ProfileBuilder,
    module_path: str,
    op_name: str,
    ref_args: tuple,
    ref_kwargs: dict,
    inputs: list[TensorRef],
    produces_tensor: bool = True,
) -> TensorRef:
    """Book one call; return what its tensor outputs carry (their shape left empty for the caller).

    A call reading parameters and nothing else (``W * 0.5``, a weight-norm parametrization, a cast, a
    product of two parameters) computes a weight: it is no GEMM of the model, and its output stays
    attributed to those parameters, so the GEMM that consumes it is theirs — unless its largest operand
    is a constant that no parameter made (batch norm on a table): that is a constant, not a weight. A GEMM with an operand that
    is neither a parameter nor a model input (a buffer, a table made in forward, a loop's first state)
    runs once per forward like any other (swin_v2's ``cpb_mlp`` on its coordinate table, RAFT's motion
    encoder on the zero flow of its first iteration): it is recorded at once, and dropped only when
    its result turns out to be part of a weight (spectral norm's ``mv(W, v)``: a GEMM then reads the
    result as its weight). Any other call reading a parameter is a consumer the coverage ledger
    reports when no GEMM covers that parameter. Only calls that produce a tensor count as a use:
    reading ``.dtype`` or ``.shape`` does not make a weight shared. An embedding lookup is never a
    weight computation, even with indices made inside the forward (``wpe(torch.arange(seq))``).
    """
    in_depth = max((ref.depth for ref in inputs), default=0)
    data = any(ref.data for ref in inputs)
    pending = frozenset().union(*(ref.pending for ref in inputs))
    first = inputs[0] if inputs else TensorRef(())
    experts, index = _gathered_experts(op_name, ref_args, ref_kwargs, first)
    if experts:
        rows = _picked(index, experts) if builder.routing is Routing.measured else ()
        return TensorRef((), in_depth, first.origin, first.sources, experts=experts, pending=first.pending, rows=rows)
    if op_name in VIEW_OPS:
        origin = _slice_origin(op_name, ref_args, first)
        return TensorRef((), in_depth, origin, first.sources, first.data, first.experts, first.pending)
    weighted = [ref for ref in inputs if ref.sources]
    on_constant = op_name in OPS and any(not ref.sources and not ref.data for ref in inputs)
    if weighted and not data and op_name not in EMBEDDING_OPS and not on_constant:
        largest = max(inputs, key=lambda ref: (math.prod(ref.shape), bool(ref.sources)))
        if not largest.sources:  # a constant scaled or shifted by parameters (batch norm on a table): no weight
            for source in frozenset().union(*(ref.sources for ref in weighted)):
                builder.note_consumer(source, op_name)
            return TensorRef((), in_depth, pending=pending)
        main = max(weighted, key=lambda ref: math.prod(ref.shape))
        return TensorRef((), in_depth, main.origin, frozenset().union(*(ref.sources for ref in weighted)), pending=pending)
    found = gemms_of_call(op_name, ref_args, ref_kwargs)
    if data:  # a weight computed with GEMMs on constants: those were part of the weight, not the model
        weights = {split_virtual_weight(gemm.weight)[0] for gemm in found.gemms if gemm.weight} if found else set()
        builder.drop(*(ref.pending for ref in inputs if ref.sources and ref.origin in weights))
    for ref in inputs if produces_tensor else ():
        if ref.origin is not None and (data or found is None):
            builder.note_use(ref.origin)
        for source in ref.sources:
            builder.note_consumer(source, op_name)
    if found is None:
        lookup = lookup_of(op_name, inputs, in_depth)
        if lookup is not None:
            builder.add(module_path, lookup)
        return TensorRef((), in_depth, data=data, pending=frozenset() if data else pending)
    # an expert no token reached (measured routing) multiplies an empty matrix: no work, no GEMM
    added = frozenset(builder.add(module_path, gemm) for gemm in found.gemms if min(gemm.m, gemm.k, gemm.n, gemm.groups) > 0)
    depth = found.out_depth if found.gemms else in_depth
    return TensorRef((), depth, data=data, pending=frozenset() if data else pending | added)


def lookup_of(op_name: str, inputs: list[TensorRef], in_depth: int) -> Gemm | None:
    """The lookup an embedding call performs: its ids read rows of a 2-D table that views a parameter.

    M = the ids looked up (their elements; ``embedding_bag`` then reduces them), K × N = the table.
    The lookup sits one above its ids' depth but adds no depth to what follows (it multiplies nothing).
    Works for torch's argument order ``embedding(ids, W)`` and aten's ``embedding(W, ids)``.
    """
    if op_name not in EMBEDDING_OPS:
        return None
    tables = [ref for ref in inputs if ref.origin is not None and ref.origin in ref.sources and len(ref.shape) == 2]
    ids = [ref for ref in inputs if ref.origin is None]
    if len(tables) != 1 or not ids or split_virtual_weight(tables[0].origin)[1] is not None:
        return None
    table = tables[0]
    rows, width = table.shape
    m = math.prod(ids[0].shape)
    if min(m, rows, width) <= 0:
        return None
    return Gemm(GemmOp.embedding, m, rows, width, 1, in_depth + 1, table.origin, tuple(table.shape), sources=table.sources)


GATHER_OPS = frozenset({"__getitem__", "getitem", "index", "index_select"})


def _gathered_experts(op_name: str, args: tuple, kwargs: dict, first: TensorRef) -> tuple[int, object]:
    """(E, the index) when the call picks whole matrices of a stacked parameter P [E, out, in] by a tensor
    of ids (``P[expert_ids]``, ``P.index_select(0, ids)``, aten ``index(P, [ids])``), else (0, None).

    The result is a gathered view of P, not a weight of its own (``TensorRef.experts``).
    """
    if op_name not in GATHER_OPS or first.origin is None or first.origin not in first.sources or len(first.shape) != 3:
        return 0, None
    if op_name == "index_select":
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        index = kwargs.get("index", args[2] if len(args) > 2 else None)
        picks_matrices = dim in (0, -3)
    else:
        key = args[1] if len(args) > 1 else None
        keys = list(key) if isinstance(key, (list, tuple)) else [key]
        index = keys[0] if keys else None
        picks_matrices = all(_whole(k) for k in keys[1:])
    tensor_index = isinstance(index, TensorRef) or isinstance(index, torch.Tensor) and index.dim() > 0
    return (int(first.shape[0]), index) if picks_matrices and tensor_index else (0, None)


def _picked(index: object, experts: int) -> tuple[int, ...]:
    """How often each of the E matrices was picked, when the index holds values (real tensors)."""
    if not isinstance(index, torch.Tensor) or index.device.type == "meta" or index.dtype == torch.bool:
        return ()
    return tuple(int(count) for count in torch.bincount(index.flatten().long() % experts, minlength=experts))


def _whole(key: object) -> bool:
    """Whether an index key keeps its dimension whole (``:``, ``...``, or None in aten's index list)."""
    return key is None or key is Ellipsis or (isinstance(key, slice) and key == slice(None))


def _slice_origin(op_name: str, args: tuple, first: TensorRef) -> str | None:
    """``P[e]`` for matrix e of a stacked parameter P [E, out, in] (fused experts), else ``first.origin``.

    The slice is a virtual layer of its own: plans give it its own bits, ``apply`` quantizes it alone.
    """
    origin = first.origin
    if origin is None or origin not in first.sources or len(first.shape) < 3:
        return origin
    if op_name in ("__getitem__", "getitem") and len(args) > 1 and _known_int(args[1]) is not None:
        index = _known_int(args[1])
    elif op_name == "select" and len(args) > 2 and args[1] == 0 and type(args[2]) is int:
        index = args[2]
    else:
        return origin
    return f"{origin}[{index % first.shape[0]}]"


def _known_int(key: object) -> int | None:
    """An index known as a number: an int, or a 0-d integer tensor holding a value (real tensors)."""
    if type(key) is int:
        return key
    if isinstance(key, torch.Tensor) and key.dim() == 0 and key.device.type != "meta" and not key.is_floating_point():
        return int(key)
    return None


def op_name_of(func: Callable) -> str:
    """A torch callable's bare name: ``F.linear`` → 'linear', ``Tensor.T`` getter → 'T', aten op → packet."""
    packet = getattr(func, "_overloadpacket", None)
    if packet is not None:
        return packet.__name__
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a Tensor property such as .T or .mT
        return getattr(getattr(func, "__self__", None), "__name__", name)
    return name


def meta_like(tensor: torch.Tensor) -> torch.Tensor:
    """A meta tensor with ``tensor``'s shape and dtype: tracing with it allocates nothing."""
    return tensor if tensor.device.type == "meta" else torch.empty_like(tensor, device="meta")
