"""Exact budgeted planning: the largest order-preserving assignment whose cost fits a budget.

Groups g = 0..R−1 lie on a chain (distinct factor values in the strategy's order); group g costs
w_g per unit of level value, level values v_0 < … < v_{L−1}. A non-decreasing assignment ℓ_0 ≤ … ≤ ℓ_{R−1}
is fixed by L−1 thresholds t_1 ≤ … ≤ t_{L−1} (group g sits on level #{j : t_j ≤ g}), and costs

    v_0·S(0) + Σ_j (v_j − v_{j−1})·S(t_j),   S(t) = Σ_{g ≥ t} w_g.

We want the largest cost not above the capacity. Choosing L−1 values of S under a sum bound is a
k-SUM-type problem, so no known algorithm is both exact and fast on every input; this one is exact
and fast on the inputs planning meets:

- branch and bound over the thresholds one at a time, pruned by the cheapest and the dearest
  completion of each partial choice;
- the last two thresholds in one vectorised step (every value of one at once, the other by binary
  search; the last three on chains of up to ``SHORT_CHAIN`` groups); the search runs top-down
  (t_{L−1} first) and bottom-up (t_1 first) side by side in slices of work, and the first to finish
  answers, so it costs about twice the faster of the two;
- it stops as soon as it reaches the largest cost that any assignment could have below the
  capacity (every cost is a multiple of gcd(v_j − v_{j−1})·gcd(w_g)), which on large profiles is
  found within the first few branches;
- it explores thresholds outward from a preferred assignment (the unbudgeted mapping shifted to
  the budget), so among equal-cost optima it returns one close to that mapping.

Short chains with many levels (8–16 bits on a ResNet-50) go to an exhaustive meet-in-the-middle
search instead (``meet_in_middle.py``), where branch and bound would have to prove optimality node by
node. A work limit guards the rare input that would need a long exhaustive search (``BudgetSearchTooLarge``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate

import numpy as np

from bitplan.plan.fill import shifted_levels
from bitplan.plan.meet_in_middle import MAX_PAIRS, meet_in_middle, pairing_cost

DEFAULT_WORK_LIMIT = 30_000_000  # in candidate evaluations; a few seconds of CPU at most
NODE_COST = 100  # a branch-and-bound node costs about as much time as 100 vectorised candidates
SLICE = 20_000  # steps one search runs before the other takes its turn
SHORT_CHAIN = 400  # up to this many groups, top-down search vectorises its last three thresholds


class BudgetSearchTooLarge(Exception):
    """The exact search exceeded its work limit; ``best`` is the largest cost found so far."""

    def __init__(self, best: int) -> None:
        super().__init__(best)
        self.best = best


Node = tuple[int, int, int]  # (threshold index to choose next, its bound, cost of the chosen ones)


class _Optimal(Exception):
    """Raised inside the search once the lattice bound is reached: nothing larger can exist."""


def cost_of(levels: Sequence[int], weights: Sequence[int], values: Sequence[int]) -> int:
    """Σ_g w_g·v_{ℓ_g} for level indices ``levels``."""
    return sum(weight * values[level] for weight, level in zip(weights, levels))


def preferred_thresholds(
    weights: Sequence[int], values: Sequence[int], capacity: int, positions: Sequence[float]
) -> list[int]:
    """Thresholds of the preferred assignment: ``positions`` shifted by the largest s that fits.

    Group g sits on level clamp(⌊positions[g] + s + ½⌋, 0, L−1) (``fill.shifted_levels``).
    Returns t_1..t_{L−1} (index j−1 holds t_j).
    """
    chosen = shifted_levels(weights, values, capacity, positions)
    return [int(np.searchsorted(chosen, j, side="left")) for j in range(1, len(values))]


def solve_monotone(
    weights: Sequence[int],
    values: Sequence[int],
    capacity: int,
    *,
    positions: Sequence[float] | None = None,
    work_limit: int = DEFAULT_WORK_LIMIT,
    order: str = "auto",
) -> list[int] | None:
    """The non-decreasing level assignment of largest cost not above ``capacity``.

    Args:
        weights: Cost per unit of level value of each group, in chain order (non-negative ints).
        values: Value of each level, strictly increasing positive ints (bits, or bits × activation bits).
        capacity: The budget in the same units as Σ weights·values.
        positions: Preferred continuous level position of each group (non-decreasing), used to pick
            among equal-cost optima; default: spread evenly by chain index.
        work_limit: Work before giving up, counted in vectorised candidates (a branch-and-bound
            node counts as ``NODE_COST`` of them).
        order: ``top-down`` or ``bottom-up`` branch and bound, ``meet-in-middle`` (exhaustive, for
            short chains; needs L ≥ 4), or ``auto``: meet in the middle when that is cheap, else both
            branch-and-bound orders side by side (the first to finish wins). All are exact; they differ
            in speed and in which of several equal-cost optima they return.

    Returns:
        Level index per group, or None when even all groups at the lowest level exceed ``capacity``.
        When everything at the top level fits, that is the answer.

    Raises:
        BudgetSearchTooLarge: The exact search needed more than ``work_limit`` steps.

    Example:
        >>> solve_monotone([3, 1, 2], [4, 5, 6], 29)
        [0, 1, 2]
    """
    count, n_levels = len(weights), len(values)
    total = sum(weights)
    if values[0] * total > capacity:
        return None
    if values[-1] * total <= capacity or count == 0:
        return [n_levels - 1] * count
    if positions is None:
        positions = [g * (n_levels - 1) / max(count - 1, 1) for g in range(count)]
    preferred = preferred_thresholds(weights, values, capacity, positions)
    if order == "auto" and len(values) >= 4 and sum(values) * total < 2**62:
        if pairing_cost(count, len(values)) <= MAX_PAIRS:
            order = "meet-in-middle"
    if order == "meet-in-middle":
        deltas = [high - low for low, high in zip(values, values[1:])]
        suffix = list(accumulate(reversed(weights), initial=0))[::-1]
        thresholds = meet_in_middle(suffix, deltas, capacity - values[0] * total, preferred)
        return [bisect_right(thresholds, g) for g in range(count)]
    orders = {"top-down": [_TopDown], "bottom-up": [_BottomUp], "auto": [_TopDown, _BottomUp]}[order]
    searches = [search(weights, values, capacity, preferred) for search in orders]
    thresholds = _interleave(searches, work_limit)
    return [bisect_right(thresholds, g) for g in range(count)]


def _interleave(searches: list[_ThresholdSearch], work_limit: int) -> list[int]:
    """Advance the searches in turn, a slice of work each, until one finishes (each is exact alone).

    Running both orders side by side costs about twice the faster one, whichever input it is; the
    result is deterministic because slices count steps, not time.
    """
    running = [(search, search.steps()) for search in searches]
    while True:
        for search, steps in running:
            stop = search.work + min(SLICE, work_limit)
            try:
                while search.work < stop:
                    next(steps)
            except StopIteration:
                return search.best_thresholds
        if sum(search.work for search, _ in running) > work_limit:
            raise BudgetSearchTooLarge(max(search.best for search, _ in running))


class _ThresholdSearch:
    """Branch and bound over the thresholds t_1 ≤ … ≤ t_{L−1}; subclasses fix the order."""

    def __init__(self, weights: Sequence[int], values: Sequence[int], capacity: int, preferred: list[int]) -> None:
        self.count = len(weights)
        self.top = len(values) - 1  # index of the last threshold, t_{L−1}
        self.suffix = list(accumulate(reversed(weights), initial=0))[::-1]  # S(t), t = 0..R
        self.total = self.suffix[0]
        self.deltas = [0] + [high - low for low, high in zip(values, values[1:])]  # Δ_j, j = 1..L−1
        self.room = capacity - values[0] * self.total  # Q: what the thresholds may add
        step = math.gcd(*self.deltas[1:]) * math.gcd(*[w for w in weights if w] or [1])
        self.ceiling = self.room // step * step  # no assignment can cost more than this and fit
        self.preferred = [0] + preferred
        self.work = 0
        self.best = -1
        self.best_thresholds: list[int] = []
        self.chosen = [0] * len(values)  # chosen[j] = t_j
        big = sum(self.deltas) * self.total >= 2**62
        self.suffix_array = np.asarray(self.suffix, dtype=object if big else np.int64)
        self.negated_suffix = [-s for s in self.suffix]  # ascending, for bisect
        self.negated_array = np.asarray(self.negated_suffix, dtype=self.suffix_array.dtype)

    def steps(self) -> Iterator[None]:
        """Run the search depth first, yielding after every node; ``best_thresholds`` is the answer at the end."""
        stack: list[Iterator[Node]] = [iter([self._root()])]
        try:
            while stack:
                node = next(stack[-1], None)
                if node is None:
                    stack.pop()
                    continue
                self.work += NODE_COST
                children = self._expand(*node)
                if children is not None:
                    stack.append(children)
                yield
        except _Optimal:
            pass

    def _root(self) -> Node:
        raise NotImplementedError

    def _expand(self, level: int, bound: int, partial: int) -> Iterator[Node] | None:
        """Settle a node (record, prune, or solve its last two thresholds) or return its children."""
        raise NotImplementedError

    def _record(self, cost: int, thresholds: list[int]) -> None:
        if cost > self.best:
            self.best, self.best_thresholds = cost, thresholds
            if cost == self.ceiling:
                raise _Optimal

    def _lowest_fitting(self, scale: int, budget: int) -> int:
        """Smallest t with scale·S(t) ≤ budget (S is non-increasing, so all larger t fit too)."""
        return bisect_left(self.negated_suffix, -(budget // scale))

    def _fitting_array(self, scale: int, budgets: np.ndarray) -> np.ndarray:
        """``_lowest_fitting`` for many budgets at once."""
        return np.searchsorted(self.negated_array, -(budgets // scale), "left")

    def _pick(self, cost: np.ndarray, candidates: np.ndarray, level: int) -> int | None:
        """Index of the largest cost (nearest the preferred threshold among ties), if it beats the best."""
        top = cost.max()
        if top <= self.best:
            return None
        ties = np.flatnonzero(cost == top)
        return int(ties[np.argmin(np.abs(candidates[ties] - self.preferred[level]))])


class _TopDown(_ThresholdSearch):
    """Choose t_{L−1}, …, t_3 in turn; then every t_2 at once with t_1 by binary search."""

    def _root(self) -> Node:
        self.reach = list(accumulate(self.deltas))  # D_j = Δ_1 + … + Δ_j
        return self.top, self.count, 0

    def _expand(self, level: int, upper: int, partial: int) -> Iterator[Node] | None:
        """Node: t_level ≤ upper is next, t_{level+1..} are fixed and add ``partial``."""
        reach = self.reach[level]
        if partial + reach * self.suffix[upper] > self.room:
            return None
        if partial + reach * self.total <= self.room:  # everything below may sit at t = 0
            self._record(partial + reach * self.total, [0] * level + self.chosen[level + 1 :])
            return None
        if partial + reach * self.total <= self.best:
            return None
        if level <= 2:
            self._solve_last_two(level, upper, partial)
            return None
        if level == 3 and upper <= SHORT_CHAIN:
            self._solve_last_three(upper, partial)
            return None
        return self._children(level, upper, partial)

    def _children(self, level: int, upper: int, partial: int) -> Iterator[Node]:
        delta, below = self.deltas[level], self.reach[level - 1]
        lowest = self._lowest_fitting(self.reach[level], self.room - partial)
        for t in _outward(lowest, upper, self.preferred[level]):
            if partial + delta * self.suffix[t] + below * self.total <= self.best:
                continue  # even the dearest completion cannot beat the best found
            self.chosen[level] = t
            yield level - 1, t, partial + delta * self.suffix[t]

    def _solve_last_two(self, level: int, upper: int, partial: int) -> None:
        d1 = self.deltas[1]
        if level == 1:
            t1 = self._lowest_fitting(d1, self.room - partial)
            self._record(partial + d1 * self.suffix[t1], [t1] + self.chosen[2:])
            return
        lowest = self._lowest_fitting(self.reach[2], self.room - partial)
        self.work += upper + 1 - lowest
        t2 = np.arange(lowest, upper + 1)
        with_t2 = partial + self.deltas[2] * self.suffix_array[lowest : upper + 1]
        # smallest t1 with Δ_1·S(t1) ≤ what is left; t1 ≤ t2 holds because S(t2) fits already
        t1 = self._fitting_array(d1, self.room - with_t2)
        cost = with_t2 + d1 * self.suffix_array[t1]
        pick = self._pick(cost, t2, 2)
        if pick is not None:
            self._record(int(cost[pick]), [int(t1[pick]), int(t2[pick])] + self.chosen[3:])


    def _solve_last_three(self, upper: int, partial: int) -> None:
        """On short chains, every (t_3, t_2) pair at once, t_1 by binary search: R times fewer nodes."""
        d1, d2, d3 = self.deltas[1], self.deltas[2], self.deltas[3]
        lowest = self._lowest_fitting(self.reach[3], self.room - partial)
        t2, t3 = np.triu_indices(upper + 1)  # every pair t2 ≤ t3 ≤ upper
        keep = t3 >= lowest
        t2, t3 = t2[keep], t3[keep]
        self.work += len(t3)
        with_two = partial + d3 * self.suffix_array[t3] + d2 * self.suffix_array[t2]
        fits = with_two + d1 * self.suffix_array[t2] <= self.room  # t1 = t2 is the cheapest completion
        t2, t3, with_two = t2[fits], t3[fits], with_two[fits]
        if not len(t3):
            return
        t1 = self._fitting_array(d1, self.room - with_two)
        cost = with_two + d1 * self.suffix_array[t1]
        pick = self._pick(cost, t2, 2)
        if pick is not None:
            self._record(int(cost[pick]), [int(t1[pick]), int(t2[pick]), int(t3[pick])] + self.chosen[4:])


class _BottomUp(_ThresholdSearch):
    """Choose t_1, …, t_{L−3} in turn; then every t_{L−2} at once with t_{L−1} by binary search."""

    def _root(self) -> Node:
        self.above = list(accumulate(reversed(self.deltas)))[::-1] + [0]  # A_j = Δ_j + … + Δ_{L−1}
        return 1, 0, 0

    def _expand(self, level: int, lower: int, partial: int) -> Iterator[Node] | None:
        """Node: t_level ≥ lower is next, t_1..t_{level−1} are fixed and add ``partial``."""
        if partial > self.room:
            return None
        dearest = partial + self.above[level] * self.suffix[lower]
        if dearest <= self.room:  # everything above may sit at t = lower
            self._record(dearest, self.chosen[1:level] + [lower] * (self.top - level + 1))
            return None
        if dearest <= self.best:
            return None
        if level >= self.top - 1:
            self._solve_last_two(level, lower, partial)
            return None
        return self._children(level, lower, partial)

    def _children(self, level: int, lower: int, partial: int) -> Iterator[Node]:
        delta, rest = self.deltas[level], self.above[level + 1]
        lowest = max(lower, self._lowest_fitting(delta, self.room - partial))
        for t in _outward(lowest, self.count, self.preferred[level]):
            if partial + (delta + rest) * self.suffix[t] <= self.best:
                continue  # even the dearest completion cannot beat the best found
            self.chosen[level] = t
            yield level + 1, t, partial + delta * self.suffix[t]

    def _solve_last_two(self, level: int, lower: int, partial: int) -> None:
        d_top = self.deltas[self.top]
        if level == self.top:
            t = max(lower, self._lowest_fitting(d_top, self.room - partial))
            self._record(partial + d_top * self.suffix[t], self.chosen[1 : self.top] + [t])
            return
        lowest = max(lower, self._lowest_fitting(self.deltas[level], self.room - partial))
        self.work += self.count + 1 - lowest
        t_low = np.arange(lowest, self.count + 1)
        with_low = partial + self.deltas[level] * self.suffix_array[lowest:]
        t_high = np.maximum(t_low, self._fitting_array(d_top, self.room - with_low))
        cost = with_low + d_top * self.suffix_array[t_high]
        pick = self._pick(cost, t_low, level)
        if pick is not None:
            self._record(int(cost[pick]), self.chosen[1:level] + [int(t_low[pick]), int(t_high[pick])])


def _outward(low: int, high: int, centre: int) -> Iterator[int]:
    """low..high, starting at ``centre`` (clamped) and alternating outward."""
    centre = min(max(centre, low), high)
    yield centre
    for offset in range(1, high - low + 1):
        if centre - offset >= low:
            yield centre - offset
        if centre + offset <= high:
            yield centre + offset
