"""Greedy refinement of a knapsack plan, judged by the real loss of the whole quantized model.

The knapsack adds per-layer scores as if layers did not interact; at 1–2 bits they do. Starting from
its plan, each round proposes one-level moves that stay within the budget: raise one weight, or lower
one and raise another (a swap). Moves are ranked by the change the per-level table predicts; the most
promising ``candidates`` are applied for real (every planned weight at its bits) and scored on the
calibration batches; the best is kept if it lowers the objective. Rounds stop when none does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bitplan.choices import DEFAULT_ZERO_POINT, ZeroPoint
from bitplan.sensitivity_analysis.calibration import Calibration
from bitplan.sensitivity_analysis.per_level import OutputComparer, QuantizedWeights

DEFAULT_CANDIDATES = 8
DEFAULT_ROUNDS = 12
REFINE_OBJECTIVES = ("loss", "kl")


@dataclass(frozen=True)
class Refinement:
    """The refined bits and what the whole quantized model scored before and after."""

    bits: dict[str, int]
    before: tuple[float, float]  # (loss, KL) of the starting plan on the calibration batches
    after: tuple[float, float]
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


def refine_bits(
    calibration: Calibration,
    start: Mapping[str, int],
    space: BudgetSpace,
    predicted: Mapping[str, Mapping[int, float]],
    *,
    objective: str = "loss",
    candidates: int = DEFAULT_CANDIDATES,
    rounds: int = DEFAULT_ROUNDS,
    grid: ZeroPoint | str = DEFAULT_ZERO_POINT,
) -> Refinement:
    """Improve ``start`` (weight FQN -> bits) by one-level moves within ``space``, judged on the real model.

    Args:
        predicted: Per-level scores used to rank moves before they are tried (``LevelTable.scores``).
        objective: ``loss`` (calibration loss) or ``kl`` (KL to the full-precision outputs).
        candidates: Moves tried for real per round.
        rounds: Most moves kept.
    """
    pick = REFINE_OBJECTIVES.index(objective)
    comparer = OutputComparer(calibration)
    weights = QuantizedWeights(calibration, grid)
    evaluations = 0

    def score(bits: Mapping[str, int]) -> tuple[float, float]:
        nonlocal evaluations
        evaluations += 1
        weights.set(bits)
        return comparer.measure()

    try:
        current = dict(start)
        before = best = score(current)
        moves = 0
        for _ in range(rounds):
            tried = [(score(bits), bits) for bits in _ranked_moves(current, space, predicted)[:candidates]]
            if not tried:
                break
            result, bits = min(tried, key=lambda item: item[0][pick])
            if result[pick] >= best[pick]:
                break
            current, best, moves = bits, result, moves + 1
    finally:
        weights.restore()
    return Refinement(bits=current, before=before, after=best, evaluations=evaluations, moves=moves)


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
