"""``--objective min-sensitivity``: the bits that minimise sensitivity-weighted quantization noise
under a budget, exactly (a multiple-choice knapsack, ``bitplan.plan.knapsack``).

Noise model: a layer of measured sensitivity s (at b0 bits) adds s·((2^b0 − 1)/(2^b − 1))² at b bits,
since the quantization error variance scales with the squared step and the step with 1/(2^b − 1).
When scores were measured at every level of the menu (``MeasuredScores.per_level``), those are used
as they are: at 1–2 bits the error is no longer small and the extrapolation misjudges it.
"""

from __future__ import annotations

import numpy as np

from bitplan.errors import PlanError
from bitplan.plan.estimates import Precision
from bitplan.plan.knapsack import noise_scale, solve_mckp
from bitplan.plan.schema import NOT_QUANTIZED_BITS, Budget
from bitplan.plan.sizing import BudgetTerms, check_reachable
from bitplan.plan.units import PlanUnit


def optimal_bits(
    budget: Budget,
    units: list[PlanUnit],
    levels: list[int],
    *,
    measured_bits: int,
    keep_bits: int,
    precision: Precision,
    other_params: int,
    unplanned_macs: int,
    per_level: dict[str, dict[int, float]] | None = None,
) -> tuple[list[int], float]:
    """Bits of each assigned (not kept) unit minimising Σ noise within ``budget``, and that minimum.

    Raises:
        PlanError: the budget is outside the reachable sizes (both ends stated).
    """
    assigned = [unit for unit in units if not unit.kept]
    terms = BudgetTerms(
        budget, units, levels, keep_bits=keep_bits, precision=precision,
        other_params=other_params, unplanned_macs=unplanned_macs,
    )
    cost = np.array([[weight * value for value in terms.values] for weight in terms.weights], dtype=float)
    # loss-delta and hessian scores can be negative on untrained weights; noise cannot help, so such a
    # layer counts as insensitive (0) rather than as one that gains from fewer bits
    if per_level is not None:
        noise = measured_noise(per_level, assigned, levels)
    else:
        noise = np.array(
            [[max(unit.factor_value, 0.0) * noise_scale(level, measured_bits) for level in levels] for unit in assigned]
        )
    check_reachable(terms, budget, levels)
    choice, _ = solve_mckp(cost, with_ties_to_wider(noise, levels), terms.capacity)
    objective = float(sum(noise[unit, index] for unit, index in enumerate(choice)))
    return [levels[index] for index in choice], objective


TIE_WEIGHT = 1e-9
"""Weight of the tie-breaking term, relative to the largest noise: far below any measured difference."""


def with_ties_to_wider(noise: np.ndarray, levels: list[int]) -> np.ndarray:
    """``noise`` plus a vanishing term that falls with the bits, so that among plans of equal noise the
    knapsack takes the wider one and spends the budget.

    A layer measured insensitive (score 0, e.g. a loss that fell when it was quantized) would otherwise
    sit at the lowest level with the budget left unused: equal noise, and the solver keeps the cheaper plan.

    Example:
        >>> with_ties_to_wider(np.zeros((1, 2)), [2, 4])[0, 0] > with_ties_to_wider(np.zeros((1, 2)), [2, 4])[0, 1]
        True
    """
    top = float(noise.max(initial=0.0))
    scale = (top if top > 0 else 1.0) * TIE_WEIGHT
    # [levels] the step's squared size relative to the widest level: 1 at the top, larger below it
    step = np.array([noise_scale(level, max(levels)) if level < NOT_QUANTIZED_BITS else 0.0 for level in levels])
    return noise + scale * step / max(float(step.max(initial=0.0)), 1.0)


def measured_noise(per_level: dict[str, dict[int, float]], units: list[PlanUnit], levels: list[int]) -> np.ndarray:
    """[units, levels] noise from scores measured at each level: negatives count as 0 (noise cannot
    help), and a wider level never counts as noisier than a narrower one (running minimum upward).

    Raises:
        PlanError: a unit or a level without a measured score.
    """
    rows = []
    for unit in units:
        measured = per_level.get(unit.key)
        missing = [level for level in levels if level < NOT_QUANTIZED_BITS and (measured is None or level not in measured)]
        if missing:
            raise PlanError(
                f"no score measured for `{unit.key}` at {missing[0]} bits; measure every planned layer at every "
                f"level of the menu {levels}."
            )
        row = [0.0 if level >= NOT_QUANTIZED_BITS else max(measured[level], 0.0) for level in levels]
        rows.append(np.minimum.accumulate(row))
    return np.array(rows, dtype=float).reshape(len(units), len(levels))
