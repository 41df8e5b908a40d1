"""The ``fill`` budget rule: a strategy's own mapping, shifted to fit the budget, then filled.

The order-preserving rule (``budget.py``) picks the largest plan whose bits follow the factor's order.
At a budget that a uniform plan meets exactly, that largest plan is the uniform one, so C+, C- and R
all collapse to U. ``fill`` keeps the strategy's shape instead (docs/planning.md, "Size matching"):

1. shift: every unit sits at level clamp(⌊p_i + s + ½⌋, 0, L−1), p_i its unbudgeted level position,
   with the largest shift s whose cost fits the capacity (the cost rises with s: bisection);
2. fill: units are raised one level at a time, in the strategy's order of preference (highest
   position first), while the raise fits; passes repeat until none fits.

After step 2 no single raise fits, so the capacity left is below w_i·(v_{ℓ_i+1} − v_{ℓ_i}) for every
unit i below the top level: a mean-bits budget B is met within (B − one level step, B].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHIFT_STEPS = 60  # bisection steps on the shift: far below one level's width


def shifted_levels(
    weights: Sequence[int], values: Sequence[int], capacity: int, positions: Sequence[float]
) -> np.ndarray:
    """Level index per unit: ``positions`` shifted by the largest s whose cost Σ w·v fits ``capacity``.

    Example:
        >>> shifted_levels([1, 1, 1], [2, 4, 8], 10, [0.0, 1.0, 2.0]).tolist()
        [0, 0, 1]
    """
    n_levels = len(values)
    base = np.asarray(positions, dtype=np.float64)
    weight = np.asarray(weights, dtype=np.float64)
    value = np.asarray(values, dtype=np.float64)

    def levels_at(shift: float) -> np.ndarray:
        return np.clip(np.floor(base + shift + 0.5), 0, n_levels - 1).astype(np.int64)

    low, high = -float(n_levels), float(n_levels)
    for _ in range(SHIFT_STEPS):
        middle = (low + high) / 2
        if float(weight @ value[levels_at(middle)]) <= capacity:
            low = middle
        else:
            high = middle
    return levels_at(low)


def fill_levels(
    weights: Sequence[int],
    values: Sequence[int],
    capacity: int,
    positions: Sequence[float],
    order: Sequence[int],
) -> list[int]:
    """The ``fill`` rule: shift ``positions`` to fit, then raise units in ``order`` while a raise fits.

    Args:
        weights: Cost per unit of level value of each unit (params, or MACs for BitOPs).
        values: Level values, strictly increasing.
        capacity: Largest Σ weights·values allowed (at least Σ weights · values[0]).
        positions: Each unit's unbudgeted level position (0 = lowest level, L−1 = highest).
        order: Unit indices in the order they are raised (most deserving of bits first).

    Returns:
        Level index per unit; its cost fits ``capacity`` and no single one-level raise would.

    Example:
        >>> fill_levels([1, 1, 1], [2, 4, 8], 10, [0.0, 1.0, 2.0], order=[2, 1, 0])
        [0, 1, 1]
    """
    levels = shifted_levels(weights, values, capacity, positions).tolist()
    left = capacity - sum(w * values[level] for w, level in zip(weights, levels))
    raised = True
    while raised:
        raised = False
        for unit in order:
            level = levels[unit]
            if level + 1 < len(values):
                step = weights[unit] * (values[level + 1] - values[level])
                if step <= left:
                    levels[unit], left, raised = level + 1, left - step, True
    return levels
