"""Bytes a training forward keeps for backward, every storage counted once, parameters excluded.

Autograd keeps, per op, the tensors its backward needs. Several ops often keep one storage (a
ReLU's output is also the next convolution's input), and a quantized GEMM keeps its operands as
codes (``quant.KeepCodes``), so summing tensor sizes misleads. ``kept_for_backward`` records every
tensor saved while a forward runs (saved-tensor hooks, which compose with ``KeepCodes``: the codes
are what gets recorded), counts each storage once at its full size, leaves out the parameters' own
storages, and charges each storage to the innermost module running when it was first saved.

``heap_in_use`` measures the same thing from the other side: the bytes glibc's malloc has handed out
and not got back. Its growth over a forward, while the forward's result is held, is what the
forward really keeps; the two agree to within the tensors the forward received (tests check it).
"""

from __future__ import annotations

import ctypes
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bitplan.libc import libc_function


@dataclass
class KeptBytes:
    """What one forward kept for backward.

    Attributes:
        total: Bytes of distinct storages saved, parameters excluded.
        by_module_type: The same bytes by the class of the module that first saved each storage
            (the original class for a quantized layer; ``(outside modules)`` for ops in no module).
        by_dtype: The same bytes by storage dtype (uint8/int16 are codes of quantized operands).
    """

    total: int = 0
    by_module_type: Counter[str] = field(default_factory=Counter)
    by_dtype: Counter[str] = field(default_factory=Counter)


def kept_for_backward(model: nn.Module, forward: Callable[[], Any]) -> tuple[Any, KeptBytes]:
    """Run ``forward()`` (a training forward of ``model``, loss included) and measure what it keeps.

    Args:
        model: The model the forward runs (its parameters are excluded, its modules name the bytes).
        forward: Zero-argument callable, e.g. ``lambda: loss_fn(model(x), y)``.

    Returns:
        ``(forward's result, KeptBytes)``; the result's graph is intact, so ``backward()`` still works.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> _, kept = kept_for_backward(model, lambda: model(torch.randn(3, 4, requires_grad=True)).sum())
        >>> kept.total  # the [3, 4] input, saved by the GEMM for the weight gradient
        48
    """
    excluded = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    seen: dict[int, int] = {}
    kept = KeptBytes()
    stack: list[str] = []
    names = {module: _class_name(module) for module in model.modules()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address not in excluded and address not in seen and tensor.device.type != "meta":
            seen[address] = storage.nbytes()
            kept.total += storage.nbytes()
            kept.by_module_type[stack[-1] if stack else "(outside modules)"] += storage.nbytes()
            kept.by_dtype[str(tensor.dtype).removeprefix("torch.")] += storage.nbytes()
        # detached: a saved output kept with its grad_fn is a cycle through C++ that no collector
        # frees when the measured forward is not followed by backward (autograd restores the grad_fn)
        return tensor.detach()

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(names.get(module, type(module).__name__))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    handles = [module.register_forward_pre_hook(enter) for module in model.modules()]
    handles += [module.register_forward_hook(leave, always_call=True) for module in model.modules()]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            result = forward()
    finally:
        for handle in handles:
            handle.remove()
    return result, kept


def _class_name(module: nn.Module) -> str:
    """The module's class as the user wrote it (``apply`` swaps in a quantized subclass)."""
    for attribute in ("bitplan_quant", "bitplan_scope"):
        state = module.__dict__.get(attribute)
        if state is not None:
            layer = getattr(state, "layer", state)
            return layer.original_class.__name__
    return type(module).__name__


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33 and later)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    ]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    return libc_function("mallinfo2", (), _MallInfo2)  # None: not glibc, or glibc before 2.33


def heap_in_use() -> int | None:
    """Bytes allocated through malloc and not yet freed (glibc ``mallinfo2``: heap and mmapped blocks).

    CPU tensors are malloc'd, so the growth of this figure over a training forward, with the
    forward's result still held, is what the forward keeps, whatever keeps it: an independent check
    of ``kept_for_backward``, which sees only what autograd's saved-tensor hooks see.

    Returns:
        The byte count, or None off glibc (other C libraries, glibc before 2.33, other systems).
    """
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return info.uordblks + info.hblkhd
