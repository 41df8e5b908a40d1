"""Quantized GEMM operands kept for backward as b-bit codes, not as float copies.

A fake-quantized GEMM Y = X̂·Ŵ saves X̂ and Ŵ for its backward (dW needs X̂, dX needs Ŵ). Both are
exactly b-bit codes and a scale: X̂ = q·scale + zero point. ``fake_quant_kept`` returns X̂ (as
``fake_quant_ste`` does) together with its ``KeptCodes``, and ``KeepCodes``, entered around the GEMM,
makes autograd store those codes where it would store X̂ and rebuild X̂ from them in backward: the
same float values, so gradients are bit for bit those of the float copy.

A weight that is a parameter is not kept at all: backward quantizes it again (``Requantized``), which
gives the same values as long as the parameter is not changed in between (checked, as autograd checks
the tensors it keeps). Codes take one byte each for 5–8 bits (int16 for 9–15); below 5 bits ⌊8/b⌋ codes share a byte
(1 bit: 8, 2 bits: 4, 3 or 4 bits: 2) along the last dimension of the quantizer's view, when it
divides; otherwise one per byte. 16 bits and more keep the float copy (codes would not be smaller).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from bitplan.quant import kernels

MAX_KEPT_BITS = 15
"""Widest code kept (int16); wider operands are kept as floats."""


@dataclass(frozen=True)
class KeptCodes:
    """One fake-quantized tensor X̂ as codes: ``decode()`` gives X̂ back bit for bit.

    Attributes:
        codes: uint8 (or int16) codes in the quantizer's view, ``per_byte`` to a byte along its last dim.
        per_byte: Codes per byte (1, 2, 4 or 8).
        scale: Step between levels, broadcast against the view (compute dtype).
        offset: The range minimum (``integer=False``: X̂ = q·scale + offset) or the zero point's code
            (``integer=True``: X̂ = (q − offset)·scale).
        integer: Which of the two decodings.
        shape: X̂'s shape.
        stride: X̂'s strides (its memory layout, rebuilt on decode).
        dtype: X̂'s dtype.
    """

    codes: Tensor
    per_byte: int
    scale: Tensor
    offset: Tensor
    integer: bool
    shape: torch.Size
    stride: tuple[int, ...]
    dtype: torch.dtype

    def decode(self) -> Tensor:
        """X̂, with its original shape, strides and dtype."""
        recipe = kernels.integer_decode if self.integer else kernels.affine_decode
        values = kernels.run(recipe, self.codes, self.scale, self.offset, self.per_byte, self.dtype)
        if values.is_contiguous() and _contiguous_strides(self.shape) == self.stride:
            return values.view(self.shape)
        # the codes follow X̂'s memory order (elementwise ops keep it); rebuild that layout
        return torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device=values.device).copy_(
            values.reshape(self.shape)
        )

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """The tensors this record holds (what it costs to keep)."""
        return self.codes, self.scale, self.offset

    def with_tensors(self, codes: Tensor, scale: Tensor, offset: Tensor) -> KeptCodes:
        """The same record over other tensors (``tensors()`` after a round trip through another hook)."""
        return dataclasses.replace(self, codes=codes, scale=scale, offset=offset)


@dataclass(frozen=True)
class Requantized:
    """A quantized parameter, rebuilt in backward by quantizing the parameter again.

    Attributes:
        source: The parameter (kept alive by its module anyway: nothing extra is stored).
        version: Its version counter when it was quantized; a later in-place change is refused.
        quantize: The quantizer the forward applied (deterministic: round to nearest).
    """

    source: Tensor
    version: int
    quantize: Callable[[Tensor], Tensor]

    def decode(self) -> Tensor:
        """The quantized parameter, exactly as the forward computed it."""
        if self.source._version != self.version:  # the counter autograd itself checks saved tensors with
            raise RuntimeError(
                "a quantized parameter needed for gradient computation was modified by an inplace operation "
                f"between forward and backward (version {self.version} -> {self.source._version}); "
                "step the optimizer after backward"
            )
        with torch.no_grad():
            return self.quantize(self.source.detach())

    def tensors(self) -> tuple[Tensor, ...]:
        """Nothing beyond the parameter itself is kept."""
        return ()

    def with_tensors(self) -> Requantized:
        return self


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def per_byte(bits: int, view: Tensor) -> int:
    """How many ``bits``-bit codes share a byte: ⌊8/b⌋ rounded to 1, 2, 4 or 8 when it divides the
    view's last dimension, else 1."""
    count = {1: 8, 2: 4, 3: 2, 4: 2}.get(bits, 1)
    return count if view.dim() > 0 and view.shape[-1] % count == 0 else 1


def code_dtype(bits: int) -> torch.dtype:
    """uint8 up to 8 bits, int16 up to 15."""
    return torch.uint8 if bits <= 8 else torch.int16


def keeps_codes(bits: int, x: Tensor) -> bool:
    """Whether a ``bits``-bit quantization of ``x`` is worth keeping as codes: at most 15 bits, and
    the codes (uint8, or int16 above 8 bits) smaller than X̂ in ``x``'s dtype."""
    return bits <= MAX_KEPT_BITS and torch.finfo(x.dtype).bits > (8 if bits <= 8 else 16) and x.numel() > 0


