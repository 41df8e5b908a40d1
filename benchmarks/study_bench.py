"""Why the study batches trials: one batched matmul over T trials against a Python loop of T products.

Both variants quantize the same operands with ``bitplan.quant.uniform_quantize`` (per tensor per trial)
and compute the same distances; the benchmark checks they agree, then prints the time ratio.

    python benchmarks/study_bench.py [--trials 50] [--size 64] [--out benchmarks/results/study.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bitplan.atomic import atomic_write_text
from bitplan.quant import kernel_policy, uniform_quantize
from bitplan.study import StudyConfig, StudyFactor, sample_operands
from bitplan.study.experiments import product_points
from bitplan.study.runner import cpu_threads


def looped_distances(x: torch.Tensor, w: torch.Tensor, bits: int) -> torch.Tensor:
    """Mean |X·Q(W) − X·W| per trial, one trial at a time. x: [T, m, k], w: [T, k, n] -> [T]."""
    distances = []
    for x_t, w_t in zip(x, w):
        truth = x_t @ w_t  # [m, n]
        approx = x_t @ uniform_quantize(w_t, bits)  # per-tensor range of this trial's W
        distances.append((approx - truth).abs().mean())
    return torch.stack(distances)


def timed(function, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def compare(k: int, trials: int, size: int, device: torch.device) -> dict[str, float]:
    """Time the batched and the looped 4-bit accumulation point at ``k``; check they agree."""
    config = StudyConfig(factors=["accumulation"], accumulation=[k], bits=[4], trials=trials, size=size)
    operands = sample_operands(config, StudyFactor.accumulation, k)
    batched = product_points(config, StudyFactor.accumulation, k, operands, device)[0]
    looped = looped_distances(operands.x, operands.weights[0], 4)
    assert abs(batched.distance - float(looped.mean())) <= 1e-12 * max(batched.distance, 1.0)
    batched_s = timed(lambda: product_points(config, StudyFactor.accumulation, k, operands, device))
    looped_s = timed(lambda: looped_distances(operands.x, operands.weights[0], 4))
    speedup = looped_s / batched_s
    print(f"K={k:5d}  batched {batched_s * 1e3:8.1f} ms   looped {looped_s * 1e3:8.1f} ms   ×{speedup:.1f}")
    return {"k": k, "batched_s": batched_s, "looped_s": looped_s, "speedup": speedup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/study.json"))
    args = parser.parse_args()

    device = torch.device("cpu")
    rows = []
    with kernel_policy(compile=False), cpu_threads(1):  # as run_study does by default
        for k in (9, 144, 2304):
            rows.append(compare(k, args.trials, args.size, device))

    report = {"trials": args.trials, "size": args.size, "threads": torch.get_num_threads(), "rows": rows}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
