"""Is the recommended plan better? Against 9 random plans and uniform at the same mean bits, on trained models.

For each model (zoo digits_cnn, and ``planning_models.py:digits_mlp``, a model outside the zoo) and
each training seed: train on digits (fp32, cached in ``--work``), then at each budget (weight-only,
levels 1,2,3,4,8) make the plans of every candidate method from one calibration, apply each to the
trained weights (post-training quantization, ``bitplan.apply``) and measure test accuracy and loss.

Candidates: the recommended pipeline's variants (KL or loss-delta per level; with or without the
swap refinement), the one-width Fisher knapsack, first-last, and the baselines: uniform (the widest
level within the budget: 1 bit here) and R at the budget with seeds 0..N−1.

Prints, per model × seed × budget, each method's accuracy with a 95% Wilson interval, its mean bits,
and how many of the random plans it beats; writes everything to ``--out`` (JSON).

    python benchmarks/recommended_plan.py --seeds 0,1,2 --out /tmp/recommended_plan.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = ("zoo:digits_cnn", f"{HERE / 'planning_models.py'}:digits_mlp")
TRAINING = {"zoo:digits_cnn": ["--epochs", "15"], "mlp": ["--epochs", "30", "--optimizer", "adamw", "--lr", "0.003"]}
VARIANTS = {  # name -> recommend_plan(measure=..., refine=..., restarts=...)
    "kl": ("kl", None, 0),
    "loss-delta": ("loss-delta", None, 0),
    "kl+search(loss)": ("kl", "loss", 0),
    "kl+search(loss)+8": ("kl", "loss", 8),
    "recommended": ("kl", "metric", 8),  # the default: the search lowers the calibration error rate
}


def wilson(correct: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion, in percent."""
    p = correct / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return 100 * (centre - half), 100 * (centre + half)


def train(model: str, seed: int, work: Path) -> Path:
    """Train ``model`` on digits at ``seed`` (fp32) unless already done; returns its seed folder."""
    name = "digits_cnn" if model.startswith("zoo:") else "mlp"
    out = work / f"{name}-{seed}"
    if not any(out.glob("**/checkpoint.pt")):
        args = TRAINING["zoo:digits_cnn" if model.startswith("zoo:") else "mlp"]
        command = [sys.executable, "-m", "bitplan", "train", model, "--data", "digits", "--seeds", str(seed),
                   "--threads", "1", "--no-progress", "--device", "cpu", "-o", str(out), *args]
        subprocess.run(command, check=True, capture_output=True)
    return out


class TestSet:
    """The trained model once; each plan applied to a copy and evaluated on the whole test split."""

    def __init__(self, model: str, checkpoint: Path) -> None:
        from bitplan.data import make_loader
        from bitplan.train.weights import load_weights
        from bitplan.train.config import TrainConfig
        from bitplan.train.setup import build_run

        setup = build_run(TrainConfig(model=model, data="digits", device="cpu"), device=torch.device("cpu"), sr_seed=0)
        load_weights(setup.model, checkpoint, model)
        self.setup = setup
        self.loader = make_loader(setup.data.test, batch_size=512, shuffle=False, seed=0)
        self.count = len(setup.data.test)

    def evaluate(self, plan) -> dict:
        from bitplan.qat import apply
        from bitplan.train.loop import evaluate

        net = copy.deepcopy(self.setup.model)
        if plan is not None:
            apply(net, plan, self.setup.example_inputs)
        loss, accuracy = evaluate(net, self.loader, self.setup.data.task, self.setup.metric_name, torch.device("cpu"))
        low, high = wilson(accuracy / 100 * self.count, self.count)
        return {"accuracy": accuracy, "ci": [low, high], "loss": loss}


def run_case(model: str, checkpoint: Path, budgets: list[float], random_plans: int, batches: int) -> list[dict]:
    from bitplan.sensitivity_analysis.at_budget import methods_at_budget
    from bitplan.sensitivity_analysis.per_level import measure_levels
    from bitplan.sensitivity_analysis.recommend import recommend_plan

    levels = (1, 2, 3, 4, 8)
    started = time.perf_counter()
    planner = methods_at_budget(
        model, "digits", levels=levels, checkpoint=checkpoint, batches=batches, weight_only=True, device="cpu"
    )
    table = measure_levels(planner.calibration, list(levels))
    measured_s = time.perf_counter() - started
    tests = TestSet(model, checkpoint)
    fp32 = tests.evaluate(None)
    rows = []
    for budget_value in budgets:
        budget = {"kind": "avg_bits", "value": budget_value}
        plans = {}
        for name, (measure, refine, restarts) in VARIANTS.items():
            began = time.perf_counter()
            plans[name] = recommend_plan(
                model, "digits", budget=budget, levels=levels, calibration=planner.calibration, table=table,
                measure=measure, refine=refine, restarts=restarts, weight_only=True,
            )
            plans[name + "@s"] = time.perf_counter() - began
        for method in ("fisher", "first-last", "uniform"):
            plans[method] = planner.plan(method, budget)
        randoms = [planner.plan("random", budget, seed=seed) for seed in range(random_plans)]
        random_results = [tests.evaluate(plan) | {"avg_bits": plan.budget_reached} for plan in randoms]
        results = {}
        for name, plan in plans.items():
            if name.endswith("@s"):
                continue
            result = tests.evaluate(plan) | {"avg_bits": plan.budget_reached, "bits": list(plan.bits_by_name().values())}
            result["beats_random"] = sum(result["accuracy"] > r["accuracy"] for r in random_results)
            result["ties_random"] = sum(result["accuracy"] == r["accuracy"] for r in random_results)
            result["same_plan_as_random"] = sum(plan.bits_by_name() == other.bits_by_name() for other in randoms)
            result["beats_random_loss"] = sum(result["loss"] < r["loss"] for r in random_results)
            result["seconds"] = plans.get(name + "@s")
            results[name] = result
        rows.append({
            "model": model, "checkpoint": str(checkpoint), "budget": budget_value, "fp32": fp32,
            "measure_seconds": measured_s, "methods": results, "random": random_results,
        })
    return rows


