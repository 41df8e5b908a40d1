"""Local search on the real loss of the whole quantized model, from the knapsack's plan and a few others.

The knapsack adds per-layer scores as if layers did not interact; at 1–2 bits they do. So the plan
is settled on the calibration batches themselves, every planned weight at its bits at once:

1. starts: the knapsack plans (from each per-level measure) and a few seeded random plans at the
   budget; the one with the lowest objective is kept;
2. moves: one-level raises and swaps (lower one weight, raise another) that stay within the budget,
   ranked by the change the per-level table predicts; the ``candidates`` most promising are applied
   for real and scored; the best is kept if it lowers the objective. Rounds stop when none does.

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
    grid: ZeroPoint | str = DEFAULT_ZERO_POINT,
) -> Refinement:
    """The best of ``starts`` (weight FQN -> bits), improved by one-level moves within ``space``.

    Args:
        predicted: Per-level scores used to rank moves before they are tried (``LevelTable.scores``).
        objective: ``loss``, ``kl`` or ``error`` on the calibration batches.
        candidates: Moves tried for real per round.
        rounds: Most moves kept.
    """
    key = objective_key(objective)
    comparer = OutputComparer(calibration)
    weights = QuantizedWeights(calibration, grid)
    evaluations = 0

    def score(bits: Mapping[str, int]) -> tuple[float, float, float]:
        nonlocal evaluations
        evaluations += 1
        weights.set(bits)
        return comparer.measure()

    try:
        scored = [(score(bits), index) for index, bits in enumerate(starts)]
        before = scored[0][0]
        best, start = min(scored, key=lambda item: (key(item[0]), item[1]))
        current, moves = dict(starts[start]), 0
        for _ in range(rounds):
            tried = [(score(bits), bits) for bits in _ranked_moves(current, space, predicted)[:candidates]]
            if not tried:
                break
            result, bits = min(tried, key=lambda item: key(item[0]))
            if key(result) >= key(best):
                break
            current, best, moves = bits, result, moves + 1
    finally:
        weights.restore()
    return Refinement(bits=current, start=start, before=before, after=best, evaluations=evaluations, moves=moves)


def _ranked_moves(
    current: Mapping[str, int], space: BudgetSpace, predicted: Mapping[str, Mapping[int, float]]
) -> list[dict[str, int]]:
    """Every single raise and every swap that fits the budget, best predicted change first."""
    left = space.capacity - space.cost(current)
    index = {w: space.levels.index(b) for w, b in current.items()}
    ups = {w: i + 1 for w, i in index.items() if i + 1 < len(space.levels)}
    downs = {w: i - 1 for w, i in index.items() if i > 0}

    def change(w: str, to: int) -> tuple[int, float]:  # (cost change, predicted score change)
        cost = space.weights[w] * (space.values[to] - space.values[index[w]])
        gain = predicted[w][space.levels[to]] - predicted[w][space.levels[index[w]]]
        return cost, gain

    proposals: list[tuple[float, dict[str, int]]] = []
    for up, to in ups.items():
        up_cost, up_gain = change(up, to)
        if up_cost <= left:
            proposals.append((up_gain, {**current, up: space.levels[to]}))
        for down, below in downs.items():
            if down == up:
                continue
            down_cost, down_gain = change(down, below)
            if up_cost + down_cost <= left:
                proposals.append((up_gain + down_gain, {**current, up: space.levels[to], down: space.levels[below]}))
    proposals.sort(key=lambda item: item[0])
    return [bits for _, bits in proposals]
