"""Read an ONNX file's graph without its weights: the bytes of large initializers are never touched.

Profiling needs shapes, not values, yet ``onnx.load`` reads a file with embedded weights into memory
and parses a second copy of it (and shape inference serializes and parses it again). Here the file is
memory-mapped and its protobuf wire format walked: every field is copied as it is, except the value
fields of initializers (``raw_data``, ``float_data``, ...) that are not small integer tensors. Skipping a
field reads only its tag and length, so the pages holding the weights are never loaded, and peak
memory stays near the size of the graph itself. Initializers of at most ``SMALL_TENSOR`` elements keep
their values: shape inference and folding read them (reshape targets, slice bounds, scalars).

Wire format: https://protobuf.dev/programming-guides/encoding/ (ModelProto.graph = 7,
GraphProto.initializer = 5, TensorProto.dims = 1, value fields 4-7, 9-11: onnx.proto).
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterator
from pathlib import Path

MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_DIMS = 1
TENSOR_VALUES = frozenset({4, 5, 6, 7, 9, 10, 11})  # float, int32, string, int64, raw, double, uint64 data
LENGTH_DELIMITED, VARINT, FIXED64, FIXED32 = 2, 0, 1, 5


def read_graph_bytes(path: Path, keep_values_up_to: int) -> bytes:
    """The serialized ModelProto at ``path`` with the values of large initializers left out.

    Args:
        path: an ``.onnx`` file.
        keep_values_up_to: initializers of at most this many elements keep their values.

    Returns:
        Bytes that parse as a ModelProto whose initializers keep name, dims, type and external-data
        references.

    Raises:
        ValueError: the file is not a well-formed protobuf message.
    """
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return b""
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return b"".join(_model(view, keep_values_up_to))
            finally:
                view.release()


def _model(buf: memoryview, keep: int) -> Iterator[bytes]:
    for number, wire, start, value_start, end in _fields(buf, 0, len(buf)):
        if number == MODEL_GRAPH and wire == LENGTH_DELIMITED:
            yield _with_payload(buf[start:value_start], b"".join(_graph(buf, value_start, end, keep)))
        else:
            yield bytes(buf[start:end])


def _graph(buf: memoryview, begin: int, stop: int, keep: int) -> Iterator[bytes]:
    for number, wire, start, value_start, end in _fields(buf, begin, stop):
        if number == GRAPH_INITIALIZER and wire == LENGTH_DELIMITED:
            yield _with_payload(buf[start:value_start], _tensor(buf, value_start, end, keep))
        else:
            yield bytes(buf[start:end])


def _tensor(buf: memoryview, begin: int, stop: int, keep: int) -> bytes:
    """One TensorProto without its values, unless it is small."""
    fields = list(_fields(buf, begin, stop))
    dims: list[int] = []
    for number, wire, _, value_start, end in fields:
        if number == TENSOR_DIMS:
            dims.extend(_varints(buf, value_start, end) if wire == LENGTH_DELIMITED else [_varint(buf, value_start)[0]])
    if math.prod(dims) <= keep:
        return bytes(buf[begin:stop])
    return b"".join(bytes(buf[start:end]) for number, _, start, _, end in fields if number not in TENSOR_VALUES)


def _with_payload(header: memoryview, payload: bytes) -> bytes:
    """A length-delimited field with a new payload: the original tag, the new length."""
    tag, _ = _varint(header, 0)
    return _encode_varint(tag) + _encode_varint(len(payload)) + payload


def _fields(buf: memoryview, begin: int, stop: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, value start, field end) for each field in buf[begin:stop]."""
    position = begin
    while position < stop:
        start = position
        tag, position = _varint(buf, position)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            _, end = _varint(buf, position)
            value_start = position
        elif wire == LENGTH_DELIMITED:
            length, value_start = _varint(buf, position)
            end = value_start + length
        elif wire in (FIXED64, FIXED32):
            value_start, end = position, position + (8 if wire == FIXED64 else 4)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
        if number == 0 or end > stop:
            raise ValueError(f"malformed protobuf field at byte {start}")
        yield number, wire, start, value_start, end
        position = end


def _varint(buf: memoryview, position: int) -> tuple[int, int]:
    """Decode the varint at ``position``; return (value, position after it)."""
    value, shift = 0, 0
    while True:
        if position >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed protobuf varint")
        byte = buf[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def _varints(buf: memoryview, position: int, stop: int) -> list[int]:
    values = []
    while position < stop:
        value, position = _varint(buf, position)
        values.append(value)
    return values


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
