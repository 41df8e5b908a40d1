"""LUQ radix-2 FP4 gradients (levels, unbiasedness, underflow, SMP) and SAWB's 4-bit forward quantizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bitplan.quant import kernel_policy, luq_quantize, sawb_clip, sawb_quantize, sawb_ste


@pytest.fixture(autouse=True)
def eager_kernels():
    """These tests check the quantizers' math on the eager kernels (test_quant_kernels compares compiled ones)."""
    with kernel_policy(compile=False):
        yield


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_luq_level(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """Elementwise: q is 0 or ±α·2^k for an integer k in 0..7 (exactly)."""
    levels = torch.tensor([0.0] + [alpha * 2.0**k for k in range(8)], dtype=q.dtype)
    return (q.abs().unsqueeze(-1) == levels).any(-1)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 400), elements=st.floats(-1e4, 1e4, width=32)), st.integers(0, 2**31 - 1))
def test_levels_are_powers_of_two_times_alpha(values: np.ndarray, seed: int) -> None:
    x = torch.from_numpy(values)
    q = luq_quantize(x, generator=generator(seed))
    peak = float(x.abs().max())
    if peak == 0:
        assert torch.equal(q, torch.zeros_like(x))
        return
    alpha = float(np.float32(peak) / np.float32(2**7))  # exact unless subnormal (then rounded to nearest)
    if alpha * 2**7 < peak:  # the specification: a subnormal α rounds up, so α·2^7 ≥ max|x|
        alpha = float(np.nextafter(np.float32(alpha), np.float32(np.inf)))
    top = alpha * 2**7
    assert top >= peak and (top == peak or alpha < float(np.finfo(np.float32).tiny))
    assert bool(is_luq_level(q, alpha).all())
    assert bool((q * x >= 0).all())  # sign kept (or zero)
    assert float(q.abs().max()) <= top  # nothing clips; only a subnormal α puts the top level above max|x|
    # each magnitude lands on a neighbour: 0/α below α, else 2^n·α or 2^(n+1)·α around |x|
    magnitude = x.abs()
    assert bool(((q.abs() == 0) | (q.abs() >= torch.clamp(magnitude / 2, max=alpha))).all())
    assert bool((q.abs() <= torch.clamp(2 * magnitude, min=alpha)).all())


def test_subnormal_peak_stays_within_the_fp4_levels() -> None:
    # max|x| = 1580 subnormal steps: /2^7 = 12.34 steps rounds to 12 (top level 1536 < 1580, so 1580
    # would round to 2^8·α, outside FP4). Rounded up, α = 13 steps: 1580 lies between 832 and 1664.
    step = float(np.float32(2.0**-149))
    x = torch.full((64,), 1580 * step, dtype=torch.float32)
    q = luq_quantize(x, generator=generator(3))
    assert set(torch.unique(q).tolist()) <= {832 * step, 1664 * step}


def test_hand_checked_values() -> None:
    # max|x| = 128 -> α = 1; exact levels are kept, 3 rounds to 2 or 4, 0.5 underflows to 0 or 1
    x = torch.tensor([-128.0, 64.0, 1.0, 0.0, 3.0, 0.5])
    q = luq_quantize(x, generator=generator())
    assert q[:4].tolist() == [-128.0, 64.0, 1.0, 0.0]
    assert q[4].item() in (2.0, 4.0) and q[5].item() in (0.0, 1.0)


def test_unbiased_log_rounding_and_underflow() -> None:
    # α = 1 (one element pins max|x| = 128). Each other value has 100k independent copies; a draw
    # is one of two levels lo < x < hi, variance (hi − x)(x − lo); the mean of n copies is within
    # 5 standard errors of x (probability 1 − 6e-7 per value).
    n = 100_000
    values = torch.tensor([0.1, 0.5, 0.9, 1.5, 3.0, 5.0, 100.0, -7.0], dtype=torch.float64)
    bounds = [(0, 1), (0, 1), (0, 1), (1, 2), (2, 4), (4, 8), (64, 128), (-8, -4)]
    x = torch.cat([torch.tensor([128.0], dtype=torch.float64), values.repeat_interleave(n)])
    q = luq_quantize(x, generator=generator(5))[1:].view(len(values), n)
    for row, value, (lo, hi) in zip(q, values.tolist(), bounds):
        assert set(torch.unique(row).tolist()) <= {float(lo), float(hi)}
        tolerance = 5 * math.sqrt((hi - value) * (value - lo) / n)
        assert float(row.mean()) == pytest.approx(value, abs=tolerance)
    # stochastic underflow: 0.1 becomes α = 1 with probability 0.1
    assert float((q[0] == 1.0).double().mean()) == pytest.approx(0.1, abs=5 * math.sqrt(0.09 / n))


