"""How long planning takes on a 10,000-layer profile, with and without a budget.

Run: ``python benchmarks/plan_bench.py [--layers 10000] [--repeats 3] [--out benchmarks/results/plan.json]``.
Prints one row per factor × strategy: the median CPU time of an unbudgeted plan, of a plan under
``--budget-avg-bits 6.3`` and their ratio to the 1 s target, then the exact budget solver alone on
10,000 groups with unrelated sizes (a harder case than real models, whose layers repeat shapes).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bitplan.atomic import atomic_write_text
from bitplan.plan import Budget, Factor, Strategy, make_plan
from bitplan.plan.budget import BudgetSearchTooLarge, cost_of, solve_monotone
from bitplan.plan.synthetic import deep_stack_profile

TARGET_SECONDS = 1.0


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of ``run`` (CPU time, so that other processes on the machine do not count)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/plan.json"))
    args = parser.parse_args()

    start = time.process_time()
    profile = deep_stack_profile(args.layers)
    build_seconds = time.process_time() - start
    budget = Budget(kind="avg_bits", value=6.3)
    rows = []
    print(f"profile: {len(profile.layers)} GEMMs, built in {build_seconds:.2f} s; target {TARGET_SECONDS:.0f} s per plan")
    print(f"{'factor':>9} {'strategy':>8} {'distinct':>8} {'plan s':>8} {'budget s':>9} {'plan/target':>12} {'budget/target':>14}")
    for factor in (f for f in Factor if f.structural):
        distinct = len({getattr(layer, factor.field) for layer in profile.layers})
        for strategy in Strategy.paper():
            plain = median_seconds(lambda: make_plan(profile, factor=factor, strategy=strategy), args.repeats)
            budgeted_plan = make_plan(profile, factor=factor, strategy=strategy, budget=budget)
            budgeted = median_seconds(
                lambda: make_plan(profile, factor=factor, strategy=strategy, budget=budget), args.repeats
            )
            rows.append(
                {
                    "factor": factor.value,
                    "strategy": strategy.value,
                    "distinct_values": distinct,
                    "plan_seconds": plain,
                    "budget_seconds": budgeted,
                    "budget_avg_bits": budgeted_plan.estimates.avg_bits,
                }
            )
            print(
                f"{factor.value:>9} {strategy.value:>8} {distinct:>8} {plain:>8.3f} {budgeted:>9.3f} "
                f"{plain / TARGET_SECONDS:>12.2f} {budgeted / TARGET_SECONDS:>14.2f}"
            )

    rng = random.Random(0)
    weights = [rng.randint(1_000, 1_000_000) for _ in range(args.layers)]
    solver = []
    for levels in ([4, 5, 6, 7, 8], [6, 7, 8], list(range(8, 17))):
        for mean in (levels[0] + 0.3, (levels[0] + levels[-1]) / 2 + 0.37, levels[-1] - 0.1):
            capacity = int(mean * sum(weights))
            try:
                gap = capacity - cost_of(solve_monotone(weights, levels, capacity), weights, levels)
            except BudgetSearchTooLarge:
                solver.append({"levels": levels, "mean_bits": mean, "seconds": None, "gap_bits": None})
                print(f"solver, levels {levels[0]}-{levels[-1]}, mean {mean:.2f}: gave up at the node limit")
                continue
            seconds = median_seconds(lambda: solve_monotone(weights, levels, capacity), args.repeats)
            solver.append({"levels": levels, "mean_bits": mean, "seconds": seconds, "gap_bits": gap})
            print(f"solver, {args.layers} unrelated sizes, levels {levels[0]}-{levels[-1]}, mean {mean:.2f}: "
                  f"{seconds:.3f} s ({seconds / TARGET_SECONDS:.2f} of target), {gap} bits below the budget")

    worst_plan = max(row["plan_seconds"] for row in rows)
    worst_budget = max(row["budget_seconds"] for row in rows)
    print(f"slowest plan {worst_plan:.3f} s, slowest budgeted plan {worst_budget:.3f} s (target {TARGET_SECONDS} s)")
    result = {
        "layers": len(profile.layers),
        "repeats": args.repeats,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "target_seconds": TARGET_SECONDS,
        "plans": rows,
        "solver": solver,
        "slowest_plan_seconds": worst_plan,
        "slowest_budget_seconds": worst_budget,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
