"""The recommended plan: measured per level on the user's data, knapsack, then refined on the real loss.

1. ``calibrate``: the model sized to the data, the trained weights, a few cached training batches;
2. ``measure_levels``: every planned weight quantized alone at every level of the menu (KL to the
   full-precision outputs, and loss increase);
3. the exact multiple-choice knapsack (``make_plan(objective="min-sensitivity")``) on the measured
   per-level scores, within the budget;
4. ``refine_bits``: a local search on the real loss of the whole quantized model on the calibration
   batches, from the knapsack plans and a few random plans at the budget (single-weight changes,
   swaps, and raises and lowerings paid for by several others; ``refine.py``).

Which measure and refinement are the default was decided on evidence (docs/planning.md,
"The recommended plan"; ``benchmarks/recommended_plan.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitplan.choices import DEFAULT_ZERO_POINT, Device, Objective, ZeroPoint
from bitplan.plan import BitPlan, Budget, PlanRequest, PlanSource, make_plan
from bitplan.plan.fill import random_levels
from bitplan.plan.planner import plan_from_bits, resolve_levels
from bitplan.plan.request import MeasuredScores
from bitplan.plan.space import request_space
from bitplan.sensitivity_analysis.calibration import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCHES,
    Calibration,
    calibrate,
    with_granularity,
)
from bitplan.sensitivity_analysis.per_level import LEVEL_MEASURES, LevelTable, measure_levels
from bitplan.sensitivity_analysis.refine import (
    DEFAULT_CANDIDATES,
    DEFAULT_SEARCHES,
    REFINE_OBJECTIVES,
    BudgetSpace,
    refine_bits,
)

RECOMMENDED = "recommended"
RECOMMENDED_MEASURE = "kl"
"""Per-level score the knapsack adds up (``kl`` or ``loss-delta``)."""
METRIC = "metric"
RECOMMENDED_REFINE: str | None = METRIC
"""What the local search lowers: ``metric`` (the calibration counterpart of the task's metric: error rate
for accuracy, loss for perplexity), ``loss``, ``kl``, ``error``, or None for the knapsack's plan as it is."""
DEFAULT_RECOMMEND_LEVELS = (1, 2, 3, 4, 8)
DEFAULT_RESTARTS = 8
RESTART_SEED = 10_000


def recommend_plan(
    model: str,
    data: str,
    *,
    budget: Budget | dict,
    levels: tuple[int, ...] | list[int] = DEFAULT_RECOMMEND_LEVELS,
    checkpoint: str | Path | None = None,
    batches: int = DEFAULT_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: Device | str = Device.auto,
    measure: str = RECOMMENDED_MEASURE,
    refine: str | None = RECOMMENDED_REFINE,
    restarts: int = DEFAULT_RESTARTS,
    searches: int = DEFAULT_SEARCHES,
    candidates: int = DEFAULT_CANDIDATES,
    calibration: Calibration | None = None,
    table: LevelTable | None = None,
    progress: bool = False,
    **plan_options: Any,
) -> BitPlan:
    """The recommended plan of ``model`` on ``data`` within ``budget``, measured at every level of ``levels``.

    Args:
        model, data: Model and data specs (the model is sized to the data, as ``bitplan train`` does).
        budget: ``Budget`` (or its dict): avg bits, MBit or forward BitOPs; the plan stays within it.
        levels: The menu of widths, strictly increasing (1–32).
        checkpoint: A ``bitplan train`` run folder, seed folder or checkpoint.pt (None: initial weights).
        batches, batch_size, seed: The calibration batches, drawn from the training split.
        measure: ``kl`` or ``loss-delta`` per level (what the knapsack adds up).
        refine: What the local search lowers on the calibration batches: ``metric`` (error rate for
            classification, loss for language models), ``loss``, ``kl`` or ``error``; None skips it.
        restarts: Seeded random plans at the budget the local search may also start from.
        searches: How many of the best starts are searched from (the best end is kept).
        candidates: Moves besides the single-weight changes tried per round, best predicted first.
        calibration, table: Reuse a loaded model and its per-level table (``methods_at_budget`` does,
            to make many plans from one measurement).
        plan_options: Further ``PlanRequest`` fields (``weight_only``, ``keep``, ``zero_point``, ...).

    Returns:
        The plan; ``plan.source`` records the method, data, checkpoint, batches and measured scores,
        and the calibration loss of the full-precision, knapsack and refined models.

    Raises:
        PlanError: A budget no plan can reach (both ends stated), bad levels or options.
        SpecError, DataError, TrainingError: The model, data or checkpoint do not fit.

    Example:
        >>> plan = recommend_plan("zoo:digits_cnn", "digits", budget={"kind": "avg_bits", "value": 1.5},
        ...                       checkpoint="runs/digits", weight_only=True)  # doctest: +SKIP
    """
    if measure not in LEVEL_MEASURES:
        raise ValueError(f"measure must be one of {LEVEL_MEASURES}, not {measure!r}")
    if refine is not None and refine not in (METRIC, *REFINE_OBJECTIVES):
        raise ValueError(f"refine must be one of {(METRIC, *REFINE_OBJECTIVES)} or None, not {refine!r}")
    if calibration is None:
        calibration = calibrate(
            model, data, checkpoint=checkpoint, batches=batches, batch_size=batch_size, seed=seed, device=device
        )
    request = PlanRequest.of(budget=budget, levels=tuple(levels), model=calibration.spec, **plan_options)
    grid = request.zero_point or DEFAULT_ZERO_POINT
    space = request_space(calibration.profile, request)  # an unreachable budget fails before any measuring
    applied = with_granularity(calibration, request.weight_granularity)  # measure as the plan will be applied
    if applied is not calibration:
        calibration, table = applied, None
    if table is None:
        table = measure_table(calibration, resolve_levels(request.bits, request.levels), request.zero_point, progress)
    scores = per_level_scores(calibration, table, measure)
    knapsack = make_plan(calibration.profile, request, objective=Objective.min_sensitivity, scores=scores)
    source = dict(
        method=RECOMMENDED,
        data=calibration.data,
        checkpoint=calibration.checkpoint,
        calibration=calibration.description,
        scores={weight: {str(bits): value for bits, value in row.items()} for weight, row in scores.per_level.items()},
    )
    if refine is None:
        measured = {"loss_fp32": table.baseline_loss}
        recorded = PlanSource(measure=f"{measure} per level; exact knapsack", measured=measured, **source)
        return knapsack.model_copy(update={"source": recorded})
    if refine == METRIC:
        refine = "loss" if getattr(calibration.task, "value", "") == "language_model" else "error"
    budget_space = BudgetSpace(
        levels=space.levels,
        weights={unit.key: weight for unit, weight in zip(space.assigned, space.terms.weights)},
        values=space.terms.values,
        capacity=space.terms.capacity,
    )
    starts = search_starts(calibration, request, table, measure, restarts)
    refined = refine_bits(calibration, starts, budget_space, scores.per_level, objective=refine, grid=grid,
                          searches=searches, candidates=candidates)
    measured = {
        "loss_fp32": table.baseline_loss,
        "loss_knapsack": refined.before[0],
        "error_knapsack": refined.before[2],
        "loss_refined": refined.after[0],
        "kl_refined": refined.after[1],
        "error_refined": refined.after[2],
        "refinement_start": float(refined.start),
        "refinement_moves": float(refined.moves),
        "refinement_evaluations": float(refined.evaluations),
    }
    recorded = PlanSource(
        measure=f"{measure} per level; exact knapsack; local search on the calibration {refine} "
        f"from {len(starts)} starts (start {refined.start} kept)",
        measured=measured,
        **source,
    )
    return plan_from_bits(calibration.profile, refined.bits, request, scores=scores, factor="S", source=recorded)


