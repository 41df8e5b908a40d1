"""Bit packing: hand-computed streams and a round trip for every width 1–16."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplan.export.packing import pack_codes, pack_rows, packed_nbytes, unpack_codes


def test_two_bit_codes_fill_a_byte_from_its_low_bits():
    # codes 1, 2, 3 at bits 0-1, 2-3, 4-5: 0b00_11_10_01 = 57
    assert pack_codes(torch.tensor([1, 2, 3]), 2).tolist() == [57]


def test_a_nine_bit_code_straddles_bytes_little_endian():
    # code 0x1FF at bits 0-8, code 1 at bits 9-17: bytes 0xFF, 0b0000_0011, 0b0000_0000
    assert pack_codes(torch.tensor([0x1FF, 1]), 9).tolist() == [0xFF, 0x03, 0x00]


def test_sixteen_bit_codes_are_little_endian_words():
    assert pack_codes(torch.tensor([0x1234, 0xFFFF]), 16).tolist() == [0x34, 0x12, 0xFF, 0xFF]


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 16), data=st.data())
def test_round_trip_every_width(bits: int, data):
    codes = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=0, max_size=70))
    tensor = torch.tensor(codes, dtype=torch.int64)
    packed = pack_codes(tensor, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_nbytes(len(codes), bits) == (len(codes) * bits + 7) // 8
    assert unpack_codes(packed, bits, len(codes)).tolist() == codes


@pytest.mark.parametrize("bits", range(1, 17))
def test_extreme_codes_of_every_width_across_group_and_word_boundaries(bits: int):
    codes = torch.tensor([2**bits - 1, 0] * 13 + [2**bits - 1] * 7)  # 33 codes: 4 full groups and one partial
    assert torch.equal(unpack_codes(pack_codes(codes, bits), bits, codes.numel()).long(), codes)


def test_bad_widths_and_lengths_are_refused():
    with pytest.raises(ValueError, match="1 to 16"):
        pack_codes(torch.tensor([1]), 17)
    with pytest.raises(ValueError, match="take 2 bytes"):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 4, 4)


@pytest.mark.parametrize("bits", range(1, 9))
def test_rows_are_compressed_tensors_dense_int32_layout(bits: int):
    """``pack_rows`` equals compressed-tensors' own ``pack_to_int32`` (dense since 0.18) on odd shapes."""
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    from importlib.metadata import version

    if tuple(int(part) for part in version("compressed-tensors").split(".")[:2]) < (0, 18):
        pytest.skip("compressed-tensors before 0.18 pads odd widths instead of packing them densely")
    generator = torch.Generator().manual_seed(bits)
    for rows, cols in [(5, 33), (3, 7), (4, 96), (2, 1)]:
        codes = torch.randint(0, 2**bits, (rows, cols), dtype=torch.uint8, generator=generator)
        signed = (codes.to(torch.int16) - 2 ** (bits - 1)).to(torch.int8)
        packed = pack_rows(codes, bits).view(torch.int32)
        assert packed.shape == (rows, -(-cols * bits // 32))
        assert torch.equal(packed, helpers.pack_to_int32(signed, bits))
        column = pack_rows(codes[:, 0].reshape(1, -1), bits).view(torch.int32).reshape(-1, 1)  # packed along dim 0
        assert torch.equal(column, helpers.pack_to_int32(signed[:, :1], bits, packed_dim=0))


def test_rows_hand_computed_three_bit_words():
    # 11 three-bit codes of value 7 fill bits 0-32 of the row: word 0 all ones, word 1 bit 0 set
    packed = pack_rows(torch.full((1, 11), 7), 3).view(torch.int32)
    assert packed.tolist() == [[-1, 1]]
