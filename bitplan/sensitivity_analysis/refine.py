"""Local search on the real loss of the whole quantized model, from the knapsack's plan and a few others.

The knapsack adds per-layer scores as if layers did not interact; at 1–2 bits they do. So the plan
is settled on the calibration batches themselves, every planned weight at its bits at once:

1. starts: the knapsack plans (from each per-level measure) and a few seeded random plans at the
   budget, each scored; the ``searches`` best are searched from, and the best end is kept;
2. moves within the budget: every single-weight change to any other level (lower ones too), and the
   ``candidates`` others the per-level table predicts best — swaps (one weight up a level, another
   down), a raise repaid by several lowerings, a lowering spent on several raises. All are applied
   for real and scored; the best is kept if it lowers the objective. Rounds stop when none does.
   Plans met twice are scored once.

Objectives: ``loss`` (calibration loss), ``kl`` (KL to the full-precision outputs) or ``error``
(calibration error rate, ties broken by the loss).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bitplan.choices import DEFAULT_ZERO_POINT, ZeroPoint
from bitplan.sensitivity_analysis.calibration import Calibration
from bitplan.sensitivity_analysis.per_level import OutputComparer, QuantizedWeights

DEFAULT_CANDIDATES = 32
DEFAULT_ROUNDS = 20
DEFAULT_SEARCHES = 1
REFINE_OBJECTIVES = ("loss", "kl", "error")


@dataclass(frozen=True)
class Refinement:
    """The refined bits and what the whole quantized model scored (loss, KL, error) at the start and end."""

    bits: dict[str, int]
    start: int  # index of the start kept
    before: tuple[float, float, float]  # the first start's scores (the knapsack plan)
    after: tuple[float, float, float]
    evaluations: int
    moves: int


@dataclass(frozen=True)
class BudgetSpace:
    """Where moves may go: each weight's cost per unit of level value, the level values, the capacity."""

    levels: list[int]
    weights: dict[str, int]
    values: list[int]
    capacity: int

    def cost(self, bits: Mapping[str, int]) -> int:
        return sum(self.weights[w] * self.values[self.levels.index(b)] for w, b in bits.items())


def objective_key(objective: str):
    """Sort key of (loss, KL, error) scores for ``objective``; lower is better."""
    if objective == "error":
        return lambda scores: (scores[2], scores[0])
    index = REFINE_OBJECTIVES.index(objective)
    return lambda scores: scores[index]


def refine_bits(
    calibration: Calibration,
    starts: Sequence[Mapping[str, int]],
    space: BudgetSpace,
    predicted: Mapping[str, Mapping[int, float]],
    *,
    objective: str = "loss",
    candidates: int = DEFAULT_CANDIDATES,
    rounds: int = DEFAULT_ROUNDS,
    searches: int = DEFAULT_SEARCHES,
    grid: ZeroPoint | str = DEFAULT_ZERO_POINT,
) -> Refinement:
    """The best of ``starts`` (weight FQN -> bits), improved by one-level moves within ``space``.

    Args:
        predicted: Per-level scores used to rank moves before they are tried (``LevelTable.scores``).
        objective: ``loss``, ``kl`` or ``error`` on the calibration batches.
        candidates: Moves tried for real per round.
        rounds: Most moves kept per search.
        searches: How many of the best starts are searched from; the best end is kept.
    """
    key = objective_key(objective)
    comparer = OutputComparer(calibration)
    weights = QuantizedWeights(calibration, grid)
    seen: dict[tuple, tuple[float, float, float]] = {}  # plans already scored (searches meet)

    def score(bits: Mapping[str, int]) -> tuple[float, float, float]:
        plan = tuple(sorted(bits.items()))
        if plan not in seen:
            weights.set(bits)
            seen[plan] = comparer.measure()
        return seen[plan]

    try:
        scored = [(score(bits), index) for index, bits in enumerate(starts)]
        before = scored[0][0]
        ends = []
        for result, index in sorted(scored, key=lambda item: (key(item[0]), item[1]))[:searches]:
            bits, result, moved = _descend(dict(starts[index]), result, score, key, space, predicted, candidates, rounds)
            ends.append((key(result), index, bits, result, moved))
        _, start, current, best, moves = min(ends, key=lambda end: end[:2])
    finally:
        weights.restore()
    return Refinement(bits=current, start=start, before=before, after=best, evaluations=len(seen), moves=moves)