def make_codes(out: Tensor, codes: Tensor, count: int, scale: Tensor, offset: Tensor, *, integer: bool) -> KeptCodes:
    """The record of X̂ ``out`` (reshaped to its caller's shape) from a ``*_kept`` recipe's codes."""
    return KeptCodes(codes, count, scale, offset, integer, out.shape, tuple(out.stride()), out.dtype)


class _KeptSTE(torch.autograd.Function):
    """X̂ from ``quantize`` in forward (its codes go to ``sink``); straight-through backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, quantize: Callable[[], tuple[Tensor, KeptCodes]], sink: list) -> Tensor:
        out, codes = quantize()
        sink.append((out, codes))
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return grad, None, None


def kept_ste(x: Tensor, quantize: Callable[[], tuple[Tensor, KeptCodes]], keep: KeepCodes) -> Tensor:
    """``quantize()``'s X̂ with a straight-through gradient to ``x``; ``keep`` learns its codes."""
    sink: list = []
    out = _KeptSTE.apply(x, quantize, sink)
    keep.add(out, sink[0][1])
    return out


_float_copies = False


@contextmanager
def float_copies() -> Iterator[None]:
    """Within this context quantized GEMMs keep float copies of their operands, as before codes
    (to measure what codes save, or to rule them out when debugging); gradients are the same."""
    global _float_copies
    previous, _float_copies = _float_copies, True
    try:
        yield
    finally:
        _float_copies = previous


def keeping_possible() -> bool:
    """Whether codes can replace saved tensors here: grad mode on, not inside ``torch.compile`` (it
    traces its own graph), saved-tensor hooks not disabled by the caller, not in ``float_copies``."""
    return (
        not _float_copies
        and torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        # public-in-practice: the flag `torch.autograd.graph.disable_saved_tensors_hooks` sets
        and torch._C._autograd._saved_tensors_hooks_is_enabled()
    )


class KeepCodes(torch.autograd.graph.saved_tensors_hooks):
    """Saved-tensor hooks that store the registered X̂ (or any view of it) as its codes.

    Enter it around the GEMM only (the ops inside save their inputs, never their outputs). Tensors
    it does not know go to the hooks that were active before it (activation checkpointing, a memory
    probe), if any, and so do the tensors of a codes record: the hooks compose.
    """

    def __init__(self) -> None:
        # The hooks reach the registry only through a weak reference. Every saved tensor's record in
        # the autograd graph holds on to the pack hook until backward; a hook that held the registry
        # would keep each registered X̂ (the float copy codes replace) alive until backward, and a hook
        # that was a bound method of this object would make a reference cycle besides.
        self._registry = _Registry()
        super().__init__(functools.partial(_pack, weakref.ref(self._registry)), _Registry.unpack)

    def add(self, out: Tensor, codes: KeptCodes | Requantized) -> None:
        """Keep ``out`` as ``codes`` when a GEMM inside this context saves it (``out`` stays referenced
        until the context is dropped, so its address is not reused meanwhile)."""
        if out.storage_offset() == 0 and out.untyped_storage().nbytes() == out.numel() * out.element_size():
            self._registry.known[out.untyped_storage().data_ptr()] = (out, codes)

    def records(self) -> list[KeptCodes | Requantized]:
        """What was registered so far, in order."""
        return [record for _, record in self._registry.known.values()]

    def __enter__(self) -> None:
        # private but stable since torch 2.0: the hooks this context sits on, to compose with them
        self._registry.outer = torch._C._autograd._top_saved_tensors_default_hooks(False)
        super().__enter__()


def _pack(registry: weakref.ref[_Registry], tensor: Tensor) -> Any:
    """The pack hook: ``registry``'s (pack runs only inside its ``KeepCodes`` context, which holds it)."""
    return registry().pack(tensor)


class _Registry:
    """What ``KeepCodes`` knows (storage address -> (X̂, record)) and its pack and unpack hooks."""

    def __init__(self) -> None:
        self.known: dict[int, tuple[Tensor, KeptCodes | Requantized]] = {}
        self.outer: tuple[Callable, Callable] | None = None

    def pack(self, tensor: Tensor) -> Any:
        outer = self.outer
        known = self.known.get(tensor.untyped_storage().data_ptr()) if tensor.numel() else None
        if known is None or known[0].dtype != tensor.dtype:
            # detached: a saved output would otherwise hold its own grad_fn, a cycle through C++ that
            # outlives a forward never followed by backward (unpack gets the grad_fn back from autograd)
            return ("tensor", outer[0](tensor) if outer else tensor.detach(), outer)
        codes = known[1]
        parts = tuple(outer[0](part) for part in codes.tensors()) if outer else codes.tensors()
        geometry = (tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset())
        return ("codes", (codes, parts, geometry), outer)

    @staticmethod
    def unpack(packed: Any) -> Tensor:
        kind, value, outer = packed
        if kind == "tensor":
            return outer[1](value) if outer else value
        codes, parts, (shape, stride, offset) = value
        if outer:
            codes = codes.with_tensors(*(outer[1](part) for part in parts))
        full = codes.decode()
        if (shape, stride, offset) == (tuple(full.shape), tuple(full.stride()), 0):
            return full
        return full.as_strided(shape, stride, offset)
