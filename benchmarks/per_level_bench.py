"""Where the recommended plan's time goes: per-level measurement, then the refinement at each budget.

On one trained model and one calibration (as ``bitplan pareto`` makes them): the time of
``measure_levels`` (every planned weight alone at every level) and of ``recommend_plan`` at each
budget reusing that table (knapsack + local search on the calibration batches), with the number of
whole-model evaluations the search made. With ``--baseline-tree DIR`` the same measurement runs
first on another checkout of bitplan (e.g. ``git archive main | tar -x -C DIR``), so the two are
timed side by side in one run, and the tables are compared value by value.

    python benchmarks/per_level_bench.py --model 'zoo:transformer_lm?d_model=128&n_layers=2&n_heads=4&d_ff=512&seq_len=64' \\
        --data 'text:/tmp/bitplan-results/stdlib-corpus?level=char' --checkpoint /tmp/bitplan-results/lm128_fp32 \\
        --batches 2 --budgets 1.5,2 --baseline-tree /tmp/bitplan-main --out /tmp/per_level_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def measure(args: argparse.Namespace) -> dict:
    """Time the table and each budget's recommended plan with the bitplan on ``sys.path``."""
    import bitplan
    from bitplan.sensitivity_analysis.calibration import calibrate
    from bitplan.sensitivity_analysis.per_level import measure_levels
    from bitplan.sensitivity_analysis.recommend import recommend_plan

    torch.set_num_threads(args.threads)
    levels = [int(b) for b in args.levels.split(",")]
    calibration = calibrate(args.model, args.data, checkpoint=args.checkpoint, batches=args.batches, seed=0, device="cpu")
    start = time.perf_counter()
    table = measure_levels(calibration, levels)
    result = {"bitplan": str(Path(bitplan.__file__).parent), "calibration": calibration.description,
              "weights": len(table.kl), "levels": levels, "measure_levels_s": time.perf_counter() - start,
              "kl": table.kl, "loss_delta": table.loss_delta, "budgets": {}}
    for budget in (float(b) for b in args.budgets.split(",") if b):
        start = time.perf_counter()
        plan = recommend_plan(args.model, args.data, budget={"kind": "avg_bits", "value": budget}, levels=levels,
                              calibration=calibration, table=table, weight_only=True)
        result["budgets"][str(budget)] = {
            "recommend_s": time.perf_counter() - start,
            "evaluations": plan.source.measured.get("refinement_evaluations"),
            "bits": plan.bits_by_weight(),
        }
    return result


def largest_difference(a: dict, b: dict) -> float:
    return max(abs(a[w][str(l)] - b[w][str(l)]) for w in a for l in a[w])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--levels", default="1,2,3,4,8")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--budgets", default="1.5", help="comma-separated mean bits; empty: the table only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline-tree", type=Path, help="another bitplan checkout, timed first")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json_only:
        print(json.dumps(measure(args)))
        return
    runs = {}
    if args.baseline_tree:
        command = [sys.executable, __file__, "--json-only", *sys.argv[1:]]
        env = {**os.environ, "PYTHONPATH": str(args.baseline_tree)}
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        runs["baseline"] = json.loads(output.splitlines()[-1])
    runs["this tree"] = json.loads(json.dumps(measure(args)))  # keys as strings, like the baseline's
    print(f"{'':12s} {'per-level':>10s}  " + "  ".join(f"{b + ' bits':>16s}" for b in runs["this tree"]["budgets"]))
    for name, run in runs.items():
        cells = [f"{v['recommend_s']:7.1f} s ({v['evaluations']:.0f} ev)" for v in run["budgets"].values()]
        print(f"{name:12s} {run['measure_levels_s']:8.1f} s  " + "  ".join(f"{c:>16s}" for c in cells))
    print(f"{runs['this tree']['weights']} weights × {len(runs['this tree']['levels'])} levels; "
          f"calibration: {runs['this tree']['calibration']}")
    if "baseline" in runs:
        base, new = runs["baseline"], runs["this tree"]
        print(f"per-level time, this tree / baseline: {new['measure_levels_s'] / base['measure_levels_s']:.2f}×; "
              f"largest difference: KL {largest_difference(base['kl'], new['kl']):.3g}, "
              f"loss-delta {largest_difference(base['loss_delta'], new['loss_delta']):.3g}")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
