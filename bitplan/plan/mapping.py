"""From factor values to bit levels: the ``rank``, ``log`` and ``quantile`` mappings.

Every mapping returns, for each unit, the index of its level under C+ (0 = lowest). Equal factor
values always get equal indices. Definitions (also in docs/planning.md), with L levels:

- rank: the R distinct values ranked r = 0..R−1 ascending; index ⌊r·(L−1)/(R−1) + ½⌋ (round half up),
  the middle index ⌊L/2⌋ when R = 1. Only the order of the values matters.
- log: y = ln(1 + v) scaled to x ∈ [0, 1] between the smallest and largest y; index ⌊x·(L−1) + ½⌋.
  Gaps between values matter: a value far above the rest gets the top level alone.
- quantile: q = (#units below v + ½·#units equal to v) / N; index min(⌊q·L⌋, L−1), so each level
  holds about N/L units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from bitplan.plan.schema import Mapping


def middle_index(n_levels: int) -> int:
    """The middle level, ⌊(L−1)/2 + ½⌋ = ⌊L/2⌋ (round half up, like the rank mapping)."""
    return n_levels // 2


def rank_indices(values: Sequence[float], n_levels: int) -> list[int]:
    """C+ level index per value by rank among the distinct values (exact integer arithmetic)."""
    distinct = sorted(set(values))
    rank = {value: r for r, value in enumerate(distinct)}
    spread = len(distinct) - 1
    if spread == 0:
        return [middle_index(n_levels)] * len(values)
    # ⌊r·(L−1)/(R−1) + ½⌋ = ⌊(2r(L−1) + (R−1)) / (2(R−1))⌋
    return [(2 * rank[value] * (n_levels - 1) + spread) // (2 * spread) for value in values]


def log_positions(values: Sequence[float], n_levels: int) -> list[float]:
    """Continuous level positions of the log mapping, in [0, L−1]."""
    logs = [math.log1p(value) for value in values]
    low, high = min(logs), max(logs)
    if high == low:
        return [float(middle_index(n_levels))] * len(values)
    return [(y - low) / (high - low) * (n_levels - 1) for y in logs]


def log_indices(values: Sequence[float], n_levels: int) -> list[int]:
    """C+ level index per value by position on a log scale."""
    if len(set(values)) == 1:
        return [middle_index(n_levels)] * len(values)
    return [min(math.floor(position + 0.5), n_levels - 1) for position in log_positions(values, n_levels)]


def quantile_indices(values: Sequence[float], n_levels: int) -> list[int]:
    """C+ level index per value by its mid-rank quantile among all units (ties share one quantile)."""
    count = len(values)
    ordered = sorted(values)
    below: dict[float, int] = {}
    equal: dict[float, int] = {}
    for position, value in enumerate(ordered):
        below.setdefault(value, position)
        equal[value] = equal.get(value, 0) + 1
    return [min((2 * below[v] + equal[v]) * n_levels // (2 * count), n_levels - 1) for v in values]


_INDEXERS: dict[Mapping, Callable[[Sequence[float], int], list[int]]] = {
    Mapping.rank: rank_indices,
    Mapping.log: log_indices,
    Mapping.quantile: quantile_indices,
}


def level_indices(values: Sequence[float], n_levels: int, mapping: Mapping) -> list[int]:
    """C+ level index (0 = lowest of ``n_levels``) for each factor value under ``mapping``.

    Example:
        >>> level_indices([27, 64, 144, 288, 576], 5, Mapping.rank)
        [0, 1, 2, 3, 4]
        >>> level_indices([1, 64, 256, 1024, 1024], 5, Mapping.rank)
        [0, 1, 3, 4, 4]
    """
    if not values:
        return []
    return _INDEXERS[mapping](values, n_levels)


def level_positions(values: Sequence[float], n_levels: int, mapping: Mapping) -> list[float]:
    """Continuous C+ positions in [0, L−1] whose rounding gives ``level_indices``.

    Budgeted planning starts its search from these positions shifted up or down, so that among the
    plans of equal size it prefers the one nearest the unbudgeted mapping.
    """
    if not values:
        return []
    if mapping is Mapping.log:
        return log_positions(values, n_levels)
    if mapping is Mapping.quantile:
        count, ordered = len(values), sorted(values)
        first = {}
        for position, value in enumerate(ordered):
            first.setdefault(value, position)
        last = {value: position for position, value in enumerate(ordered)}
        return [(first[v] + last[v] + 1) / (2 * count) * n_levels - 0.5 for v in values]
    distinct = sorted(set(values))
    if len(distinct) == 1:
        return [(n_levels - 1) / 2] * len(values)
    rank = {value: r for r, value in enumerate(distinct)}
    return [rank[v] * (n_levels - 1) / (len(distinct) - 1) for v in values]
