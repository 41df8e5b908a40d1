"""GEMMLOWP uniform quantizer: levels, rounding error, ranges, stochastic rounding, codes, STE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bitplan.quant import (
    SCALE_FLOOR,
    dequantize_codes,
    fake_quant_ste,
    kernel_policy,
    uniform_codes,
    uniform_quantize,
)

FINITE = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


def reference(x: np.ndarray, bits: int, low: float, high: float) -> np.ndarray:
    """docs/quantizers.md's formula in numpy float64, round half to even like torch.round."""
    scale = max((high - low) / (2**bits - 1), 1e-8)
    q = np.clip(np.round((x - low) / scale), 0, 2**bits - 1)
    return q * scale + low


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def eager_kernels():
    """These tests check the quantizers' math on the eager kernels (test_quant_kernels compares compiled ones)."""
    with kernel_policy(compile=False):
        yield


def test_hand_computed_two_bits() -> None:
    # range [0, 1] at 2 bits: scale 1/3, levels 0, 1/3, 2/3, 1; 0.5 lies on a tie -> even code 2
    x = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0], dtype=torch.float64)
    out = uniform_quantize(x, 2)
    assert out.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0], abs=1e-15)


def test_matches_formula_bit_for_bit_in_float64() -> None:
    x = torch.randn(1000, dtype=torch.float64, generator=generator())
    for bits in (1, 3, 8, 16):
        expected = reference(x.numpy(), bits, float(x.min()), float(x.max()))
        assert np.array_equal(uniform_quantize(x, bits).numpy(), expected)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=FINITE), st.integers(1, 8), st.booleans())
def test_levels_and_nearest_error(values: np.ndarray, bits: int, stochastic: bool) -> None:
    x = torch.from_numpy(values)
    out = uniform_quantize(x, bits, stochastic=stochastic, generator=generator())
    low, high = float(x.min()), float(x.max())
    scale = max((high - low) / (2**bits - 1), SCALE_FLOOR)
    slack = 1e-5 * max(abs(low), abs(high), 1e-30)  # float32 arithmetic in (x - min)/scale and back
    assert torch.unique(out).numel() <= 2**bits
    top = low + (2**bits - 1) * scale  # = max, unless the 1e-8 scale floor spreads the levels wider
    assert float(out.min()) >= low - slack and float(out.max()) <= top + slack
    bound = scale if stochastic else scale / 2  # stochastic: one of the two neighbouring levels
    assert float((out - x).abs().max()) <= bound + slack


def test_sixteen_bits_and_full_precision() -> None:
    x = torch.linspace(-1, 1, 70000, dtype=torch.float64)
    codes, scale, low = uniform_codes(x, 16)
    assert codes.dtype == torch.int32 and int(codes.max()) == 2**16 - 1 and int(codes.min()) == 0
    assert float((uniform_quantize(x, 16) - x).abs().max()) <= float(scale) / 2
    assert uniform_quantize(x, 32) is x


def test_constant_tensor_and_scale_floor() -> None:
    x = torch.full((3, 4), -2.5)
    assert torch.equal(uniform_quantize(x, 4), x)
    assert torch.equal(uniform_quantize(x, 4, channel_dim=0), x)
    assert torch.equal(uniform_quantize(x, 4, stochastic=True), x)
    _, scale, zero_point = uniform_codes(x, 4)
    assert float(scale) == pytest.approx(SCALE_FLOOR) and float(zero_point) == -2.5