def test_smp_averages_samples_and_cuts_variance() -> None:
    n = 100_000
    x = torch.cat([torch.tensor([128.0]), torch.full((n,), 3.0)])  # 3 -> 2 or 4, variance (4−3)(3−2) = 1
    single = luq_quantize(x, generator=generator(1))[1:]
    smp4 = luq_quantize(x, generator=generator(2), samples=4)[1:]
    assert float(single.var()) == pytest.approx(1.0, rel=0.03)
    assert float(smp4.var()) == pytest.approx(1.0 / 4, rel=0.03)
    assert float(smp4.mean()) == pytest.approx(3.0, abs=5 * math.sqrt(0.25 / n))
    assert set(torch.unique(smp4 * 4).tolist()) <= {8.0, 10.0, 12.0, 14.0, 16.0}  # 4 draws of 2 or 4


def test_zero_empty_and_float64() -> None:
    assert torch.equal(luq_quantize(torch.zeros(5)), torch.zeros(5))
    assert luq_quantize(torch.empty(0)).shape == (0,)
    x = torch.randn(100, dtype=torch.float64, generator=generator())
    q = luq_quantize(x, generator=generator(1))
    assert q.dtype == torch.float64 and bool(is_luq_level(q, float(x.abs().max()) / 128).all())


def test_reproducible_with_generator() -> None:
    x = torch.randn(500, generator=generator())
    assert torch.equal(luq_quantize(x, generator=generator(9)), luq_quantize(x, generator=generator(9)))
    assert not torch.equal(luq_quantize(x, generator=generator(9)), luq_quantize(x, generator=generator(10)))


def test_sawb_clip_hand_checked() -> None:
    x = torch.tensor([1.0, -1.0, 3.0, -3.0])
    # mean(x²) = 5, mean|x| = 2: clip = 12.1·√5 − 12.2·2
    clip = 12.1 * math.sqrt(5.0) - 12.2 * 2.0
    assert float(sawb_clip(x)) == pytest.approx(clip, rel=1e-6)
    step = clip / 7  # 4 bits: levels −7..7 times clip/7
    expected = [round(1.0 / step) * step, -round(1.0 / step) * step, clip, -clip]  # 3 > clip saturates
    assert sawb_quantize(x).tolist() == pytest.approx(expected, rel=1e-6)


def test_sawb_levels_and_symmetry() -> None:
    x = torch.randn(10_000, generator=generator())
    q = sawb_quantize(x)
    clip = float(sawb_clip(x))
    assert torch.unique(q).numel() <= 15 and torch.equal(sawb_quantize(-x), -q)
    assert float(q.abs().max()) == pytest.approx(clip, rel=1e-6)
    inside = x.abs() <= clip
    assert float((q - x)[inside].abs().max()) <= clip / 7 / 2 * (1 + 1e-5)


def test_sawb_falls_back_to_max_when_the_fit_is_not_positive() -> None:
    constant = torch.full((6,), -0.75)  # 12.1·0.75 − 12.2·0.75 < 0
    assert float(sawb_clip(constant)) == pytest.approx(0.75)
    assert torch.allclose(sawb_quantize(constant), constant)
    x = torch.tensor([0.5, -2.0, 1.0])
    assert float(sawb_clip(x, 8)) == pytest.approx(2.0)  # no published coefficients for 8 bits
    assert float(sawb_clip(x, 8, coefficients=(1.0, 0.0))) == pytest.approx(math.sqrt((0.25 + 4 + 1) / 3))
    assert torch.equal(sawb_quantize(torch.zeros(3)), torch.zeros(3))


def test_sawb_straight_through_and_validation() -> None:
    w = torch.randn(20, generator=generator(), requires_grad=True)
    upstream = torch.randn(20, generator=generator(1))
    sawb_ste(w).backward(upstream)
    assert torch.equal(w.grad, upstream)
    assert sawb_ste(w, 32) is w
    with pytest.raises(ValueError, match="`bits` must be at least 2"):
        sawb_quantize(w, 1)
    with pytest.raises(ValueError, match="`samples` must be a positive integer"):
        luq_quantize(w, samples=0)
