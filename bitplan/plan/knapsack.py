"""Budget-optimal bit choices: a multiple-choice knapsack, solved exactly.

Each layer i picks one level l; choosing costs ``cost[i, l]`` (bits of size, or BitOPs) and adds
``noise[i, l]`` (sensitivity-weighted quantization noise). Minimise Σ noise under Σ cost ≤ budget.

The solver is a dynamic program over Pareto frontiers of (cost, noise) — exact, and small in
practice because layers share few distinct sizes. When a frontier grows past ``max_states`` it
switches to HiGHS (``scipy.optimize.milp``), exact up to HiGHS's MIP gap tolerance (≈1e-6 relative).
"""

from __future__ import annotations

import numpy as np

from bitplan.errors import PlanError

BUDGET_TOLERANCE = 1e-12
"""Relative slack of Σ cost ≤ budget: a budget computed in floating point (e.g. U's average bits
times the parameters) may land a rounding error below the exact integer size it stands for."""


def noise_scale(bits: int, measured_bits: int) -> float:
    """Quantization noise at ``bits`` relative to ``measured_bits``: the error variance scales with
    the squared step, step ∝ 1/(2^b − 1). 32 bits (not quantized) adds none."""
    if bits >= 32:
        return 0.0
    return ((2**measured_bits - 1) / (2**bits - 1)) ** 2


def solve_mckp(
    cost: np.ndarray, noise: np.ndarray, budget: float, *, max_states: int = 2_000_000
) -> tuple[list[int], float]:
    """Exact minimum of Σ noise[i, choice_i] subject to Σ cost[i, choice_i] ≤ budget·(1 + BUDGET_TOLERANCE).

    Args:
        cost: [layers, levels] non-negative costs.
        noise: [layers, levels] non-negative objective terms.
        budget: the largest allowed total cost.

    Returns:
        (chosen level index per layer, objective value).

    Raises:
        PlanError: when no assignment fits, naming the smallest and largest reachable totals.
    """
    cost = np.asarray(cost, dtype=float)
    noise = np.asarray(noise, dtype=float)
    layers, levels = cost.shape
    smallest, largest = cost.min(axis=1).sum(), cost.max(axis=1).sum()
    if smallest > budget * (1 + BUDGET_TOLERANCE):
        raise PlanError(
            f"the budget {budget:,.6g} is unreachable: the cheapest assignment costs {smallest:,.6g} and the "
            f"dearest {largest:,.6g}; give a budget in that range or allow lower bit levels"
        )
    solved = _pareto_dp(cost, noise, budget, max_states)
    if solved is not None:
        return solved
    return _milp(cost, noise, budget)


def _pareto_dp(cost: np.ndarray, noise: np.ndarray, budget: float, max_states: int) -> tuple[list[int], float] | None:
    """Exact DP: after each layer keep only (cost, noise) states no other state beats on both."""
    state_cost, state_noise = np.zeros(1), np.zeros(1)
    parents: list[np.ndarray] = []
    choices: list[np.ndarray] = []
    for layer_cost, layer_noise in zip(cost, noise):
        # [states, levels] candidates
        cand_cost = (state_cost[:, None] + layer_cost[None, :]).ravel()
        cand_noise = (state_noise[:, None] + layer_noise[None, :]).ravel()
        keep = cand_cost <= budget * (1 + BUDGET_TOLERANCE)
        index = np.flatnonzero(keep)
        order = np.lexsort((cand_noise[index], cand_cost[index]))  # by cost, then noise
        index = index[order]
        running = np.minimum.accumulate(cand_noise[index])
        frontier = np.ones(len(index), dtype=bool)
        frontier[1:] = cand_noise[index][1:] < running[:-1]  # strictly better than every cheaper state
        index = index[frontier]
        if len(index) > max_states:
            return None
        parents.append(index // cost.shape[1])
        choices.append(index % cost.shape[1])
        state_cost, state_noise = cand_cost[index], cand_noise[index]
    best = int(np.argmin(state_noise))
    objective = float(state_noise[best])
    picked = []
    for parent, choice in zip(reversed(parents), reversed(choices)):
        picked.append(int(choice[best]))
        best = int(parent[best])
    return picked[::-1], objective


def _milp(cost: np.ndarray, noise: np.ndarray, budget: float) -> tuple[list[int], float]:
    """HiGHS branch and bound, for frontiers too large for the DP."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers, levels = cost.shape
    one_per_layer = np.kron(np.eye(layers), np.ones(levels))  # [layers, layers·levels]
    constraints = [
        LinearConstraint(one_per_layer, 1, 1),
        LinearConstraint(cost.reshape(1, -1), -np.inf, budget),
    ]
    # HiGHS stops within an absolute gap (1e-6), and noise spans many orders of magnitude across bit
    # levels: rescale until the optimum itself is of order one, so that gap is negligible.
    scale = noise.max() or 1.0
    for _ in range(6):
        result = milp(
            c=(noise / scale).reshape(-1),
            constraints=constraints,
            integrality=np.ones(layers * levels),
            bounds=Bounds(0, 1),
            options={"mip_rel_gap": 0.0},
        )
        if not result.success:
            raise PlanError(f"the knapsack solver failed ({result.message}); this is a bug, please report it")
        choice = result.x.reshape(layers, levels).argmax(axis=1).tolist()
        objective = float(sum(noise[i, c] for i, c in enumerate(choice)))
        if objective <= 0 or objective >= 0.1 * scale:
            break
        scale = objective
    return choice, objective
