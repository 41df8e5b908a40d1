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

R at a budget draws a random plan instead of shifting one (``random_levels``), then fills it the same way.
"""

from __future__ import annotations

import random
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

    # at `low` every unit sits at the lowest level, at `high` at the top (positions may lie outside 0..L−1)
    low, high = -float(base.max(initial=0.0)) - 1.0, float(n_levels) - float(base.min(initial=0.0))
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
    return raise_while_fits(levels, weights, values, capacity, order)


def random_levels(weights: Sequence[int], values: Sequence[int], capacity: int, seed: int) -> list[int]:
    """R at a budget: a seeded random plan that fits ``capacity``, filled to within one level step of it.

    Units are visited in a random order; each takes a level drawn uniformly from those the capacity
    left still affords (the units not yet visited counted at the lowest level); then the plan is
    filled in another random order. Different seeds give different plans wherever the budget leaves
    any freedom.

    Example:
        >>> plan = random_levels([3, 1, 2], [1, 2, 4], 12, seed=0)
        >>> sum(w * [1, 2, 4][level] for w, level in zip([3, 1, 2], plan)) <= 12
        True
    """
    rng = random.Random(seed)
    order = list(range(len(weights)))
    rng.shuffle(order)
    levels = [0] * len(weights)
    left = capacity - values[0] * sum(weights)
    for unit in order:
        affordable = [level for level, value in enumerate(values) if weights[unit] * (value - values[0]) <= left]
        levels[unit] = rng.choice(affordable)
        left -= weights[unit] * (values[levels[unit]] - values[0])
    rng.shuffle(order)
    return raise_while_fits(levels, weights, values, capacity, order)


def raise_while_fits(
    levels: list[int], weights: Sequence[int], values: Sequence[int], capacity: int, order: Sequence[int]
) -> list[int]:
    """Raise units one level at a time in ``order``, pass after pass, while a raise fits ``capacity``."""
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
