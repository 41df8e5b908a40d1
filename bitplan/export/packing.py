"""Bit-packing of b-bit integer codes (b = 1…16): every code's b bits back to back.

Code i occupies bits [i·b, (i+1)·b) of the stream, and stream bit k is bit k mod 8 of byte ⌊k/8⌋
(little-endian). Eight codes fill exactly b bytes, so codes are packed eight at a time, with
whole-tensor integer operations over cache-sized chunks. A tensor of N codes takes ⌈N·b/8⌉ bytes.

Up to 8 bits the eight codes of a group are read as the eight bytes of one 64-bit word (a free
view of uint8 codes) and squeezed together in three steps, each closing the gaps between pairs of
neighbouring fields: byte pairs (b bits in each 8 → 2b bits in each 16), then 16-bit pairs (→ 4b in
each 32), then the two halves (→ 8b bits at the bottom of the word), whose low b bytes are the
group. Unpacking runs the three steps backwards. Each step is four in-place operations on the
chunk's words, so packing moves a few bytes per code. Wider codes (9–16 bits) straddle two words
and are OR-ed into them code by code.

``pack_rows`` packs each row of a matrix on its own and pads it to whole words: compressed-tensors'
dense ``pack-quantized`` layout (⌈cols·b/32⌉ int32 words per row, code j of a row at bits
[j·b, (j+1)·b) of the row's little-endian stream), which vLLM reads too.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from bitplan.quant.kernels import one_thread

if sys.byteorder != "little":  # the bytes of an int64 word are read through a uint8 view
    raise ImportError("bitplan.export.packing assumes a little-endian machine")

WORD_BITS = 8
"""Widths packed by squeezing byte lanes of one 64-bit word (eight codes of at most 8 bits)."""

WHOLE_WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32}
"""Widths whose eight codes fill a whole integer word: a (truncating, little-endian) cast stores them."""

MAX_PACKED_BITS = 16
"""Widest code packed; wider codes are stored one per int32."""

GROUP = 8
"""Codes per group: eight b-bit codes are exactly b bytes."""

CHUNK_GROUPS = 1 << 14
"""Groups per chunk (128 Ki codes): each [G, 8] int64 temporary of the wide path is 1 MiB and stays in
cache across the passes (bigger chunks spill the cache, smaller ones pay Python overhead per op)."""

WORD_CHUNK_GROUPS = 1 << 15
"""Groups per chunk of the word path: two 256 KiB int64 buffers, in cache for the twelve passes."""


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
    if bits <= WORD_BITS:
        return _pack_words(flat, bits)
    numel = flat.numel()
    groups = -(-numel // GROUP)
    out = torch.empty(groups * bits, dtype=torch.uint8)
    with one_thread():
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
        Tensor [numel]: uint8 up to 8 bits, int32 above.

    Raises:
        ValueError: ``bits`` outside 1–16, or ``packed`` has the wrong length.
    """
    _check_bits(bits)
    if packed.numel() != packed_nbytes(numel, bits):
        raise ValueError(f"{numel} codes of {bits} bits take {packed_nbytes(numel, bits)} bytes, got {packed.numel()}.")
    if bits <= WORD_BITS:
        return _unpack_words(packed.reshape(-1).cpu(), bits, numel)
    groups = -(-numel // GROUP)
    stream = F.pad(packed.reshape(-1).cpu(), (0, groups * bits - packed.numel()))
    out = torch.empty(groups * GROUP, dtype=torch.int32)
    with one_thread():
        for start in range(0, groups, CHUNK_GROUPS):
            stop = min(groups, start + CHUNK_GROUPS)
            chunk = stream[start * bits : stop * bits].view(-1, bits)
            out[start * GROUP : stop * GROUP] = _unpack_groups(chunk, bits).reshape(-1)
    return out[:numel]


def pack_rows(codes: Tensor, bits: int, word_bytes: int = 4) -> Tensor:
    """Pack each row (last dimension) of ``codes`` on its own, padded to whole ``word_bytes`` words.

    With 4-byte words, ``pack_rows(codes, b).view(torch.int32)`` is compressed-tensors' dense
    ``pack_to_int32`` of the signed codes ``codes − 2^(b−1)`` (⌈cols·b/32⌉ words per row).

    Args:
        codes: Integer tensor [..., cols] with values in 0..2^bits − 1.
        bits: 1–16.
        word_bytes: Each row is padded with zero bits to a multiple of this many bytes.

    Returns:
        uint8 tensor [..., ⌈cols·bits/(8·word_bytes)⌉·word_bytes] on the CPU.

    Example:
        >>> pack_rows(torch.tensor([[1, 2, 3], [3, 0, 0]]), 2, word_bytes=1)
        tensor([[57],
                [ 3]], dtype=torch.uint8)
    """
    _check_bits(bits)
    cols = codes.shape[-1]
    rows = codes.reshape(-1, cols).cpu()
    padded_cols = -(-cols // GROUP) * GROUP  # rows of whole groups: each row's stream starts on a byte
    if padded_cols != cols:
        rows = F.pad(rows, (0, padded_cols - cols))  # zero codes: zero bits
    stream = pack_codes(rows, bits).view(rows.shape[0], padded_cols * bits // 8)  # [R, padded·b/8]
    row_bytes = -(-cols * bits // (8 * word_bytes)) * word_bytes
    if row_bytes != stream.shape[1]:
        out = torch.zeros(rows.shape[0], row_bytes, dtype=torch.uint8)
        width = min(row_bytes, stream.shape[1])  # bytes past ⌈cols·b/8⌉ are zero either way
        out[:, :width] = stream[:, :width]
        stream = out
    return stream.view(*codes.shape[:-1], row_bytes)


def _pack_words(flat: Tensor, bits: int) -> Tensor:
    """``pack_codes`` up to 8 bits: [N] codes -> [⌈N·b/8⌉] bytes, eight codes per 64-bit word."""
    numel = flat.numel()
    if bits == WORD_BITS:
        return flat.to(torch.uint8, copy=True)
    groups = -(-numel // GROUP)
    out = torch.empty(groups * bits, dtype=torch.uint8)
    for start, stop, chunk, spare in _word_chunks(groups):
        lanes = chunk.view(torch.uint8)  # [8·G]
        codes = flat[start * GROUP : stop * GROUP]
        lanes[: codes.numel()].copy_(codes)  # each code in its own byte (uint8 conversion included)
        lanes[codes.numel() :].zero_()
        _squeeze_(chunk, spare, bits)
        target = out[start * bits : stop * bits]
        if bits in WHOLE_WORDS:  # the group is a whole 1-, 2- or 4-byte word: a truncating cast writes it
            target.view(WHOLE_WORDS[bits]).copy_(chunk)
        else:
            target.view(-1, bits).copy_(lanes.view(-1, GROUP)[:, :bits])
    return out[: packed_nbytes(numel, bits)]


def _unpack_words(stream: Tensor, bits: int, numel: int) -> Tensor:
    """``unpack_codes`` up to 8 bits: [⌈N·b/8⌉] bytes -> [N] uint8 codes."""
    if bits == WORD_BITS:
        return stream.clone()
    groups = -(-numel // GROUP)
    out = torch.empty(groups * GROUP, dtype=torch.uint8)
    for start, stop, chunk, spare in _word_chunks(groups):
        lanes = chunk.view(torch.uint8).view(-1, GROUP)  # [G, 8]
        data = stream[start * bits : stop * bits]
        lanes.zero_()
        full = data.numel() // bits
        lanes[:full, :bits].copy_(data[: full * bits].view(-1, bits))
        if full < stop - start:  # the last, partial group
            lanes[full, : data.numel() - full * bits].copy_(data[full * bits :])
        _spread_(chunk, spare, bits)
        out[start * GROUP : stop * GROUP].copy_(lanes.view(-1))
    return out[:numel]


def _word_chunks(groups: int) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """(first group, end group, words [G] int64, a spare buffer like it) per chunk, on one thread."""
    words = torch.empty(min(groups, WORD_CHUNK_GROUPS), dtype=torch.int64)
    spare = torch.empty_like(words)
    with one_thread():
        for start in range(0, groups, WORD_CHUNK_GROUPS):
            stop = min(groups, start + WORD_CHUNK_GROUPS)
            yield start, stop, words[: stop - start], spare[: stop - start]


def _lane_masks(bits: int) -> list[tuple[int, int, int]]:
    """Per squeezing step (field pairs in 16-, 32-, 64-bit lanes): (low mask, high mask, shift).

    Before the step each lane of 2·half bits holds two fields of ``width`` = bits·half/8 bits, at
    bit 0 and bit ``half``; the step moves the high one down by half − width, next to the low one.
    Every mask stays below 2^63 for bits ≤ 7 (8-bit codes need no squeezing), so arithmetic shifts
    never see a sign bit.
    """
    steps = []
    for half in (8, 16, 32):
        width = bits * half // 8
        low = sum(((1 << width) - 1) << start for start in range(0, 64, 2 * half))
        steps.append((low, low << half, half - width))
    return steps


def _squeeze_(words: Tensor, spare: Tensor, bits: int) -> None:
    """Eight codes, one per byte of each word -> their 8·bits bits at the bottom of the word."""
    for low, high, shift in _lane_masks(bits):
        torch.bitwise_and(words, high, out=spare)
        words.bitwise_and_(low).bitwise_or_(spare.bitwise_right_shift_(shift))


def _spread_(words: Tensor, spare: Tensor, bits: int) -> None:
    """Inverse of ``_squeeze_``: the steps backwards, each field moved up to its lane."""
    for low, high, shift in reversed(_lane_masks(bits)):
        torch.bitwise_left_shift(words, shift, out=spare).bitwise_and_(high)
        words.bitwise_and_(low).bitwise_or_(spare)


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
