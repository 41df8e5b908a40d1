"""Bit-packing of b-bit integer codes (b = 1…16): every code's b bits back to back.

Code i occupies bits [i·b, (i+1)·b) of the stream, and stream bit k is bit k mod 8 of byte ⌊k/8⌋
(little-endian). Eight codes fill exactly b bytes, so codes are packed eight at a time: their bits
are OR-ed into two 64-bit words (low = stream bits 0–63 of the group, high = bits 64–127), whose
bytes are the group's b bytes. Everything is whole-tensor int64 arithmetic on [groups, 8] (left
shifts drop the bits past 64; the words' bytes are read through a uint8 view), over cache-sized chunks.
A tensor of N codes takes ⌈N·b/8⌉ bytes.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

if sys.byteorder != "little":  # the bytes of an int64 word are read through a uint8 view
    raise ImportError("bitplan.export.packing assumes a little-endian machine")

MAX_PACKED_BITS = 16
"""Widest code packed; wider codes are stored one per int32."""

GROUP = 8
"""Codes per group: eight b-bit codes are exactly b bytes."""

CHUNK_GROUPS = 1 << 14
"""Groups per chunk (128 Ki codes): each [G, 8] int64 temporary is 1 MiB and stays in cache across the
passes: the fastest of 4 Ki to 2 Mi groups on this machine (bigger chunks spill the cache, smaller ones
pay Python overhead per op)."""


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes of ``numel`` packed ``bits``-bit codes: ⌈numel·bits/8⌉."""
    return (numel * bits + 7) // 8


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes into a byte stream.

    Args:
        codes: Integer tensor of any shape with values in 0..2^bits − 1 (read in row-major order).
        bits: 1–16.

    Returns:
        uint8 tensor [⌈N·bits/8⌉] on the CPU.

    Raises:
        ValueError: ``bits`` outside 1–16.

    Example:
        >>> pack_codes(torch.tensor([1, 2, 3]), 2)
        tensor([57], dtype=torch.uint8)
    """
    _check_bits(bits)
    flat = codes.reshape(-1).cpu()
    numel = flat.numel()
    groups = -(-numel // GROUP)
    out = torch.empty(groups * bits, dtype=torch.uint8)
    with _one_thread():
        for start in range(0, groups, CHUNK_GROUPS):
            stop = min(groups, start + CHUNK_GROUPS)
            chunk = flat[start * GROUP : stop * GROUP].to(torch.int64)
            chunk = F.pad(chunk, (0, (stop - start) * GROUP - chunk.numel()))
            out[start * bits : stop * bits] = _pack_groups(chunk.view(-1, GROUP), bits).reshape(-1)
    return out[: packed_nbytes(numel, bits)]


def unpack_codes(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Inverse of ``pack_codes``.

    Args:
        packed: uint8 tensor from ``pack_codes``.
        bits: The width it was packed with (1–16).
        numel: Number of codes.

    Returns:
        int32 tensor [numel].

    Raises:
        ValueError: ``bits`` outside 1–16, or ``packed`` has the wrong length.
    """
    _check_bits(bits)
    if packed.numel() != packed_nbytes(numel, bits):
        raise ValueError(f"{numel} codes of {bits} bits take {packed_nbytes(numel, bits)} bytes, got {packed.numel()}.")
    groups = -(-numel // GROUP)
    stream = F.pad(packed.reshape(-1).cpu(), (0, groups * bits - packed.numel()))
    out = torch.empty(groups * GROUP, dtype=torch.int32)
    with _one_thread():
        for start in range(0, groups, CHUNK_GROUPS):
            stop = min(groups, start + CHUNK_GROUPS)
            chunk = stream[start * bits : stop * bits].view(-1, bits)
            out[start * GROUP : stop * GROUP] = _unpack_groups(chunk, bits).reshape(-1)
    return out[:numel]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run cache-sized chunks on one intra-op thread: they gain nothing from more and lose much to
    their synchronisation (7× slower with 2 threads on this shared 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _pack_groups(groups: Tensor, bits: int) -> Tensor:
    # groups: [G, 8] int64 codes -> [G, bits] uint8. Parts of different codes never overlap, so a
    # sum is their OR (two's-complement wrap-around included).
    low_shift, low_mask, high_right, high_left, _ = _layout(bits)
    in_low = -(low_mask != 0).to(torch.int64)  # all ones for codes starting in the low word, else 0
    words = torch.empty(groups.shape[0], 2, dtype=torch.int64)
    torch.sum((groups << low_shift) & in_low, dim=1, out=words[:, 0])  # bits past 63 drop off
    torch.sum((groups >> high_right) << high_left, dim=1, out=words[:, 1])
    return words.view(torch.uint8)[:, :bits]  # [G, 16] little-endian bytes of the two words


def _unpack_groups(stream: Tensor, bits: int) -> Tensor:
    # stream: [G, bits] uint8 -> [G, 8] int32 codes
    low_shift, low_mask, high_right, high_left, high_mask = _layout(bits)
    padded = torch.zeros(stream.shape[0], 16, dtype=torch.uint8)
    padded[:, :bits] = stream
    words = padded.view(torch.int64)  # [G, 2]: the group's low and high 64-bit words
    codes = (words[:, :1] >> low_shift).bitwise_and_(low_mask)  # >> is arithmetic: the mask drops sign copies
    codes.bitwise_or_(((words[:, 1:] >> high_left) << high_right).bitwise_and_(high_mask))  # pack's shifts reversed
    return codes.to(torch.int32)


@functools.lru_cache(maxsize=None)
def _layout(bits: int) -> tuple[Tensor, ...]:
    """Per code position (shift = position·bits): where its bits sit in the low and the high word.

    Low word: code << shift (shift < 64), its low min(bits, 64 − shift) bits. High word: code >>
    (64 − shift) for a code straddling bit 64, code << (shift − 64) for one above it.
    """
    mask = (1 << bits) - 1
    shifts = [position * bits for position in range(GROUP)]
    low_shift = [shift if shift < 64 else 0 for shift in shifts]
    low_mask = [(1 << min(bits, 64 - shift)) - 1 if shift < 64 else 0 for shift in shifts]
    high_right = [min(max(64 - shift, 0), 63) for shift in shifts]  # ≥ bits for a code wholly in the low word: 0
    high_left = [max(shift - 64, 0) for shift in shifts]
    high_mask = [mask if shift + bits > 64 else 0 for shift in shifts]
    return tuple(torch.tensor(values, dtype=torch.int64) for values in (low_shift, low_mask, high_right, high_left, high_mask))


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_PACKED_BITS:
        raise ValueError(f"packed codes are 1 to {MAX_PACKED_BITS} bits wide, got {bits!r}.")
