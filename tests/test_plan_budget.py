"""The order-preserving budget rule is exact: compared with brute force over every order-preserving assignment."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations_with_replacement

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplan.plan import Budget, Factor, Strategy, make_plan
from bitplan.plan.budget import BudgetSearchTooLarge, cost_of, solve_monotone
from bitplan.plan.synthetic import GemmShape, profile_from_gemms

ORDER = "order-preserving"  # the seed paper's rule, which these tests check against brute force (fill: test_plan_fill.py)


def brute_force(weights: list[int], values: list[int], capacity: int) -> int | None:
    """Largest Σ w·v over all non-decreasing level sequences that fits, or None."""
    costs = [cost_of(levels, weights, values) for levels in combinations_with_replacement(range(len(values)), len(weights))]
    fitting = [cost for cost in costs if cost <= capacity]
    return max(fitting) if fitting else None


problems = st.tuples(
    st.lists(st.integers(0, 60), min_size=1, max_size=6),
    st.lists(st.integers(1, 40), min_size=1, max_size=5, unique=True).map(sorted),
    st.floats(0, 1),
)


@settings(max_examples=200, deadline=None)
@given(problems, st.sampled_from(["auto", "top-down", "bottom-up", "meet-in-middle"]))
def test_solver_is_exact_and_order_preserving(problem: tuple[list[int], list[int], float], order: str) -> None:
    weights, values, fraction = problem
    if order == "meet-in-middle" and len(values) < 4:
        order = "auto"
    low, high = values[0] * sum(weights), values[-1] * sum(weights)
    capacity = int(low - 3 + fraction * (high - low + 6))
    levels = solve_monotone(weights, values, capacity, order=order)
    best = brute_force(weights, values, capacity)
    if best is None:
        assert levels is None
        return
    assert levels == sorted(levels)
    assert cost_of(levels, weights, values) == best


def test_solver_prefers_the_assignment_nearest_the_mapping_among_equal_costs() -> None:
    # equal weights: every plan with two groups per level costs the same; the even spread is preferred
    assert solve_monotone([1] * 10, [4, 5, 6, 7, 8], 60) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_solver_reports_a_search_that_is_too_large() -> None:
    weights = [1000 + 7919 * g % 9973 for g in range(400)]
    with pytest.raises(BudgetSearchTooLarge):
        solve_monotone(weights, [4, 5, 6, 7, 8, 9, 10], 6 * sum(weights) + 1, work_limit=3)


@pytest.mark.parametrize("mean", [4.3, 6.3, 7.9])
def test_solver_handles_large_profiles_quickly(mean: float) -> None:
    weights = [(g * 7919) % 1000 + 1 for g in range(10_000)]
    capacity = int(mean * sum(weights))
    levels = solve_monotone(weights, [4, 5, 6, 7, 8], capacity, work_limit=200_000)
    assert cost_of(levels, weights, [4, 5, 6, 7, 8]) == capacity  # gcd 1: the budget itself is reachable


def monotone_sizes(profile, factor: Factor, strategy: Strategy, levels: list[int], weight_of) -> list[int]:
    """Size of every assignment monotone in the factor (ties equal), by brute force."""
    values: dict[float, int] = {}
    for layer in profile.weight_layers:
        value = float(getattr(layer, factor.field))
        values[value] = values.get(value, 0) + weight_of(layer)
    chain = sorted(values, reverse=strategy is Strategy.C_minus)
    return [
        sum(values[v] * levels[i] for v, i in zip(chain, assignment))
        for assignment in combinations_with_replacement(range(len(levels)), len(chain))
    ]


small_profiles = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)), min_size=1, max_size=6
).map(lambda rows: profile_from_gemms("r", [GemmShape(f"l{i}", *row) for i, row in enumerate(rows)], extra_params=5))


@settings(max_examples=60, deadline=None)
@given(
    small_profiles,
    st.sampled_from([Factor.A, Factor.F, Factor.D, Factor.capacity]),
    st.sampled_from([Strategy.C_plus, Strategy.C_minus]),
    st.lists(st.integers(2, 12), min_size=2, max_size=4, unique=True).map(sorted),
    st.floats(0, 1),
)
def test_avg_bits_budget_is_honoured_and_tight(profile, factor, strategy, levels, fraction) -> None:
    budget = round(levels[0] + fraction * (levels[-1] - levels[0]), 3)
    plan = make_plan(profile, factor=factor, strategy=strategy, levels=levels, budget=Budget(kind="avg_bits", value=budget), budget_rule=ORDER)
    params = plan.estimates.planned_params
    size = round(plan.estimates.avg_bits * params)
    assert plan.estimates.avg_bits <= budget
    limit = Fraction(repr(budget)) * params  # exact, as the planner reads the budget
    feasible = [s for s in monotone_sizes(profile, factor, strategy, levels, lambda layer: layer.params) if s <= limit]
    assert size == max(feasible)
    direction = 1 if strategy is Strategy.C_plus else -1
    pairs = sorted((layer.factor_value, layer.bits) for layer in plan.layers)
    assert all(b1 == b2 if v1 == v2 else direction * (b2 - b1) >= 0 for (v1, b1), (v2, b2) in zip(pairs, pairs[1:]))


@settings(max_examples=40, deadline=None)
@given(small_profiles, st.sampled_from([Strategy.C_plus, Strategy.C_minus]), st.floats(0, 1))
def test_bitops_budget_is_honoured_and_tight(profile, strategy, fraction) -> None:
    levels = [4, 5, 6, 8]
    macs = sum(layer.macs for layer in profile.weight_layers)
    budget = float(int(macs * 8 * (levels[0] + fraction * (levels[-1] - levels[0]))))
    plan = make_plan(profile, factor="A", strategy=strategy, levels=levels, budget=Budget(kind="bitops", value=budget), budget_rule=ORDER)
    assert plan.estimates.bitops_forward <= budget
    feasible = [
        8 * s for s in monotone_sizes(profile, Factor.A, strategy, levels, lambda layer: layer.macs) if 8 * s <= budget
    ]
    assert plan.estimates.bitops_forward == max(feasible)


def test_mbit_budget_counts_every_other_parameter_at_32_bits() -> None:
    profile = profile_from_gemms("two", [GemmShape("a", 1, 10, 10, 1), GemmShape("b", 1, 20, 10, 2)], extra_params=100)
    # sizes: 100·b_a + 200·b_b + 100·32; budget 4800 bits -> 100·b_a + 200·b_b ≤ 1600 -> (4, 6) under C+ on A
    plan = make_plan(profile, factor="A", strategy="C+", bits=(4, 8), budget=Budget(kind="mbit", value=0.0048), budget_rule=ORDER)
    assert plan.bits_by_name() == {"a": 4, "b": 6}
    assert plan.estimates.size_bits == 4800


def test_uniform_under_a_budget_is_the_widest_fitting_width() -> None:
    profile = profile_from_gemms("two", [GemmShape("a", 1, 10, 10, 1), GemmShape("b", 1, 20, 10, 2)])
    plan = make_plan(profile, factor="A", strategy="U", bits=(4, 8), budget=Budget(kind="avg_bits", value=6.9))
    assert set(plan.bits_by_name().values()) == {6}


def test_random_under_a_budget_is_monotone_in_a_seeded_order() -> None:
    shapes = [GemmShape(f"l{i}", 1, 10 + i, 10, i + 1) for i in range(8)]
    profile = profile_from_gemms("eight", shapes)
    budget = Budget(kind="avg_bits", value=6.2)
    plans = [make_plan(profile, factor="A", strategy="R", seed=seed, budget=budget, budget_rule=ORDER) for seed in (0, 1)]
    for plan in plans:
        assert plan.estimates.avg_bits <= 6.2
    assert plans[0] == make_plan(profile, factor="A", strategy="R", seed=0, budget=budget, budget_rule=ORDER)
    assert plans[0].bits_by_name() != plans[1].bits_by_name()


def test_kept_layers_are_outside_the_mean_but_inside_the_size() -> None:
    shapes = [GemmShape(f"l{i}", 1, 10, 10, i + 1) for i in range(4)]
    profile = profile_from_gemms("four", shapes)
    plan = make_plan(
        profile, factor="D", strategy="C+", keep=["first"], keep_bits=8, budget=Budget(kind="avg_bits", value=5),
        budget_rule=ORDER,
    )
    # the mean is over the three assigned weights: 100·(b1+b2+b3) ≤ 5·300, reached exactly; l0 stays at 8
    bits = plan.bits_by_name()
    assert bits["l0"] == 8 and bits["l1"] + bits["l2"] + bits["l3"] == 15 and bits["l1"] <= bits["l2"] <= bits["l3"]
    assert plan.estimates.avg_bits == 5.0
    mbit = make_plan(
        profile, factor="D", strategy="C+", keep=["first"], keep_bits=8, budget=Budget(kind="mbit", value=0.002),
        budget_rule=ORDER,
    )
    # the size counts the kept weight: 800 + 100·(b1+b2+b3) ≤ 2000 -> 4, 4, 4
    assert mbit.bits_by_name() == {"l0": 8, "l1": 4, "l2": 4, "l3": 4}
