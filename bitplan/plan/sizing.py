"""Size matching: the order-preserving plan of largest size (or compute) within a budget.

Turns a budget into a capacity on Σ weight × level value over the units the strategy assigns, builds
the chain along which levels may only rise, and hands both to the budget rule: ``fill`` (the strategy's
mapping shifted to fit, then filled; ``fill.py``) or ``order-preserving`` (the exact solver in
``budget.py``). Definitions (docs/planning.md, "Size matching: budgets"): C+ is monotone in the factor,
C- its mirror, U one width, R monotone along a seeded random order of the units.
"""

from __future__ import annotations

import random
from fractions import Fraction

from bitplan.errors import PlanError
from bitplan.plan.budget import BudgetSearchTooLarge, solve_monotone
from bitplan.plan.estimates import FP32, Precision
from bitplan.plan.fill import fill_levels, raise_while_fits, random_levels
from bitplan.plan.mapping import level_positions
from bitplan.plan.schema import Budget, BudgetKind, BudgetRule, Mapping, Strategy
from bitplan.plan.units import PlanUnit

_UNITS = {BudgetKind.avg_bits: "avg bits", BudgetKind.mbit: "MBit", BudgetKind.bitops: "BitOPs"}


class BudgetTerms:
    """A budget as a capacity on Σ weight × level value over the assigned units, and back to user units.

    avg bits: weight = params, capacity = ⌊X·Σ params⌋ (kept units are outside the mean).
    MBit: weight = params, capacity = ⌊X·10^6⌋ − kept bits − other params × 32.
    BitOPs: weight = MACs, level value = b_w·b_a, capacity = ⌊X⌋ − kept and unplanned forward BitOPs.
    """

    def __init__(
        self,
        budget: Budget,
        units: list[PlanUnit],
        levels: list[int],
        *,
        keep_bits: int,
        precision: Precision,
        other_params: int,
        unplanned_macs: int,
    ) -> None:
        kept = [unit for unit in units if unit.kept]
        assigned = [unit for unit in units if not unit.kept]
        self.kind = budget.kind
        if budget.kind is BudgetKind.bitops:
            self.weights = [unit.macs for unit in assigned]
            self.values = [precision.forward_cost(b) for b in levels]
            self.fixed = sum(unit.macs for unit in kept) * precision.forward_cost(keep_bits)
            self.fixed += unplanned_macs * FP32 * FP32
            self.scale = Fraction(1)
        elif budget.kind is BudgetKind.mbit:
            self.weights = [unit.params for unit in assigned]
            self.values = list(levels)
            self.fixed = sum(unit.params for unit in kept) * keep_bits + other_params * FP32
            self.scale = Fraction(10**6)
        else:
            self.weights = [unit.params for unit in assigned]
            self.values = list(levels)
            self.fixed = 0
            self.scale = Fraction(sum(self.weights))
            if not self.scale:
                raise PlanError("--budget-avg-bits needs at least one planned weight that is not kept.")
        # repr() gives the decimal the user typed, so 6.3 means 63/10 exactly
        self.capacity = int(Fraction(repr(budget.value)) * self.scale) - self.fixed

    def describe(self, cost: int) -> str:
        """A cost in the unit the user wrote the budget in."""
        return f"{float((cost + self.fixed) / self.scale):.6g} {_UNITS[self.kind]}"


def budgeted_bits(
    budget: Budget,
    units: list[PlanUnit],
    strategy: Strategy,
    levels: list[int],
    *,
    mapping: Mapping,
    seed: int,
    keep_bits: int,
    precision: Precision,
    other_params: int,
    unplanned_macs: int,
    rule: BudgetRule = BudgetRule.fill,
) -> list[int]:
    """Bits of each unit the strategy assigns (not kept), in order, for a plan within ``budget``.

    ``rule`` fill: the strategy's mapping shifted to fit and filled up to the budget (``fill.py``);
    order-preserving: the largest plan whose bits follow the strategy's order (the seed paper's rule).

    Raises:
        PlanError: The budget is below the smallest or above the largest reachable size (both stated),
            or the exact search hit its work limit.
    """
    assigned = [unit for unit in units if not unit.kept]
    terms = BudgetTerms(
        budget,
        units,
        levels,
        keep_bits=keep_bits,
        precision=precision,
        other_params=other_params,
        unplanned_macs=unplanned_macs,
    )
    total = sum(terms.weights)
    smallest = check_reachable(terms, budget, levels)
    widest = max(j for j, value in enumerate(terms.values) if value * total <= terms.capacity)
    if strategy is Strategy.U:
        return [levels[widest]] * len(assigned)
    if rule is BudgetRule.fill and strategy is Strategy.R:
        return [levels[level] for level in random_levels(terms.weights, terms.values, terms.capacity, seed)]
    unranked = [i for i, unit in enumerate(assigned) if unit.factor_value is None and strategy is not Strategy.R]
    if not unranked:
        chosen = _ranked_levels(assigned, terms.weights, terms, terms.capacity, smallest, strategy, rule, mapping, seed, budget)
        return [levels[level] for level in chosen]
    # units the factor cannot rank (tables read only by lookups, under A, F, D) take U's level at the
    # budget, paid from it; the ranked units share what is left, and what they cannot use raises the others
    unranked_set = set(unranked)
    ranked = [i for i in range(len(assigned)) if i not in unranked_set]
    chosen = [widest] * len(assigned)
    if ranked:
        weights = [terms.weights[i] for i in ranked]
        paid = sum(terms.weights[i] for i in unranked) * terms.values[widest]
        capacity = min(terms.capacity - paid, terms.values[-1] * sum(weights))
        lowest = paid + terms.values[0] * sum(weights)
        found = _ranked_levels([assigned[i] for i in ranked], weights, terms, capacity, lowest, strategy, rule, mapping, seed, budget)
        for i, level in zip(ranked, found):
            chosen[i] = level
    chosen = raise_while_fits(chosen, terms.weights, terms.values, terms.capacity, unranked)
    return [levels[level] for level in chosen]


