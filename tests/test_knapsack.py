"""The min-sensitivity knapsack is exactly optimal: it equals brute force on small instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplan.errors import PlanError
from bitplan.plan.knapsack import BUDGET_TOLERANCE, noise_scale, solve_mckp


@settings(max_examples=60, deadline=None)
@given(
    layers=st.integers(1, 5),
    levels=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    slack=st.floats(0.0, 1.0),
)
def test_knapsack_equals_brute_force(layers: int, levels: int, seed: int, slack: float) -> None:
    rng = np.random.default_rng(seed)
    params = rng.integers(1, 1000, size=layers)
    bits = np.sort(rng.choice(np.arange(2, 17), size=levels, replace=False))
    cost = params[:, None] * bits[None, :]  # size in bits
    sensitivity = rng.exponential(size=layers)
    noise = sensitivity[:, None] * np.array([[noise_scale(int(b), 4) for b in bits]])
    low, high = cost.min(axis=1).sum(), cost.max(axis=1).sum()
    budget = low + slack * (high - low)  # slack → 1 can round a hair below `high` (an integer)
    limit = budget * (1 + BUDGET_TOLERANCE)  # the solver's documented bound
    choice, objective = solve_mckp(cost, noise, budget)
    best = min(
        (sum(noise[i, c] for i, c in enumerate(combo)), combo)
        for combo in itertools.product(range(levels), repeat=layers)
        if sum(cost[i, c] for i, c in enumerate(combo)) <= limit
    )
    assert sum(cost[i, c] for i, c in enumerate(choice)) <= limit
    assert objective == pytest.approx(best[0], rel=1e-7, abs=1e-12)


def test_unreachable_budget_names_the_range() -> None:
    cost = np.array([[4, 8], [40, 80]])
    with pytest.raises(PlanError, match="cheapest assignment costs 44 and the dearest 88"):
        solve_mckp(cost, np.ones((2, 2)), 10)


def test_noise_scale_follows_the_step_size() -> None:
    assert noise_scale(4, 4) == 1.0
    assert noise_scale(8, 4) == pytest.approx((15 / 255) ** 2)
    assert noise_scale(32, 4) == 0.0


def test_milp_fallback_agrees_with_the_dp() -> None:
    rng = np.random.default_rng(3)
    cost = rng.integers(1, 500, size=(8, 1))* np.array([[2, 4, 6, 8]])
    noise = rng.exponential(size=(8, 1)) * np.array([[noise_scale(b, 4) for b in (2, 4, 6, 8)]])
    budget = float(cost[:, 1].sum())
    exact, exact_objective = solve_mckp(cost, noise, budget)
    forced, forced_objective = solve_mckp(cost, noise, budget, max_states=1)
    assert forced_objective == pytest.approx(exact_objective, rel=1e-5)
    assert sum(cost[i, c] for i, c in enumerate(forced)) <= budget