def _descend(current, best, score, key, space, predicted, candidates: int, rounds: int):
    """Steepest descent from ``current`` (scored ``best``): each round scores every single-weight change and
    the ``candidates`` best-predicted other moves, and takes the best while it helps."""
    moves = 0
    for _ in range(rounds):
        singles, others = _ranked_moves(current, space, predicted)
        tried = [(score(bits), bits) for bits in singles + others[:candidates]]
        if not tried:
            break
        result, bits = min(tried, key=lambda item: key(item[0]))
        if key(result) >= key(best):
            break
        current, best, moves = bits, result, moves + 1
    return current, best, moves


def _ranked_moves(
    current: Mapping[str, int], space: BudgetSpace, predicted: Mapping[str, Mapping[int, float]]
) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """The moves that fit the budget: single-weight changes, and the others best predicted change first.

    Single: one weight to any other level, lower ones too (at 1–4 bits layers interact, and a plan
    with one layer narrower, by several levels even, can be the better one outright). Others: a swap (one weight up a level, another
    down); a raise repaid by lowering the others that the table says lose least per bit freed (a large
    layer can rarely be paid for by one small one); a lowering whose freed bits are spent on the raises
    that gain most per bit.
    """
    index = {w: space.levels.index(b) for w, b in current.items()}
    left = space.capacity - space.cost(current)

    def step(w: str, to: int) -> tuple[int, float]:  # (cost change, predicted score change) of w to level ``to``
        cost = space.weights[w] * (space.values[to] - space.values[index[w]])
        return cost, predicted[w][space.levels[to]] - predicted[w][space.levels[index[w]]]

    ups = {w: step(w, i + 1) for w, i in index.items() if i + 1 < len(space.levels)}
    downs = {w: step(w, i - 1) for w, i in index.items() if i > 0}
    proposals: dict[tuple, tuple[float, dict[str, int]]] = {}

    def propose(changes: Mapping[str, int], gain: float) -> None:  # changes: weight -> level-index offset
        bits = {**current, **{w: space.levels[index[w] + d] for w, d in changes.items()}}
        proposals.setdefault(tuple(sorted(changes.items())), (gain, bits))

    singles = []
    for w, i in index.items():
        for to in range(len(space.levels)):
            cost, gain = step(w, to)
            if to != i and cost <= left:
                singles.append((gain, {**current, w: space.levels[to]}))
    for up, (up_cost, up_gain) in ups.items():
        for down, (down_cost, down_gain) in downs.items():
            if down != up and up_cost + down_cost <= left:
                propose({up: 1, down: -1}, up_gain + down_gain)
        if up_cost > left:
            repaid = _greedy(downs, exclude=up, need=up_cost - left)
            if repaid is not None:
                propose({up: 1, **{w: -1 for w in repaid}}, up_gain + sum(downs[w][1] for w in repaid))
    for down, (down_cost, down_gain) in downs.items():
        spent = _greedy(ups, exclude=down, budget=left - down_cost)
        if len(spent) > 1:  # one raise is a swap
            propose({down: -1, **{w: 1 for w in spent}}, down_gain + sum(ups[w][1] for w in spent))
    ranked = lambda moves: [bits for _, bits in sorted(moves, key=lambda item: item[0])]  # noqa: E731
    return ranked(singles), ranked(proposals.values())


def _greedy(
    steps: Mapping[str, tuple[int, float]], *, exclude: str, need: int | None = None, budget: int | None = None
) -> list[str] | None:
    """Weights to move one level, best predicted change per bit first.

    With ``need``: lowerings (negative costs) until they free ``need`` bits (None if they cannot).
    With ``budget``: raises while each still fits the bits left.
    """
    order = sorted(
        (w for w in steps if w != exclude and steps[w][0] != 0), key=lambda w: steps[w][1] / abs(steps[w][0])
    )
    chosen: list[str] = []
    if need is not None:
        for w in order:
            if need <= 0:
                break
            chosen.append(w)
            need += steps[w][0]
        return chosen if need <= 0 else None
    for w in order:
        if steps[w][0] <= budget:
            chosen.append(w)
            budget -= steps[w][0]
    return chosen