def _ranked_levels(
    assigned: list[PlanUnit],
    weights: list[int],
    terms: BudgetTerms,
    capacity: int,
    smallest: int,
    strategy: Strategy,
    rule: BudgetRule,
    mapping: Mapping,
    seed: int,
    budget: Budget,
) -> list[int]:
    """Level index of each unit of ``assigned`` (costs ``weights``) by ``rule``, within ``capacity``.

    ``smallest`` is the cost of the whole plan when these units sit at the lowest level (for messages).
    """
    chain, positions = chain_of(assigned, strategy, len(terms.values), mapping, seed)
    if rule is BudgetRule.fill:
        position = [0.0] * len(assigned)
        for group, group_position in zip(chain, positions):
            for index in group:
                position[index] = group_position
        order = sorted(range(len(assigned)), key=lambda index: -position[index])  # stable: graph order breaks ties
        return fill_levels(weights, terms.values, capacity, position, order)
    group_weights = [sum(weights[i] for i in group) for group in chain]
    try:
        group_levels = solve_monotone(group_weights, terms.values, capacity, positions=positions)
    except BudgetSearchTooLarge as error:
        raise PlanError(
            f"{budget_flag(budget)}: the exact search for the largest {strategy.value} plan within the budget gave up "
            f"at its work limit (best found {terms.describe(smallest + error.best)}). Use a budget equal to a "
            "uniform width, or fewer levels."
        ) from None
    chosen = [0] * len(assigned)
    for group, level in zip(chain, group_levels or []):
        for index in group:
            chosen[index] = level
    return chosen


def budget_flag(budget: Budget) -> str:
    """The budget as the user typed it: ``--budget-avg-bits 1.5``."""
    return f"--budget-{budget.kind.value.replace('_', '-')} {budget.value:g}"


def check_reachable(terms: BudgetTerms, budget: Budget, levels: list[int]) -> int:
    """The smallest reachable cost; raises when the budget lies outside the reachable range.

    Raises:
        PlanError: Below the smallest or above the largest plan the levels allow (both stated).
    """
    total = sum(terms.weights)
    smallest, largest = terms.values[0] * total, terms.values[-1] * total
    reach = (
        f"reachable sizes run from {terms.describe(smallest)} (every planned layer at {levels[0]} bits) "
        f"to {terms.describe(largest)} (every planned layer at {levels[-1]} bits)"
    )
    if terms.capacity < smallest:
        raise PlanError(f"{budget_flag(budget)} is below every plan in range {levels}: {reach}. Raise the budget or lower --bits.")
    if terms.capacity > largest:
        raise PlanError(f"{budget_flag(budget)} is above every plan in range {levels}: {reach}. Lower the budget or raise --bits.")
    return smallest


def chain_of(
    assigned: list[PlanUnit], strategy: Strategy, n_levels: int, mapping: Mapping, seed: int
) -> tuple[list[list[int]], list[float]]:
    """Groups of unit indices that share a level, in the order along which levels may only rise.

    C+: distinct factor values ascending; C-: descending; R: a seeded random order of single units.
    Also returns each group's preferred level position (the unbudgeted mapping), to break ties.
    """
    if strategy is Strategy.R:
        order = list(range(len(assigned)))
        random.Random(seed).shuffle(order)
        spread = max(len(order) - 1, 1)
        return [[i] for i in order], [g * (n_levels - 1) / spread for g in range(len(order))]
    values = [unit.factor_value for unit in assigned]
    position_of = dict(zip(values, level_positions(values, n_levels, mapping)))
    members: dict[float, list[int]] = {}
    for index, value in enumerate(values):
        members.setdefault(value, []).append(index)
    ordered = sorted(members, reverse=strategy is Strategy.C_minus)
    if strategy is Strategy.C_minus:
        return [members[v] for v in ordered], [n_levels - 1 - position_of[v] for v in ordered]
    return [members[v] for v in ordered], [position_of[v] for v in ordered]