def search_starts(
    calibration: Calibration, request: PlanRequest, table: LevelTable, measure: str, restarts: int
) -> list[dict[str, int]]:
    """Where the local search may start (weight FQN -> bits): the knapsack plan of ``measure`` first, that
    of the other per-level measure, then ``restarts`` seeded random plans at the budget (seeds apart
    from those R plans are usually drawn with)."""
    space = request_space(calibration.profile, request)
    starts = []
    for each in (measure, *(other for other in LEVEL_MEASURES if other != measure)):
        plan = make_plan(calibration.profile, request, objective=Objective.min_sensitivity,
                         scores=per_level_scores(calibration, table, each))
        starts.append(_unit_bits(plan, space.assigned))
    for restart in range(restarts):
        chosen = random_levels(space.terms.weights, space.terms.values, space.terms.capacity, RESTART_SEED + restart)
        starts.append({unit.key: space.levels[level] for unit, level in zip(space.assigned, chosen)})
    return starts


def _unit_bits(plan: BitPlan, assigned) -> dict[str, int]:
    by_weight = plan.bits_by_weight()
    return {unit.key: by_weight[unit.key] for unit in assigned}


def per_level_scores(calibration: Calibration, table: LevelTable, measure: str) -> MeasuredScores:
    """The table as planning takes it: per-level scores by weight, and the lowest level's by GEMM name
    (a shared weight's score on its first GEMM, so the sum over its uses is the weight's)."""
    per_level = table.scores(measure)
    lowest = table.levels[0]
    by_name: dict[str, float] = {}
    seen: set[str] = set()
    for target in calibration.targets:
        by_name[target.name] = 0.0 if target.weight in seen else per_level[target.weight][lowest]
        seen.add(target.weight)
    return MeasuredScores(
        by_name=by_name,
        bits=lowest,
        method=f"{measure} per level",
        fingerprint=calibration.profile.fingerprint(),
        model=calibration.spec,
        per_level=per_level,
    )


def measure_table(calibration: Calibration, levels: list[int], grid: ZeroPoint | str, progress: bool) -> LevelTable:
    """``measure_levels``, with a progress bar on stderr when ``progress``."""
    if not progress:
        return measure_levels(calibration, levels, grid=grid)
    from rich.console import Console
    from rich.progress import Progress

    weights = len({target.weight for target in calibration.targets})
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"measuring each layer at {len(levels)} levels", total=weights)
        return measure_levels(calibration, levels, grid=grid, advance=lambda: bar.advance(task))
