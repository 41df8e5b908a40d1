"""The methods of a Pareto sweep, by name, and the plans each makes at a mean-bits budget.

Names (``--methods``): ``uniform``, ``random``, ``first-last``, ``FACTOR:STRATEGY`` (the seed paper's
rules, e.g. ``A:C-``, ``F:C+``), ``dpc``, one per sensitivity measure (``fisher``, ``hessian``,
``loss-delta``, ``sqnr``) and ``recommended``. Every plan of a sweep is made from one profile, so
every plan fits the one trained model (docs/pareto.md defines each method).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bitplan.choices import Factor, SensitivityMethod, Strategy
from bitplan.errors import PlanError
from bitplan.plan import BitPlan, Budget, BudgetKind, make_plan
from bitplan.profile.schema import ModelProfile
from bitplan.train.evaluate import weight_mean_bits


class Kind(str, Enum):
    """What a method is, which decides how its plans are made."""

    uniform = "uniform"
    random = "random"
    first_last = "first-last"
    rule = "rule"  # FACTOR:STRATEGY or dpc
    measured = "measured"  # a sensitivity measure and the exact knapsack
    recommended = "recommended"


RULE_STRATEGIES = (Strategy.C_plus, Strategy.C_minus, Strategy.R)
RULE_FACTORS = tuple(factor for factor in Factor if factor is not Factor.S)
FIXED_NAMES = ("uniform", "random", "first-last", "dpc", *(m.value for m in SensitivityMethod), "recommended")


@dataclass(frozen=True)
class Method:
    """One method of the sweep, parsed from its name."""

    name: str  # canonical: `A:C-`, `fisher`, `first-last`
    kind: Kind
    factor: Factor | None = None
    strategy: Strategy | None = None
    measure: SensitivityMethod | None = None

    @property
    def slug(self) -> str:
        """File-name-safe: ``A_Cminus``, ``loss-delta``."""
        return self.name.replace(":", "_").replace("+", "plus").replace("-", "minus") if self.kind is Kind.rule else self.name


def known_methods() -> str:
    """Every accepted name, for messages."""
    rules = f"FACTOR:STRATEGY with FACTOR in {','.join(f.value for f in RULE_FACTORS)} and STRATEGY in " + ",".join(
        s.value for s in RULE_STRATEGIES
    )
    return f"{', '.join(FIXED_NAMES)}, or {rules} (e.g. A:C-, F:C+)"


def parse_method(text: str) -> Method:
    """``"A:C−"`` -> Method(rule, A, C-); ``"fisher"`` -> Method(measured, fisher).

    Raises:
        PlanError: An unknown name; the message lists every accepted one.

    Example:
        >>> parse_method("a:c-").name, parse_method("F:C+").slug, parse_method("loss-delta").kind.value
        ('A:C-', 'F_Cplus', 'measured')
    """
    name = text.strip().replace("−", "-")
    lowered = name.lower()
    if lowered in ("uniform", "random", "first-last", "recommended"):
        return Method(lowered, Kind(lowered))
    if lowered == "dpc":
        return Method("dpc", Kind.rule)
    if lowered in {m.value for m in SensitivityMethod}:
        return Method(lowered, Kind.measured, measure=SensitivityMethod(lowered))
    factor_text, colon, strategy_text = name.partition(":")
    factors = {f.value.lower(): f for f in RULE_FACTORS}
    strategies = {s.value.lower(): s for s in RULE_STRATEGIES}
    if colon and factor_text.lower() in factors and strategy_text.lower() in strategies:
        factor, strategy = factors[factor_text.lower()], strategies[strategy_text.lower()]
        return Method(f"{factor.value}:{strategy.value}", Kind.rule, factor=factor, strategy=strategy)
    raise PlanError(f"unknown method `{text}` in --methods; choose from {known_methods()}.")


def parse_methods(names: list[str]) -> list[Method]:
    """Parse and de-duplicate, keeping the given order.

    Raises:
        PlanError: An unknown name, or none at all.
    """
    methods: dict[str, Method] = {}
    for text in names:
        if text.strip():
            method = parse_method(text)
            methods.setdefault(method.name, method)
    if not methods:
        raise PlanError(f"--methods is empty; choose from {known_methods()}.")
    return list(methods.values())


@dataclass(frozen=True)
class PlannedPoint:
    """One plan of the sweep: which method made it, at which budget (and random seed)."""

    method: Method
    budget: float
    plan_seed: int | None
    plan: BitPlan

    @property
    def slug(self) -> str:
        """``A_Cminus-1.5``, ``random-2-r3``."""
        seed = "" if self.plan_seed is None else f"-r{self.plan_seed}"
        return f"{self.method.slug}-{self.budget:g}{seed}"


@dataclass(frozen=True)
class Skipped:
    """A (method, budget) that has no plan, and why (e.g. first-last cannot get below the budget)."""

    method: str
    budget: float
    reason: str


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
                f"{low} (every weight at {low} bits) and the largest {high}; give --budget-avg-bits within [{low}, {high}] "
                "or other --levels."
            )


class PlanMaker:
    """Makes every method's plans from one profile with shared options (levels, precision, model spec)."""

    def __init__(self, profile: ModelProfile, levels: list[int], common: dict, scores: dict) -> None:
        self.profile = profile
        self.levels = levels
        self.common = {"levels": levels, **common}
        self.scores = scores  # sensitivity measure -> MeasuredScores

    def plans(self, method: Method, budget: float, random_plans: int) -> list[PlannedPoint] | Skipped:
        """The method's plans at ``budget`` (several for random, none for uniform off the menu)."""
        limit = Budget(kind=BudgetKind.avg_bits, value=budget)
        try:
            if method.kind is Kind.uniform:
                return [self._point(method, budget, None, self._uniform(int(budget)))] if budget in self.levels else []
            if method.kind is Kind.random:
                return [
                    self._point(method, budget, seed, make_plan(
                        self.profile, factor=Factor.A, strategy=Strategy.R, seed=seed, budget=limit, **self.common))
                    for seed in range(random_plans)
                ]
            if method.kind is Kind.first_last:
                return [self._point(method, budget, None, self._first_last(budget))]
            if method.kind is Kind.rule and method.name == "dpc":
                return [self._point(method, budget, None, make_plan(self.profile, preset="dpc", budget=limit, **self.common))]
            if method.kind is Kind.rule:
                plan = make_plan(self.profile, factor=method.factor, strategy=method.strategy, budget=limit, **self.common)
                return [self._point(method, budget, None, plan)]
            if method.kind is Kind.measured:
                plan = make_plan(
                    self.profile, objective="min-sensitivity", scores=self.scores[method.measure], budget=limit, **self.common
                )
                return [self._point(method, budget, None, plan)]
            return [self._point(method, budget, None, self._recommended(budget))]
        except PlanError as error:
            return Skipped(method.name, budget, str(error))

    def _point(self, method: Method, budget: float, seed: int | None, plan: BitPlan) -> PlannedPoint:
        return PlannedPoint(method, budget, seed, plan)

    def _uniform(self, bits: int) -> BitPlan:
        return make_plan(self.profile, factor=Factor.A, strategy=Strategy.U, uniform_bits=bits, **self.common)

    def _first_last(self, budget: float) -> BitPlan:
        """First and last weight GEMM at the top level, every other one at the widest level keeping the mean ≤ budget."""
        top = self.levels[-1]
        for bits in reversed(self.levels):
            plan = make_plan(
                self.profile, factor=Factor.A, strategy=Strategy.U, uniform_bits=bits, keep=("first", "last"),
                keep_bits=top, **self.common,
            )
            if weight_mean_bits(plan) <= budget + 1e-9:
                return plan
        raise PlanError(
            f"first-last cannot reach {budget:g} mean bits: with the first and last layer at {top} bits and every "
            f"other at {self.levels[0]}, the mean is {weight_mean_bits(plan):.3f}"
        )

    def _recommended(self, budget: float) -> BitPlan:
        raise PlanError("the recommended plan is not available in this version; use fisher, hessian, loss-delta or sqnr")
