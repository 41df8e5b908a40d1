"""Floating-point accumulation: the rounding simulator against IEEE casts, the VRR model against Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplan.accumulation import (
    mantissa_requirements,
    measured_vrr,
    predicted_vrr,
    required_mantissa_bits,
    round_mantissa,
    simulate_accumulation,
)
from bitplan.plan.synthetic import GemmShape, profile_from_gemms

RNG = np.random.default_rng(2026)


def test_round_mantissa_by_hand() -> None:
    # m = 2: 4 significant bits... no: 1 hidden + 2 fraction bits, so [8, 16) has step 2
    values = np.array([9.0, 11.0, 10.0, 13.0, -9.0, 0.0, 7.0, 7.5])
    assert round_mantissa(values, 2).tolist() == [8.0, 12.0, 10.0, 12.0, -8.0, 0.0, 7.0, 8.0]
    assert round_mantissa(values, None) is values


@pytest.mark.parametrize(("bits", "dtype"), [(23, np.float32), (10, np.float16)])
def test_round_mantissa_equals_ieee_casts(bits: int, dtype: type) -> None:
    # magnitudes 2^-12 .. 2^14: inside float16's normal range (2^-14 .. 65504), so exponent limits play no part
    x = RNG.choice([-1.0, 1.0], 200_000) * np.exp2(RNG.uniform(-12, 14, 200_000))
    assert np.array_equal(round_mantissa(x, bits), x.astype(dtype).astype(np.float64))


def test_round_mantissa_equals_bfloat16() -> None:
    # float32 inputs, so torch's cast to bfloat16 rounds once
    x = (RNG.standard_normal(100_000) * np.exp2(RNG.integers(-60, 60, 100_000))).astype(np.float32)
    expected = torch.from_numpy(x).to(torch.bfloat16).to(torch.float64).numpy()
    x = x.astype(np.float64)
    assert np.array_equal(round_mantissa(x, 7), expected)


@given(
    x=st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_subnormal=False),
    y=st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_subnormal=False),
    bits=st.integers(0, 40),
)
def test_round_mantissa_properties(x: float, y: float, bits: int) -> None:
    rounded = float(round_mantissa(np.array([x]), bits)[0])
    assert float(round_mantissa(np.array([rounded]), bits)[0]) == rounded  # idempotent
    if x != 0:
        _, exponent = np.frexp(x)
        assert abs(rounded - x) <= 2.0 ** (int(exponent) - bits - 2)  # within half an ulp
        fraction, rounded_exponent = np.frexp(rounded)
        assert float(fraction * 2 ** (bits + 1)).is_integer()  # at most m + 1 significant bits
    low, high = sorted((x, y))
    assert round_mantissa(np.array([low]), bits)[0] <= round_mantissa(np.array([high]), bits)[0]  # monotone


def test_a_sum_of_ones_stagnates_at_8_with_two_fraction_bits() -> None:
    # 1, 2, ..., 8 are exact; 8 + 1 = 9 is a tie between 8 and 10 and goes to the even 8
    assert simulate_accumulation(np.ones((1, 20)), 2).tolist() == [8.0]
    assert simulate_accumulation(np.ones((1, 20)), 2, chunk=4).tolist() == [20.0]  # chunk sums of 4 are exact


def test_simulation_equals_float32_accumulation() -> None:
    terms = RNG.standard_normal((50, 300)).astype(np.float32).astype(np.float64)
    expected = np.zeros(50, dtype=np.float32)
    for column in range(300):
        expected = expected + terms[:, column].astype(np.float32)
    assert np.array_equal(simulate_accumulation(terms, 23), expected.astype(np.float64))
    chunk_sums = np.zeros((50, 10), dtype=np.float32)
    for column in range(300):
        chunk_sums[:, column // 30] += terms[:, column].astype(np.float32)
    outer = np.zeros(50, dtype=np.float32)
    for index in range(10):
        outer = outer + chunk_sums[:, index]
    assert np.array_equal(simulate_accumulation(terms, 23, chunk=30), outer.astype(np.float64))


# Model vs Monte Carlo. The model is bitplan's derivation (docs/accumulation.md); measured VRR is
# Σ computed² / Σ exact² over 2000 sums of i.i.d. N(0, 1) products on the same draws.
CASES = [(m, n, chunk) for m in (4, 6, 8) for n in (64, 512, 2048) for chunk in (None, 32)]


@pytest.mark.parametrize(("mantissa", "length", "chunk"), CASES)
def test_model_matches_monte_carlo(mantissa: int, length: int, chunk: int | None) -> None:
    terms = np.random.default_rng(mantissa * 10_000 + length).standard_normal((2000, length))
    measured = measured_vrr(terms, mantissa, chunk)
    predicted = predicted_vrr(length, mantissa, chunk=chunk)
    assert abs(predicted - measured) <= (0.02 if measured >= 0.95 else 0.06), (predicted, measured)


@pytest.mark.parametrize(("mantissa", "length"), [(4, 512), (6, 512), (6, 2048), (8, 2048)])
def test_model_matches_monte_carlo_with_coarse_products(mantissa: int, length: int) -> None:
    # products with 3 fraction bits: discrete values, so sums tie and partial swamping is coarser
    terms = round_mantissa(np.random.default_rng(mantissa * 10_000 + length).standard_normal((2000, length)), 3)
    measured = measured_vrr(terms, mantissa)
    predicted = predicted_vrr(length, mantissa, product_mantissa_bits=3)
    assert abs(predicted - measured) <= (0.01 if measured >= 0.95 else 0.05), (predicted, measured)


def test_the_model_sees_the_knee() -> None:
    # m = 4: n = 256 loses ~3 %, n = 2048 about a third; chunks of 32 bring it back within 1 %
    assert 0.95 < predicted_vrr(256, 4) < 0.99
    assert 0.55 < predicted_vrr(2048, 4) < 0.75
    assert abs(1 - predicted_vrr(2048, 4, chunk=32)) < 0.015
    assert abs(1 - predicted_vrr(4096, 30)) < 1e-6  # a wide accumulator keeps everything


@settings(max_examples=10, deadline=None)
@given(length=st.integers(64, 4096), mantissa=st.integers(5, 9))
def test_vrr_depends_on_length_over_four_to_the_mantissa(length: int, mantissa: int) -> None:
    # one more fraction bit halves the ulp, so four times the terms swamp alike (the sum grows as √n)
    assert abs(predicted_vrr(4 * length, mantissa + 1) - predicted_vrr(length, mantissa)) < 0.03


@pytest.mark.parametrize("length", [27, 576, 1024, 32768])
def test_required_bits_are_the_fewest_within_tolerance(length: int) -> None:
    bits = required_mantissa_bits(length, tolerance=0.01)
    assert abs(1 - predicted_vrr(length, bits)) <= 0.01
    assert bits == 0 or abs(1 - predicted_vrr(length, bits - 1)) > 0.01
    assert required_mantissa_bits(length, tolerance=0.01, chunk=32) <= bits


def test_required_bits_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        required_mantissa_bits(10, tolerance=0)
    with pytest.raises(ValueError, match="length"):
        predicted_vrr(0, 4)


def test_mantissa_requirements_per_gemm() -> None:
    profile = profile_from_gemms("toy", [GemmShape("a", 1024, 27, 16, 1), GemmShape("b", 1024, 576, 64, 2)])
    report = mantissa_requirements(profile, chunk=32)
    assert [layer.name for layer in report.layers] == ["a", "b"]
    b = report.layers[1]
    assert b.lengths.model_dump() == {"forward": 576, "grad_input": 64, "grad_weight": 1024}
    assert b.plain.forward == required_mantissa_bits(576)
    assert b.chunked.grad_weight == required_mantissa_bits(1024, chunk=32) <= b.plain.grad_weight
    assert report.chunk == 32 and report.tolerance == 0.01


def test_edge_drift_by_hand() -> None:
    from scipy.stats import norm

    from bitplan.accumulation import _edge_drift

    # u = 16: only the edge value B itself moves measurably: down by u/2 when p < −u/4, probability Φ(−4);
    # it stands for u of |s|, so D = −u·(u/2)·Φ(−4); the moves from B − u/2 up and down cancel
    assert _edge_drift(16.0) == pytest.approx(-16 * 8 * norm.cdf(-4), rel=1e-3)
    # small ulps: the computed drift meets the asymptote −u²/32 the model uses below 2^−4
    assert _edge_drift(2.0**-4 + 1e-12) == pytest.approx(-(2.0**-8) / 32, rel=0.01)
