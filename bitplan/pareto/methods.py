"""The plans of a sweep: every method at every budget, from h17a's one-calibration planner.

``bitplan.sensitivity_analysis.at_budget`` names the methods and makes their plans from one loaded
model (``methods_at_budget``); this module decides which (method, budget, seed) points a sweep has:
``uniform`` only where the budget is a level of the menu (a uniform plan at 1.5 bits would be the
1-bit plan drawn again), ``random`` ``random_plans`` times per budget, every other method once. A
method that cannot reach one budget (e.g. first-last, whose two wide layers already exceed it) is
recorded as skipped with the planner's reason; a budget outside the menu stops the sweep before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitplan.errors import PlanError
from bitplan.plan import BitPlan, Budget, BudgetKind
from bitplan.sensitivity_analysis.at_budget import RANDOM, UNIFORM, MethodPlanner, parse_method


def method_slug(method: str) -> str:
    """File-name-safe: ``A:C-`` -> ``A_Cminus``, ``F:C+`` -> ``F_Cplus``; other names as they are.

    Example:
        >>> method_slug("A:C-"), method_slug("F:C+"), method_slug("loss-delta")
        ('A_Cminus', 'F_Cplus', 'loss-delta')
    """
    if ":" not in method:
        return method
    return method.replace(":", "_").replace("+", "plus").replace("-", "minus")


def parse_methods(names: list[str]) -> list[str]:
    """Canonical names, de-duplicated in the given order.

    Raises:
        PlanError: An unknown name (listing every method), or none at all.
    """
    methods = list(dict.fromkeys(parse_method(name) for name in names if name.strip()))
    if not methods:
        raise PlanError("--methods is empty; give e.g. `--methods uniform,random,A:C-,fisher,recommended`.")
    return methods


def check_budgets(budgets: list[float], levels: list[int]) -> None:
    """Every budget lies within what plans of ``levels`` reach: [lowest level, highest level] mean bits.

    Raises:
        PlanError: Naming the budget and the smallest and largest reachable mean bits.
    """
    low, high = levels[0], levels[-1]
    for budget in budgets:
        if not low <= budget <= high:
            raise PlanError(
                f"budget {budget:g} mean bits cannot be reached with levels {levels}: the smallest reachable is "
                f"{low} (every weight at {low} bits) and the largest {high}; give --budget-avg-bits within "
                f"[{low}, {high}] or other --levels."
            )


@dataclass(frozen=True)
class PlannedPoint:
    """One plan of the sweep: which method made it, at which budget (and random seed)."""

    method: str
    budget: float
    plan_seed: int | None
    plan: BitPlan

    @property
    def slug(self) -> str:
        """``A_Cminus-1.5``, ``random-2-r3``: the plan's file name in the sweep folder."""
        seed = "" if self.plan_seed is None else f"-r{self.plan_seed}"
        return f"{method_slug(self.method)}-{self.budget:g}{seed}"


@dataclass(frozen=True)
class Skipped:
    """A (method, budget) without a plan, and why."""

    method: str
    budget: float
    reason: str


def sweep_plans(
    planner: MethodPlanner, methods: list[str], budgets: list[float], random_plans: int
) -> tuple[list[PlannedPoint], list[Skipped]]:
    """Every point's plan, methods in the given order, budgets as given; and what could not be planned."""
    planned, skipped = [], []
    for method in methods:
        for budget in budgets:
            if method == UNIFORM and budget not in planner.levels:
                continue
            seeds = range(random_plans) if method == RANDOM else [None]
            limit = Budget(kind=BudgetKind.avg_bits, value=budget)
            try:
                planned += [PlannedPoint(method, budget, seed, planner.plan(method, limit, seed=seed or 0)) for seed in seeds]
            except PlanError as error:
                skipped.append(Skipped(method, budget, str(error)))
    return planned, skipped
