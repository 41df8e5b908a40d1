"""``--objective min-sensitivity``: the bits that minimise sensitivity-weighted quantization noise
under a budget, exactly (a multiple-choice knapsack, ``bitplan.plan.knapsack``).

Noise model: a layer of measured sensitivity s (at b0 bits) adds s·((2^b0 − 1)/(2^b − 1))² at b bits,
since the quantization error variance scales with the squared step and the step with 1/(2^b − 1).
"""

from __future__ import annotations

import numpy as np

from bitplan.errors import PlanError
from bitplan.plan.estimates import Precision
from bitplan.plan.knapsack import noise_scale, solve_mckp
from bitplan.plan.schema import Budget
from bitplan.plan.sizing import BudgetTerms
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
    noise = np.array(
        [[max(unit.factor_value, 0.0) * noise_scale(level, measured_bits) for level in levels] for unit in assigned]
    )
    smallest, largest = int(cost.min(axis=1).sum()), int(cost.max(axis=1).sum())
    if not smallest <= terms.capacity:
        raise PlanError(
            f"--budget-{budget.kind.value.replace('_', '-')} {budget.value:g} is below every plan in range {levels}: "
            f"reachable sizes run from {terms.describe(smallest)} to {terms.describe(largest)}. Raise the budget."
        )
    choice, objective = solve_mckp(cost, noise, terms.capacity)
    return [levels[index] for index in choice], objective