def aggregate(rows: list[dict]) -> dict:
    """(model, budget) -> method -> (mean accuracy, mean loss) over checkpoints, with the median random plan."""
    import statistics

    table: dict = {}
    for row in rows:
        name = "digits_cnn" if row["model"].startswith("zoo:") else "digits_mlp"
        methods = table.setdefault((name, row["budget"]), {})
        median = statistics.median(r["accuracy"] for r in row["random"])
        median_loss = statistics.median(r["loss"] for r in row["random"])
        for method, result in [("fp32", row["fp32"]), ("random (median)", {"accuracy": median, "loss": median_loss}),
                               *row["methods"].items()]:
            methods.setdefault(method, []).append((result["accuracy"], result["loss"]))
    return {
        key: {method: (statistics.fmean(a for a, _ in v), statistics.fmean(l for _, l in v)) for method, v in methods.items()}
        for key, methods in table.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="training seeds per model")
    parser.add_argument("--budgets", default="1.25,1.5")
    parser.add_argument("--random-plans", type=int, default=9)
    parser.add_argument("--batches", type=int, default=8, help="calibration batches of 128 (digits has 12)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bitplan-recommended"))
    parser.add_argument("--out", type=Path, default=Path("recommended_plan.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    rows = []
    for model in MODELS:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += run_case(model, train(model, seed, args.work), budgets, args.random_plans, args.batches)
    print("accuracy on the digits test split (360 images) with 95% Wilson intervals; beats R = random plans with lower"
          " accuracy, ties = equal accuracy, same = identical plans\n")
    print(f"{'model':<12} {'ckpt':>4} {'budget':>6} {'method':<18} {'bits':>5} {'acc %':>6} {'95% CI':>13} {'loss':>7} "
          f"{'beats R':>7} {'ties':>4} {'same':>4} {'R median':>8} {'R best':>6}")
    for row in rows:
        accs = sorted(r["accuracy"] for r in row["random"])
        name = "digits_cnn" if row["model"].startswith("zoo:") else "digits_mlp"
        for method, result in row["methods"].items():
            print(f"{name:<12} {Path(row['checkpoint']).name[-1]:>4} {row['budget']:>6} {method:<18} "
                  f"{result['avg_bits']:>5.3f} {result['accuracy']:>6.2f} "
                  f"[{result['ci'][0]:5.1f},{result['ci'][1]:5.1f}] {result['loss']:>7.3f} "
                  f"{result['beats_random']:>4}/{len(accs)} {result['ties_random']:>4} {result['same_plan_as_random']:>4} "
                  f"{accs[len(accs) // 2]:>8.2f} {accs[-1]:>6.2f}")
    summary = {}
    for method in rows[0]["methods"]:
        wins = [row["methods"][method]["beats_random"] >= len(row["random"]) - 1 for row in rows]
        not_worse = [
            row["methods"][method]["beats_random"] + row["methods"][method]["ties_random"] >= len(row["random"]) - 1
            for row in rows
        ]
        beats_differing = [  # a random plan identical to this one cannot be beaten: it does not count against it
            row["methods"][method]["beats_random"] + row["methods"][method]["same_plan_as_random"] >= len(row["random"]) - 1
            for row in rows
        ]
        over_uniform = [row["methods"][method]["accuracy"] > row["methods"]["uniform"]["accuracy"] for row in rows]
        summary[method] = {
            "cases": len(rows), "beats_8_of_9": sum(wins), "beats_8_of_9_counting_same_plan": sum(beats_differing),
            "at_least_ties_8_of_9": sum(not_worse),
            "beats_uniform": sum(over_uniform),
        }
    print("\ncases where ≥ 8 of 9 random plans are: beaten | beaten or the same plan | beaten or tied;"
          " and where uniform 1-bit is beaten")
    for method, counts in summary.items():
        n = counts["cases"]
        print(f"{method:<18} {counts['beats_8_of_9']:>2}/{n}   {counts['beats_8_of_9_counting_same_plan']:>2}/{n}   "
              f"{counts['at_least_ties_8_of_9']:>2}/{n}   {counts['beats_uniform']:>2}/{n}")
    averages = aggregate(rows)
    print("\nmean test accuracy (%) and loss over the checkpoints; random: the median plan of each checkpoint")
    for (name, budget), methods in averages.items():
        line = ", ".join(f"{method} {acc:.1f} ({loss:.2f})" for method, (acc, loss) in methods.items())
        print(f"{name} at {budget} bits: {line}")
    args.out.write_text(json.dumps({"rows": rows, "summary": summary, "averages": {
        f"{name}@{budget}": methods for (name, budget), methods in averages.items()
    }}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