def test_empty_tensors() -> None:
    empty = torch.empty(0, 3)
    assert uniform_quantize(empty, 4).shape == (0, 3)
    assert uniform_quantize(empty, 4, channel_dim=1).shape == (0, 3)
    codes, scale, _ = uniform_codes(empty, 4, channel_dim=1)
    assert codes.shape == (0, 3) and scale.shape == (1, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_dtype_is_kept(dtype: torch.dtype) -> None:
    x = torch.randn(64, generator=generator()).to(dtype)
    out = uniform_quantize(x, 4, stochastic=True)
    assert out.dtype == dtype and torch.unique(out).numel() <= 16


def test_per_channel_ranges_are_exact_at_min_and_close_at_max() -> None:
    # channels with very different ranges along dim 1 of a 4-d tensor
    x = torch.randn(2, 5, 3, 3, generator=generator()) * torch.tensor([1e-3, 1.0, 10.0, 100.0, 1e4]).view(1, 5, 1, 1)
    out = uniform_quantize(x, 3, channel_dim=1)
    for c in range(5):
        channel, quantized = x[:, c], out[:, c]
        assert float(quantized.min()) == float(channel.min())  # zero point = min, code 0
        top, magnitude = float(channel.max()), float(channel.abs().max())
        ulp = float(np.spacing(np.float32(magnitude)))  # max = 7·scale + min, rounded in float32
        assert float(quantized.max()) == pytest.approx(top, abs=4 * ulp)
        assert torch.unique(quantized).numel() <= 8
    assert torch.equal(out, uniform_quantize(x, 3, channel_dim=-3))


def test_per_channel_equals_quantizing_each_channel_alone() -> None:
    w = torch.randn(6, 4, 3, generator=generator())
    out = uniform_quantize(w, 4, channel_dim=0)
    for c in range(6):
        assert torch.equal(out[c], uniform_quantize(w[c], 4))


def test_range_overrides_clamp_and_per_channel_bounds() -> None:
    x = torch.tensor([-5.0, 0.0, 0.25, 0.5, 5.0])
    out = uniform_quantize(x, 2, x_min=0.0, x_max=torch.tensor(0.75))  # scale 0.25
    assert out.tolist() == [0.0, 0.0, 0.25, 0.5, 0.75]
    rows = torch.tensor([[0.0, 1.0, 9.0], [0.0, 1.0, 9.0]])
    out = uniform_quantize(rows, 1, channel_dim=0, x_min=torch.tensor([0.0, 0.0]), x_max=torch.tensor([1.0, 2.0]))
    assert out.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 2.0]]  # row 1: 1.0 / 2.0 = 0.5 -> even code 0
    only_max = uniform_quantize(x, 2, x_max=1.0)  # min from the data
    assert float(only_max.min()) == -5.0 and float(only_max.max()) == 1.0


def test_non_contiguous_input_matches_contiguous() -> None:
    x = torch.randn(8, 16, generator=generator()).t()
    assert torch.equal(uniform_quantize(x, 3), uniform_quantize(x.contiguous(), 3))
    assert torch.equal(uniform_quantize(x, 3, channel_dim=1), uniform_quantize(x.contiguous(), 3, channel_dim=1))


def test_stochastic_rounding_is_unbiased_across_elements() -> None:
    # 200k copies of each value get independent noise: the mean of the copies estimates E[q].
    # Each draw is one of two levels a scale apart, so its std is at most scale/2; the mean of
    # n draws is within 5·scale/(2√n) of E[q] = x with probability 1 − 6e-7 per value.
    n = 200_000
    values = torch.tensor([0.0, 0.1, 0.37, 0.5, 0.93, 1.0])
    x = values.repeat_interleave(n)
    out = uniform_quantize(x, 3, stochastic=True, generator=generator(7))
    scale = 1.0 / 7
    means = out.view(len(values), n).double().mean(dim=1)
    assert torch.allclose(means, values.double(), atol=5 * scale / (2 * math.sqrt(n)), rtol=0)


def test_stochastic_rounding_is_unbiased_across_calls() -> None:
    x = torch.tensor([0.0, 0.05, 0.31, 0.62, 0.99, 1.0])
    draws = torch.stack([uniform_quantize(x, 2, stochastic=True, generator=generator(s)) for s in range(500)])
    scale = 1.0 / 3
    assert torch.allclose(draws.double().mean(0), x.double(), atol=5 * scale / (2 * math.sqrt(500)), rtol=0)
    levels = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])
    assert bool(torch.isclose(draws.unsqueeze(-1), levels, atol=1e-6, rtol=0).any(-1).all())


