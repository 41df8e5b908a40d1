"""Budgets that are used: the fill rule, R at a budget, first-last, plans from chosen bits, per-level knapsack.

Oracles: brute force over every assignment (small problems), hand-computed plans, and the
guarantee of the fill rule (no single one-level raise fits afterwards).
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplan.errors import PlanError
from bitplan.plan import Budget, make_plan
from bitplan.plan.fill import fill_levels, random_levels, shifted_levels
from bitplan.plan.first_last import first_last_plan
from bitplan.plan.planner import plan_from_bits
from bitplan.plan.render import layers_table, plan_title, summary_table
from bitplan.plan.request import MeasuredScores
from bitplan.plan.synthetic import GemmShape, profile_from_gemms, resnet20_profile

RESNET20 = resnet20_profile()
LOW_BITS = [1, 2, 3, 4, 8]

small_profiles = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(1, 4)), min_size=1, max_size=7
).map(lambda rows: profile_from_gemms("r", [GemmShape(f"l{i}", *row) for i, row in enumerate(rows)], extra_params=3))
menus = st.lists(st.integers(1, 8), min_size=2, max_size=5, unique=True).map(sorted)


def no_raise_fits(plan, levels: list[int], budget: float) -> bool:
    """The fill guarantee: raising any one layer by one level would exceed the budget."""
    size = sum(layer.params * layer.bits for layer in plan.layers)
    capacity = budget * plan.estimates.planned_params
    for layer in plan.layers:
        index = levels.index(layer.bits)
        if index + 1 < len(levels) and size + layer.params * (levels[index + 1] - layer.bits) <= capacity + 1e-9:
            return False
    return True


@settings(max_examples=60, deadline=None)
@given(small_profiles, st.sampled_from(["A:C+", "A:C-", "F:C+", "D:C-", "capacity:R", "A:R"]), menus, st.floats(0, 1), st.integers(0, 99))
def test_fill_reaches_the_budget_within_one_level_step(profile, rule, levels, fraction, seed) -> None:
    factor, strategy = rule.split(":")
    budget = round(levels[0] + fraction * (levels[-1] - levels[0]), 3)
    plan = make_plan(profile, factor=factor, strategy=strategy, levels=levels, seed=seed, budget=Budget(kind="avg_bits", value=budget))
    assert plan.budget_reached == plan.estimates.avg_bits <= budget
    assert no_raise_fits(plan, levels, budget)
    below_top = [layer.bits for layer in plan.layers if layer.bits < levels[-1]]
    if below_top:  # within one level step of the budget (the step above some layer's level)
        step = max(levels[levels.index(b) + 1] - b for b in below_top)
        assert plan.estimates.avg_bits > budget - step


@settings(max_examples=30, deadline=None)
@given(st.floats(1.05, 7.4), st.integers(0, 10_000))  # above 7.5 bits only one small layer can drop to 4
def test_r_at_a_budget_is_random_and_within_one_step(budget: float, seed: int) -> None:
    budget = round(budget, 2)
    plans = [
        make_plan(RESNET20, factor="A", strategy="R", levels=LOW_BITS, seed=s, budget=Budget(kind="avg_bits", value=budget))
        for s in (seed, seed + 1)
    ]
    for plan in plans:
        low = max(level for level in LOW_BITS if level <= budget)
        step = LOW_BITS[LOW_BITS.index(low) + 1] - low if low < LOW_BITS[-1] else 0
        assert budget - step <= plan.estimates.avg_bits <= budget
    # random: near the top budget few layers can drop, and two seeds may draw the same plan (7.25 bits,
    # seeds 219 and 220 do); no plan is drawn by over 6 % of seeds here, so eight alike is ~1e-9
    drawn = {
        tuple(sorted(make_plan(RESNET20, factor="A", strategy="R", levels=LOW_BITS, seed=s,
                               budget=Budget(kind="avg_bits", value=budget)).bits_by_name().items()))
        for s in range(seed, seed + 8)
    }
    assert len(drawn) > 1
    assert plans[0] == make_plan(
        RESNET20, factor="A", strategy="R", levels=LOW_BITS, seed=seed, budget=Budget(kind="avg_bits", value=budget)
    )


def test_r_at_a_budget_needs_no_factor() -> None:
    """A random plan at a budget does not rank by any factor: ``--strategy R`` alone is that plan, any factor the same."""
    budget = Budget(kind="avg_bits", value=2.5)
    alone = make_plan(RESNET20, strategy="R", levels=LOW_BITS, seed=4, budget=budget)
    for factor in ("A", "F", "D"):
        with_factor = make_plan(RESNET20, factor=factor, strategy="R", levels=LOW_BITS, seed=4, budget=budget)
        assert with_factor.bits_by_name() == alone.bits_by_name()
    with pytest.raises(PlanError, match="--strategy R alone is a random plan filled to a budget"):
        make_plan(RESNET20, strategy="R", levels=LOW_BITS)
    with pytest.raises(PlanError, match="--strategy R alone"):
        make_plan(RESNET20, strategy="R", levels=LOW_BITS, budget=budget, budget_rule="order-preserving")


def test_integer_budgets_keep_the_strategies_apart() -> None:
    """At 3 bits of 2,3,4,8 the order-preserving rule gives the uniform plan for every strategy; fill does not."""
    budget = Budget(kind="avg_bits", value=3)
    fills = {
        strategy: make_plan(RESNET20, factor="A", strategy=strategy, levels=[2, 3, 4, 8], budget=budget).bits_by_name()
        for strategy in ("C+", "C-", "R")
    }
    assert all(len(set(bits.values())) > 1 for bits in fills.values())
    assert len({tuple(bits.values()) for bits in fills.values()}) == 3
    ordered = make_plan(RESNET20, factor="A", strategy="C+", levels=[2, 3, 4, 8], budget=budget, budget_rule="order-preserving")
    assert set(ordered.bits_by_name().values()) == {3} and ordered.budget_rule.value == "order-preserving"


def test_shift_and_fill_by_hand() -> None:
    # positions 0, 1, 2 on levels 2, 4, 8 with capacity 10: shifted by −1 → levels 0, 0, 1 (cost 8),
    # then the fill raises unit 1 (cost 2 more) but not unit 2 (4 more)
    assert shifted_levels([1, 1, 1], [2, 4, 8], 10, [0.0, 1.0, 2.0]).tolist() == [0, 0, 1]
    assert fill_levels([1, 1, 1], [2, 4, 8], 10, [0.0, 1.0, 2.0], order=[2, 1, 0]) == [0, 1, 1]
    # positions above the top level (first-last) shift down from there: [1, 0, 1] costs 9; the 6 left
    # raise the first unit in the order (6), after which nothing fits
    assert fill_levels([1, 5, 1], [1, 2, 8], 15, [4.0, 0.0, 4.0], order=[0, 2, 1]) == [2, 0, 1]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=6), menus, st.floats(0, 1), st.integers(0, 99))
def test_random_levels_fit_and_cannot_be_raised(weights, values, fraction, seed) -> None:
    low, high = values[0] * sum(weights), values[-1] * sum(weights)
    capacity = int(low + fraction * (high - low))
    levels = random_levels(weights, values, capacity, seed)
    cost = sum(w * values[level] for w, level in zip(weights, levels))
    assert cost <= capacity
    assert all(level + 1 == len(values) or cost + w * (values[level + 1] - values[level]) > capacity for w, level in zip(weights, levels))


def test_first_last_pays_its_wide_layers_from_the_budget() -> None:
    plan = first_last_plan(RESNET20, levels=LOW_BITS, budget=Budget(kind="avg_bits", value=2), weight_only=True)
    bits = list(plan.bits_by_name().values())
    assert bits[0] == bits[-1] == 8
    assert 1 < plan.estimates.avg_bits <= 2 == plan.budget.value
    assert plan.source.method == "first-last" and plan.activation_bits is None and plan.gradient_bits is None
    with pytest.raises(PlanError, match="needs a budget"):
        first_last_plan(RESNET20, levels=LOW_BITS)


def test_kept_layers_stand_outside_the_budget_and_are_reported() -> None:
    plan = make_plan(
        RESNET20, factor="A", strategy="C-", levels=LOW_BITS, keep=["first", "last"], keep_bits=32,
        budget=Budget(kind="avg_bits", value=1.5),
    )
    assert plan.estimates.avg_bits <= 1.5 and sum(layer.kept for layer in plan.layers) == 2
    assert "2 kept at 32 bits outside the budget" in plan_title(plan)


def test_plan_from_bits_checks_every_unit_the_levels_and_the_budget() -> None:
    profile = profile_from_gemms("two", [GemmShape("a", 1, 10, 10, 1), GemmShape("b", 1, 20, 10, 2)])
    plan = plan_from_bits(profile, {"a.weight": 8, "b.weight": 2}, levels=(2, 8), budget={"kind": "avg_bits", "value": 4})
    assert plan.bits_by_name() == {"a": 8, "b": 2} and plan.strategy.value == "opt"
    assert plan.budget_reached == pytest.approx((100 * 8 + 200 * 2) / 300)
    with pytest.raises(PlanError, match="no bits chosen for `b.weight`"):
        plan_from_bits(profile, {"a.weight": 8}, levels=(2, 8))
    with pytest.raises(PlanError, match="not a level"):
        plan_from_bits(profile, {"a.weight": 8, "b.weight": 3}, levels=(2, 8))
    with pytest.raises(PlanError, match="above the budget"):
        plan_from_bits(profile, {"a.weight": 8, "b.weight": 8}, levels=(2, 8), budget={"kind": "avg_bits", "value": 4})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4), st.floats(0, 1), st.data())
def test_per_level_scores_give_the_exact_knapsack(shapes, fraction, data) -> None:
    profile = profile_from_gemms("k", [GemmShape(f"l{i}", 1, k, n, i + 1) for i, (k, n) in enumerate(shapes)])
    levels = [1, 2, 4]
    table = {
        layer.weight: dict(zip(levels, data.draw(st.lists(st.floats(0, 10), min_size=3, max_size=3))))
        for layer in profile.weight_layers
    }
    params = [layer.params for layer in profile.weight_layers]
    budget = round(1 + fraction * 3, 3)
    scores = MeasuredScores(by_name={layer.name: 1.0 for layer in profile.weight_layers}, bits=1, per_level=table)
    plan = make_plan(profile, objective="min-sensitivity", scores=scores, levels=levels, budget={"kind": "avg_bits", "value": budget})

    def noise(weight: str, bits: int) -> float:  # the documented clamp: running minimum upward
        return min(table[weight][b] for b in levels if b <= bits)

    best = min(
        sum(noise(layer.weight, b) for layer, b in zip(profile.weight_layers, choice))
        for choice in product(levels, repeat=len(params))
        if sum(p * b for p, b in zip(params, choice)) <= budget * sum(params) * (1 + 1e-12)
    )
    chosen = sum(noise(layer.weight, layer.bits) for layer, layer in zip(profile.weight_layers, plan.layers))
    assert chosen == pytest.approx(best, abs=1e-9)
    assert plan.objective_value == pytest.approx(best, abs=1e-9)


def test_missing_per_level_score_is_named() -> None:
    scores = MeasuredScores(by_name={layer.name: 1.0 for layer in RESNET20.weight_layers}, bits=1, per_level={})
    with pytest.raises(PlanError, match="no score measured for `conv1.weight` at 1 bits"):
        make_plan(RESNET20, objective="min-sensitivity", scores=scores, levels=LOW_BITS, budget={"kind": "avg_bits", "value": 2})


def test_output_speaks_cli_words() -> None:
    scores = MeasuredScores(by_name={layer.name: float(i + 1) for i, layer in enumerate(RESNET20.weight_layers)}, bits=4)
    plans = [
        make_plan(RESNET20, objective="min-sensitivity", scores=scores, levels=LOW_BITS, budget={"kind": "avg_bits", "value": 2}, weight_only=True),
        make_plan(RESNET20, strategy="U", levels=[2, 3, 4, 8]),
        make_plan(RESNET20, factor="A", strategy="R", levels=LOW_BITS, budget={"kind": "avg_bits", "value": 2.5}),
    ]
    from rich.console import Console

    for plan in plans:
        console = Console(record=True, width=200)
        console.print(layers_table(plan), summary_table(plan))
        text = console.export_text()
        assert not any(word in text for word in ("Objective.", "GradQuant.", "Strategy.", "BudgetRule.", "Factor."))
    assert "min-sensitivity" in plan_title(plans[0]) and "gradients fp32" in summary_table(plans[0]).title
    assert plan_title(plans[1]).startswith("zoo:resnet20: U (4 bits), levels [2, 3, 4, 8]")
    assert "reached" in plan_title(plans[2]) and "fill rule" in plan_title(plans[2])


def test_weight_only_is_fp32_activations_and_gradients() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C+", levels=LOW_BITS, weight_only=True, activation_bits=4)
    assert plan.activation_bits is None and plan.gradient_bits is None
    assert plan.estimates.bitops_forward == sum(layer.macs * layer.bits * 32 for layer in plan.layers) + plan.unplanned_macs * 32 * 32
    assert np.all([layer.accumulator_bits.forward is None for layer in plan.layers])
