"""Exhaustive budget search for short chains with many levels, by meeting in the middle.

Same problem as ``budget.py``: thresholds t_1 ≤ … ≤ t_{L−1} in 0..R, cost Σ_j Δ_j·S(t_j), the largest
cost not above Q. Branch and bound must prove optimality node by node when no assignment reaches
the lattice ceiling, which is slow for 8–16 bits (eight thresholds) on a ResNet-50 (about fifty
groups). Here every non-decreasing tuple of the lower half of the thresholds and of the upper half
is enumerated (vectorised), and each lower tuple is paired with the dearest upper tuple that fits
and starts at or after its last threshold. Cost: about R × (number of upper tuples) comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

MAX_PAIRS = 60_000_000  # R × tuples; above this branch and bound is used (it is fast on long chains)


def half_sizes(n_thresholds: int) -> tuple[int, int]:
    """How many thresholds go to the lower and the upper half."""
    lower = n_thresholds // 2
    return lower, n_thresholds - lower


def pairing_cost(count: int, n_levels: int) -> int:
    """Comparisons ``meet_in_middle`` needs for ``count`` groups and ``n_levels`` levels."""
    lower, upper = half_sizes(n_levels - 1)
    positions = count + 1  # a threshold takes values 0..R
    tuples = comb(positions + lower - 1, lower) + comb(positions + upper - 1, upper)
    return positions * tuples


def nondecreasing_tuples(length: int, high: int) -> np.ndarray:
    """Every non-decreasing tuple of ``length`` integers in 0..high, one per row.

    Example:
        >>> nondecreasing_tuples(2, 2).tolist()
        [[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]]
    """
    rows = np.arange(high + 1, dtype=np.int64)[:, None]  # [N, 1]
    for _ in range(length - 1):
        last = rows[:, -1]
        counts = high + 1 - last  # the next entry ranges over last..high
        parent = np.repeat(np.arange(len(rows)), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        following = last[parent] + np.arange(counts.sum()) - starts
        rows = np.column_stack([rows[parent], following])  # [N', k + 1]
    return rows


def meet_in_middle(
    suffix: Sequence[int], deltas: Sequence[int], room: int, preferred: Sequence[int]
) -> list[int]:
    """Thresholds t_1..t_{L−1} of largest Σ Δ_j·S(t_j) ≤ room, nearest ``preferred`` among ties.

    Args:
        suffix: S(0..R), non-increasing, S(R) = 0.
        deltas: Δ_1..Δ_{L−1} (positive), L ≥ 3.
        room: Q ≥ 0.
        preferred: Preferred t_1..t_{L−1}, to break ties.

    Returns:
        The thresholds, non-decreasing.
    """
    high = len(suffix) - 1
    s = np.asarray(suffix, dtype=np.int64)
    want = np.asarray(preferred, dtype=np.int64)
    n_lower, _ = half_sizes(len(deltas))
    lower = nondecreasing_tuples(n_lower, high)  # [N, h]: t_1..t_h
    upper = nondecreasing_tuples(len(deltas) - n_lower, high)  # [M, L−1−h]: t_{h+1}..t_{L−1}
    lower_cost = s[lower] @ np.asarray(deltas[:n_lower], dtype=np.int64)
    upper_cost = s[upper] @ np.asarray(deltas[n_lower:], dtype=np.int64)
    keep = lower_cost <= room
    lower, lower_cost = lower[keep], lower_cost[keep]
    keep = upper_cost <= room
    upper, upper_cost = upper[keep], upper_cost[keep]

    by_cost = np.argsort(upper_cost, kind="stable")
    upper, upper_cost = upper[by_cost], upper_cost[by_cost]
    partner_cost = np.full(len(lower), -1, dtype=np.int64)
    for split in np.unique(lower[:, -1]):
        fits = upper[:, 0] >= split  # the upper half starts at or after the lower half ends
        costs = upper_cost[fits]  # still ascending
        rows = np.flatnonzero(lower[:, -1] == split)
        position = np.searchsorted(costs, room - lower_cost[rows], side="right") - 1
        partner_cost[rows] = costs[position]  # position ≥ 0: all thresholds at R cost 0
    total = lower_cost + partner_cost
    best = total.max()
    ties = np.flatnonzero(total == best)
    chosen = ties[np.argmin(np.abs(lower[ties] - want[:n_lower]).sum(axis=1))]
    matches = np.flatnonzero((upper_cost == partner_cost[chosen]) & (upper[:, 0] >= lower[chosen, -1]))
    partner = matches[np.argmin(np.abs(upper[matches] - want[n_lower:]).sum(axis=1))]
    return [int(t) for t in lower[chosen]] + [int(t) for t in upper[partner]]
