"""Is the recommended plan better? Against 9 random plans and uniform at the same mean bits, on trained models.

For each model (zoo digits_cnn, and four models outside the zoo in ``planning_models.py``: a 6- and a
10-layer MLP, a VGG-style CNN, a residual CNN with batch norm) and each training seed: train on digits
(fp32, cached in ``--work``), then at each budget (weight-only, levels 1,2,3,4,8) make every candidate's
plan from one calibration, and evaluate it exactly as ``bitplan eval --checkpoint RUN --plan PLAN``
does (``bitplan.train.evaluate.Evaluator``: the plan applied to the trained weights by ``bitplan.apply``,
post-training quantization, on the 360 test images).

Candidates: ``recommended`` (``recommend_plan``'s defaults) and its variants (``VARIANTS``), the
one-width Fisher knapsack, first-last, and the baselines: uniform (the widest level within the budget:
1 bit here) and R at the budget with plan seeds 0..N−1 — the plans ``bitplan pareto --methods random``
and ``bitplan plan --strategy R --budget-avg-bits B --plan-seed s --weight-only`` make.

Prints per (model, budget) each method's mean accuracy over the checkpoints with a 95% t interval, and
in how many cases it is more accurate than at least N−1 of the N random plans — strictly, and counting a
random plan that is the very same plan as not against it; writes everything to ``--out`` (JSON).

    python benchmarks/recommended_plan.py --seeds 0,1,2,3,4 --out /tmp/recommended_plan.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ADAM = ["--epochs", "30", "--optimizer", "adamw", "--lr", "0.003"]
MODELS = {  # name -> (model spec, training options)
    "digits_cnn": ("zoo:digits_cnn", ["--epochs", "15"]),
    "digits_mlp": (f"{HERE / 'planning_models.py'}:digits_mlp", ADAM),
    "deep_mlp": (f"{HERE / 'planning_models.py'}:digits_deep_mlp", ADAM),
    "vgg": (f"{HERE / 'planning_models.py'}:digits_vgg", ADAM),
    "resnet_bn": (f"{HERE / 'planning_models.py'}:digits_resnet_bn", ADAM),
    "resnet20": ("zoo:resnet20", ["--epochs", "6"]),  # a zoo model, but 20 layers: the search's cost grows with them
}
VARIANTS = {  # name -> recommend_plan options; "recommended" is the library's default
    "recommended": {},
    "kl knapsack": {"refine": None},
    "kl+search(loss)": {"refine": "loss"},
    "kl+search(kl)": {"refine": "kl"},
    "kl+search(error)": {"refine": "error"},
    "search x3": {"searches": 3},
    "search x3 c64": {"searches": 3, "candidates": 64},
    "loss search x3": {"refine": "loss", "searches": 3},
    "search x8 r32": {"searches": 8, "restarts": 32},
}
BASELINES = ("fisher", "first-last", "uniform")
LEVELS = (1, 2, 3, 4, 8)


def train(name: str, seed: int, work: Path) -> Path:
    """Train model ``name`` on digits at ``seed`` (fp32) unless already done; returns its seed folder."""
    spec, options = MODELS[name]
    out = work / f"{name}-{seed}"
    if not any(out.glob("**/checkpoint.pt")):
        command = [sys.executable, "-m", "bitplan", "train", spec, "--data", "digits", "--seeds", str(seed),
                   "--threads", "1", "--no-progress", "--device", "cpu", "-o", str(out), *options]
        subprocess.run(command, check=True, capture_output=True)
    return next(out.glob("**/checkpoint.pt")).parent


def run_case(name: str, checkpoint: Path, budgets: list[float], random_plans: int, batches: int,
             variants: list[str]) -> list[dict]:
    """Every candidate's and every random plan's test accuracy for one trained model, at each budget."""
    from bitplan.sensitivity_analysis.at_budget import methods_at_budget
    from bitplan.sensitivity_analysis.per_level import measure_levels
    from bitplan.sensitivity_analysis.recommend import recommend_plan
    from bitplan.train.evaluate import Evaluator

    spec = MODELS[name][0]
    started = time.perf_counter()
    planner = methods_at_budget(spec, "digits", levels=LEVELS, checkpoint=checkpoint, batches=batches,
                                weight_only=True, device="cpu")
    table = measure_levels(planner.calibration, list(LEVELS))
    measure_seconds = time.perf_counter() - started
    tests = Evaluator.load(spec, "digits", checkpoint=checkpoint, device="cpu")  # what `bitplan eval` loads

    def evaluate(plan) -> dict:
        result = tests.evaluate(plan)
        return {"accuracy": result.metric, "loss": result.loss, "correct": result.correct}

    fp32 = evaluate(None)
    rows = []
    for budget_value in budgets:
        budget = {"kind": "avg_bits", "value": budget_value}
        plans, seconds = {}, {}
        for variant in variants:
            began = time.perf_counter()
            plans[variant] = recommend_plan(spec, "digits", budget=budget, levels=LEVELS, calibration=planner.calibration,
                                            table=table, weight_only=True, **VARIANTS[variant])
            seconds[variant] = time.perf_counter() - began
        for method in BASELINES:
            plans[method] = planner.plan(method, budget)
        randoms = [planner.plan("random", budget, seed=seed) for seed in range(random_plans)]
        random_results = [evaluate(plan) | {"avg_bits": plan.budget_reached} for plan in randoms]
        results = {}
        for method, plan in plans.items():
            result = evaluate(plan) | {"avg_bits": plan.budget_reached, "bits": plan.bits_by_weight(),
                                       "seconds": seconds.get(method)}
            same = [plan.bits_by_weight() == other.bits_by_weight() for other in randoms]
            result["beats_random"] = sum(result["correct"] > r["correct"] for r in random_results)
            result["same_plan_as_random"] = sum(same)
            result["beats_differing_random"] = sum(  # the random plans that differ from it and that it beats
                result["correct"] > r["correct"] for r, equal in zip(random_results, same) if not equal
            )
            result["ties_random"] = sum(result["correct"] == r["correct"] for r in random_results)
            result["within_budget"] = plan.budget_reached <= budget_value + 1e-9
            if "measured" in (plan.source.model_dump() if plan.source else {}):
                result["measured"] = plan.source.measured
            results[method] = result
        rows.append({
            "model": name, "spec": spec, "checkpoint": str(checkpoint), "budget": budget_value, "fp32": fp32,
            "measure_seconds": measure_seconds, "methods": results, "random": random_results,
            "distinct_random_plans": len({tuple(sorted(p.bits_by_weight().items())) for p in randoms}),
        })
    return rows


def t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student t interval (0 for one value)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5)


def is_win(result: dict, random_plans: int, counting_same: bool) -> bool:
    """More accurate than at least N−1 of the N random plans (a random plan equal to it not counted against it)."""
    beaten = result["beats_random"] + (result["same_plan_as_random"] if counting_same else 0)
    return beaten >= random_plans - 1


def summarize(rows: list[dict]) -> dict:
    """Per (model, budget) and in total: each method's mean accuracy (95% t interval) and win counts."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(f"{row['model']}@{row['budget']:g}", []).append(row)
    groups["all"] = rows
    summary = {}
    for key, group in groups.items():
        n = len(group[0]["random"])
        columns = {
            "fp32": [row["fp32"]["accuracy"] for row in group],
            "random (median)": [statistics.median(r["accuracy"] for r in row["random"]) for row in group],
            "random (best)": [max(r["accuracy"] for r in row["random"]) for row in group],
        }
        entry = {"cases": len(group), "distinct_random_plans": statistics.fmean(r["distinct_random_plans"] for r in group)}
        for column, values in columns.items():
            entry[column] = {"accuracy": t_interval(values)}
        for method in group[0]["methods"]:
            results = [row["methods"][method] for row in group]
            entry[method] = {
                "accuracy": t_interval([r["accuracy"] for r in results]),
                "strict_wins": sum(is_win(r, n, False) for r in results),
                "wins_counting_same_plan": sum(is_win(r, n, True) for r in results),
                "beats_uniform": sum(
                    r["correct"] > row["methods"]["uniform"]["correct"] for r, row in zip(results, group)
                ),
                "within_budget": sum(r["within_budget"] for r in results),
                "seconds": statistics.fmean(r["seconds"] for r in results) if results[0]["seconds"] is not None else None,
            }
        summary[key] = entry
    return summary


