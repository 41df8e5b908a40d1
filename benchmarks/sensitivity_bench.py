"""Cost of each sensitivity method on resnet20 (CIFAR shape), 8 batches of 128, 2 threads.

The floor (issue 6): fisher and sqnr under 30 s each. loss-delta and hessian are reported beside
them, with their ratio to fisher, measured in this one run.

    python benchmarks/sensitivity_bench.py [--batches 8] [--batch-size 128] [--out benchmarks/results/sensitivity.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bitplan.sensitivity_analysis import measure_sensitivity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo:resnet20")
    parser.add_argument("--data", default="synthetic?n=1024&classes=10")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--probes", type=int, default=1)
    parser.add_argument("--methods", default="fisher,sqnr,loss-delta,hessian")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sensitivity.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    # warm-up: data loading, imports and first-call allocations are not the method's cost
    measure_sensitivity(args.model, args.data, method="sqnr", batches=1, batch_size=8)
    seconds = {}
    for method in args.methods.split(","):
        started = time.perf_counter()
        report = measure_sensitivity(
            args.model, args.data, method=method, batches=args.batches, batch_size=args.batch_size, probes=args.probes
        )
        seconds[method] = time.perf_counter() - started
        top = max(report.layers, key=lambda layer: layer.sensitivity)
        print(f"{method:10s} {seconds[method]:7.2f} s  ({len(report.layers)} layers; most sensitive: {top.name})")
    base = seconds.get("fisher")
    if base:
        print("ratio to fisher: " + ", ".join(f"{m} {s / base:.2f}x" for m, s in seconds.items()))
    result = {
        "model": args.model, "data": args.data, "batches": args.batches, "batch_size": args.batch_size,
        "probes": args.probes, "seconds": seconds, "floor_seconds": {"fisher": 30, "sqnr": 30},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
