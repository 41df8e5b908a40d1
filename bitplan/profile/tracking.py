"""What both torch tracers share: op names that only view a tensor, and per-call bookkeeping."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bitplan.profile.builder import ProfileBuilder
from bitplan.profile.gemms import TensorRef, gemms_of_call

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
) -> tuple[int, str | None]:
    """Book one call; return the depth and parameter origin its tensor outputs carry.

    Only calls that produce a tensor count as a use of a parameter: reading ``.dtype`` or
    ``.shape`` does not make a weight shared.
    """
    in_depth = max((ref.depth for ref in inputs), default=0)
    if op_name in VIEW_OPS:
        origin = inputs[0].origin if inputs else None
        return in_depth, origin
    for ref in inputs if produces_tensor else ():
        if ref.origin is not None:
            builder.note_use(ref.origin)
    found = gemms_of_call(op_name, ref_args, ref_kwargs)
    if found is None:
        return in_depth, None
    for gemm in found.gemms:
        builder.add(module_path, gemm)
    return (found.out_depth if found.gemms else in_depth), None


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