def test_stochastic_samples_reduce_variance() -> None:
    n = 100_000
    x = torch.full((n,), 0.5).index_put_((torch.tensor([0, 1]),), torch.tensor([0.0, 1.0]))  # range [0, 1]
    one = uniform_quantize(x, 1, stochastic=True, generator=generator(1))[2:]
    four = uniform_quantize(x, 1, stochastic=True, generator=generator(2), samples=4)[2:]
    # one draw: Bernoulli(0.5), variance 0.25; SMP-4 average: 0.0625 (sampling error ~1%)
    assert float(one.var()) == pytest.approx(0.25, rel=0.03)
    assert float(four.var()) == pytest.approx(0.25 / 4, rel=0.03)
    assert float(four.mean()) == pytest.approx(0.5, abs=0.005)


def test_generator_makes_stochastic_rounding_reproducible() -> None:
    x = torch.randn(1000, generator=generator())
    first = uniform_quantize(x, 4, stochastic=True, generator=generator(3))
    assert torch.equal(first, uniform_quantize(x, 4, stochastic=True, generator=generator(3)))
    assert not torch.equal(first, uniform_quantize(x, 4, stochastic=True, generator=generator(4)))


@pytest.mark.parametrize("channel_dim", [None, 0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_codes_round_trip_equals_fake_quant(channel_dim: int | None, dtype: torch.dtype) -> None:
    w = torch.randn(4, 6, 3, generator=generator()).to(dtype)
    codes, scale, zero_point = uniform_codes(w, 5, channel_dim=channel_dim)
    assert codes.dtype == torch.uint8 and codes.shape == w.shape and int(codes.max()) <= 31
    expected_shape = () if channel_dim is None else tuple(s if i == channel_dim else 1 for i, s in enumerate(w.shape))
    assert scale.shape == expected_shape and zero_point.shape == expected_shape
    decoded = dequantize_codes(codes, scale, zero_point).to(dtype)
    assert torch.equal(decoded, uniform_quantize(w, 5, channel_dim=channel_dim))


def test_code_dtypes_by_width() -> None:
    x = torch.randn(10, generator=generator())
    assert uniform_codes(x, 8)[0].dtype == torch.uint8
    assert uniform_codes(x, 9)[0].dtype == torch.int16
    assert uniform_codes(x, 16)[0].dtype == torch.int32


def test_straight_through_gradient() -> None:
    w = torch.randn(8, 5, generator=generator(), requires_grad=True)
    upstream = torch.randn(8, 5, generator=generator(1))
    out = fake_quant_ste(w, 3, channel_dim=0, stochastic=True)
    assert torch.unique(out.detach()[0]).numel() <= 8
    out.backward(upstream)
    assert torch.equal(w.grad, upstream)
    assert fake_quant_ste(w, 32) is w


def test_straight_through_with_tensor_bounds_leaves_them_alone() -> None:
    x = torch.randn(10, generator=generator(), requires_grad=True)
    low, high = torch.tensor(-1.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    fake_quant_ste(x, 4, x_min=low, x_max=high).sum().backward()
    assert torch.equal(x.grad, torch.ones(10)) and low.grad is None and high.grad is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 0}, "`bits` must be an integer from 1 to 32"),
        ({"bits": 33}, "`bits` must be an integer from 1 to 32"),
        ({"bits": True}, "`bits` must be an integer from 1 to 32"),
        ({"bits": 4, "channel_dim": 2}, "`channel_dim` must be a dimension of the 2-d tensor"),
        ({"bits": 4, "x_min": torch.zeros(3)}, "`x_min` must hold one value"),
        ({"bits": 4, "samples": 0}, "`samples` must be a positive integer"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        uniform_quantize(torch.zeros(2, 2), **kwargs)


def test_integer_input_and_32_bit_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="`x` must be a floating-point tensor"):
        uniform_quantize(torch.arange(4), 4)
    with pytest.raises(ValueError, match="must be below 32 for integer codes"):
        uniform_codes(torch.zeros(2), 32)