def print_summary(summary: dict, methods: list[str]) -> None:
    print("mean test accuracy % over checkpoints ± 95% t half-width; wins: cases more accurate than ≥ N−1 of N "
          "random plans, strictly | counting an identical random plan as not against it; > U1: beats uniform 1-bit")
    header = f"{'model@bits':<16} {'n':>2} {'R≠':>4} " + " ".join(f"{m[:17]:>17}" for m in methods)
    print(header)
    for key, entry in summary.items():
        cells = []
        for method in methods:
            mean, half = entry[method]["accuracy"]
            cells.append(f"{mean:6.1f}±{half:4.1f}" + (
                f" {entry[method]['strict_wins']}|{entry[method]['wins_counting_same_plan']}"
                if "strict_wins" in entry[method] else ""))
        print(f"{key:<16} {entry['cases']:>2} {entry['distinct_random_plans']:>4.1f} " + " ".join(f"{c:>17}" for c in cells))
    total = summary["all"]
    print("\nin total (cases: strict wins | wins counting identical plans | beats uniform 1-bit | within budget; s/plan)")
    for method in methods:
        entry = total[method]
        if "strict_wins" in entry:
            seconds = f"{entry['seconds']:.1f} s" if entry["seconds"] is not None else ""
            print(f"  {method:<20} {entry['strict_wins']:>3}/{total['cases']} {entry['wins_counting_same_plan']:>3}/"
                  f"{total['cases']} {entry['beats_uniform']:>3}/{total['cases']} {entry['within_budget']:>3}/"
                  f"{total['cases']}  {seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds per model")
    parser.add_argument("--budgets", default="1.25,1.5")
    parser.add_argument("--variants", default="recommended,kl knapsack", help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--random-plans", type=int, default=9)
    parser.add_argument("--batches", type=int, default=8, help="calibration batches of 128 (digits has 12)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bitplan-recommended"))
    parser.add_argument("--out", type=Path, default=Path("recommended_plan.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    started = time.perf_counter()
    rows = []
    for name in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += run_case(name, train(name, seed, args.work), budgets, args.random_plans, args.batches, variants)
    summary = summarize(rows)
    print_summary(summary, ["fp32", "random (median)", "random (best)", *BASELINES, *variants])
    seconds = time.perf_counter() - started
    print(f"\n{seconds:.0f} s in all")
    args.out.write_text(json.dumps({"rows": rows, "summary": summary, "seconds": seconds, "args": {
        k: str(v) for k, v in vars(args).items()}}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
