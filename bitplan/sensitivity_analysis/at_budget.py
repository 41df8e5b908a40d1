"""Every planning method at a budget, from one profile and one measurement: what a sweep compares.

``methods_at_budget(model, data, ...)`` loads the model, its checkpoint and the calibration batches
once; its ``plan(method, budget, seed=...)`` then makes any method's plan, measuring each sensitivity
once and reusing it for every budget. Methods (``parse_method`` names them; docs/planning.md):

- ``uniform``: one width, the widest level within the budget;
- ``random``: R at the budget (a seeded random plan within one level step below it);
- ``first-last``: first and last layer at the top level, the rest one width, filled to the budget;
- ``FACTOR:STRATEGY`` (``A:C-``, ``F:C+``, ``D:R`` ...) and ``dpc``: the seed paper's rules, at the
  budget by the ``fill`` rule;
- ``fisher``, ``hessian``, ``loss-delta``, ``sqnr``: that measure at one width, extrapolated to the
  levels, and the exact knapsack (``--objective min-sensitivity``);
- ``recommended``: measured at every level, knapsack, refined on the real loss (``recommend.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitplan.choices import Device, Factor, Objective, SensitivityMethod, Strategy
from bitplan.errors import PlanError
from bitplan.plan import BitPlan, Budget, PlanRequest, PlanSource, make_plan
from bitplan.plan.first_last import FIRST_LAST, first_last_plan
from bitplan.plan.request import MeasuredScores
from bitplan.plan.space import request_space
from bitplan.profile.schema import ModelProfile
from bitplan.sensitivity_analysis.calibration import DEFAULT_BATCH_SIZE, DEFAULT_BATCHES, Calibration, calibrate
from bitplan.sensitivity_analysis.measure import scores_on
from bitplan.sensitivity_analysis.per_level import LevelTable
from bitplan.sensitivity_analysis.recommend import RECOMMENDED, measure_table, recommend_plan

UNIFORM, RANDOM, DPC = "uniform", "random", "dpc"
MEASURED = tuple(method.value for method in SensitivityMethod)
SIMPLE_METHODS = (UNIFORM, RANDOM, FIRST_LAST, DPC, *MEASURED, RECOMMENDED)
MEASURED_AT_BITS = 4
"""Width the one-width measures (fisher, hessian, loss-delta, sqnr) take the quantization error at."""


def parse_method(text: str) -> str:
    """The method's canonical name; ``FACTOR:STRATEGY`` is checked against the factors and strategies.

    Raises:
        PlanError: An unknown method (the message lists every method).

    Example:
        >>> parse_method("a:c-"), parse_method("Fisher"), parse_method("dpc")
        ('A:C-', 'fisher', 'dpc')
    """
    name = text.strip()
    if name.lower() in SIMPLE_METHODS:
        return name.lower()
    factor, colon, strategy = name.partition(":")
    factors = {f.value.lower(): f.value for f in Factor if f.structural}
    strategies = {s.value.lower(): s.value for s in Strategy.paper()}
    if colon and factor.lower() in factors and strategy.lower() in strategies:
        return f"{factors[factor.lower()]}:{strategies[strategy.lower()]}"
    raise PlanError(
        f"unknown method `{text}`; choose from {', '.join(SIMPLE_METHODS)}, or FACTOR:STRATEGY with FACTOR one of "
        f"{', '.join(factors.values())} and STRATEGY one of {', '.join(strategies.values())} (e.g. `A:C-`)."
    )


@dataclass
class MethodPlanner:
    """Plans of every method from one loaded model and its calibration batches (see the module doc).

    Attributes:
        profile: The model's profile (every plan is made from it).
        levels: The menu of widths.
        calibration: The model, weights and cached batches the measured methods run on (None: only
            the structural methods, which need no data).
        plan_options: ``PlanRequest`` fields every plan shares (``weight_only``, ``keep``, ...).
    """

    profile: ModelProfile
    levels: tuple[int, ...]
    calibration: Calibration | None = None
    plan_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    _scores: dict[str, MeasuredScores] = field(default_factory=dict, repr=False)
    _table: LevelTable | None = field(default=None, repr=False)

    def plan(self, method: str, budget: Budget | dict, *, seed: int = 0) -> BitPlan:
        """``method``'s plan within ``budget``; ``seed`` is R's (used by ``random`` and ``*:R``).

        Raises:
            PlanError: Unknown method, or a budget no plan of these levels reaches (both ends stated).
        """
        method = parse_method(method)
        profile = self.profile
        request = PlanRequest.of(budget=budget, levels=self.levels, model=profile.model, **self.plan_options)
        if method in (*MEASURED, RECOMMENDED) and self.calibration is None:
            raise PlanError(f"method `{method}` measures the model on data: pass --data DATA (and --checkpoint RUN).")
        request_space(profile, request)  # an unreachable budget fails before any measuring
        if method == UNIFORM:
            return make_plan(profile, request, strategy=Strategy.U, source=PlanSource(method=UNIFORM, measure="none"))
        if method == RANDOM:
            return make_plan(profile, request, factor=Factor.A, strategy=Strategy.R, seed=seed,
                             source=PlanSource(method=RANDOM, measure="none"))
        if method == FIRST_LAST:
            return first_last_plan(profile, request)
        if method == DPC:
            return make_plan(profile, request, preset="dpc", source=PlanSource(method=DPC, measure="none"))
        if method == RECOMMENDED:
            return self._recommended(request)
        if method in MEASURED:
            return self._measured(method, request)
        factor, _, strategy = method.partition(":")
        return make_plan(profile, request, factor=factor, strategy=strategy, seed=seed,
                         source=PlanSource(method=method, measure="none"))

    def _measured(self, method: str, request: PlanRequest) -> BitPlan:
        if method not in self._scores:
            per_channel = request.weight_granularity.value == "channel"
            scores, _ = scores_on(self.calibration, method, MEASURED_AT_BITS, per_channel=per_channel)
            self._scores[method] = MeasuredScores(
                by_name=scores, bits=MEASURED_AT_BITS, method=method,
                fingerprint=self.calibration.profile.fingerprint(), model=self.calibration.spec,
            )
        scores = self._scores[method]
        source = PlanSource(
            method=method,
            measure=f"{method} at {MEASURED_AT_BITS} bits, extrapolated by the step; exact knapsack",
            data=self.calibration.data,
            checkpoint=self.calibration.checkpoint,
            calibration=self.calibration.description,
            scores={name: {str(MEASURED_AT_BITS): value} for name, value in scores.by_name.items()},
        )
        return make_plan(
            self.calibration.profile, request, objective=Objective.min_sensitivity, scores=scores, source=source
        )

    def _recommended(self, request: PlanRequest) -> BitPlan:
        if self._table is None:  # measured once, for every budget
            self._table = measure_table(self.calibration, list(self.levels), request.zero_point, self.progress)
        options = request.model_dump(exclude_unset=True, exclude={"budget", "levels", "model"})
        return recommend_plan(
            self.calibration.model, self.calibration.data, budget=request.budget, levels=self.levels,
            calibration=self.calibration, table=self._table, **options,
        )


def methods_at_budget(
    model: str,
    data: str,
    *,
    levels: tuple[int, ...] | list[int],
    checkpoint: str | Path | None = None,
    batches: int = DEFAULT_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: Device | str = Device.auto,
    **plan_options: Any,
) -> MethodPlanner:
    """Load ``model`` (sized to ``data``) with ``checkpoint`` once; the result plans any method at any budget.

    Example:
        >>> planner = methods_at_budget("zoo:digits_cnn", "digits", levels=(1, 2, 3, 4, 8),
        ...                             checkpoint="runs/digits", weight_only=True)  # doctest: +SKIP
        >>> plans = [planner.plan(m, {"kind": "avg_bits", "value": 1.5}) for m in ("uniform", "recommended")]  # doctest: +SKIP
    """
    calibration = calibrate(
        model, data, checkpoint=checkpoint, batches=batches, batch_size=batch_size, seed=seed, device=device
    )
    return MethodPlanner(
        profile=calibration.profile, levels=tuple(levels), calibration=calibration, plan_options=dict(plan_options)
    )


def plan_by_method(
    model: str,
    data: str | None,
    *,
    budget: Budget | dict,
    method: str = RECOMMENDED,
    levels: tuple[int, ...] | list[int] | None = None,
    bits: tuple[int, int] | None = None,
    checkpoint: str | Path | None = None,
    batches: int = DEFAULT_BATCHES,
    seed: int = 0,
    device: Device | str = Device.auto,
    progress: bool = False,
    input_shape: str | None = None,
    batch: int | None = None,
    **plan_options: Any,
) -> BitPlan:
    """One method's plan of ``model`` within ``budget`` (``bitplan plan MODEL --method M [--data DATA]``).

    With ``data`` the model is sized to it, its checkpoint loaded and calibration batches drawn
    (measured methods need them); without, only the structural methods run, on the model's profile.
    ``levels`` (or the ``bits`` range) default to 1,2,3,4,8; ``seed`` is R's.

    Raises:
        PlanError: Unknown method, a measured method without data, bad levels, or a budget no plan
            reaches (both ends stated).
        SpecError, DataError, TrainingError: The model, data or checkpoint do not fit.
    """
    from bitplan.plan.planner import resolve_levels
    from bitplan.plan.source import load_profile
    from bitplan.sensitivity_analysis.recommend import DEFAULT_RECOMMEND_LEVELS

    method = parse_method(method)
    menu = resolve_levels(bits, levels) if (levels is not None or bits is not None) else list(DEFAULT_RECOMMEND_LEVELS)
    PlanRequest.of(budget=budget, levels=tuple(menu), seed=seed, **plan_options)  # bad options fail before any work
    if data is None:
        if method in (*MEASURED, RECOMMENDED):
            raise PlanError(f"method `{method}` measures the model on data: pass --data DATA (and --checkpoint RUN).")
        profile = load_profile(model, input_shape=input_shape, batch=batch)
        planner = MethodPlanner(profile=profile, levels=tuple(menu), plan_options=dict(plan_options))
    else:
        planner = methods_at_budget(model, data, levels=menu, checkpoint=checkpoint, batches=batches, device=device, **plan_options)
    planner.progress = progress
    return planner.plan(method, budget, seed=seed)
