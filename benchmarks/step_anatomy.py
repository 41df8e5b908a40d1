"""Where a quantized training step's extra time goes, and how low it could go with these passes.

A resnet20 step (batch 128, SGD with momentum, ``bitplan.apply`` in a plain loop) with the C− A 4–8
plan is timed interleaved with fp32 in one process, in parts and with the quantizers' rounding
replaced by cheaper stand-ins:

- parts: ``weights`` (the plan's weights only), ``w+a8`` (plus 8-bit activations kept as codes),
  ``w+g8sr`` (plus 8-bit stochastically rounded output gradients), ``w+a8+g8sr`` (both);
- ``--stand-ins``: the same ``w+a8+g8sr`` step with every elementwise quantizer kernel (rounding,
  codes, decoding) replaced by ``clone``-like copies of the same sizes (``copies``: the memory
  traffic of the passes, no arithmetic), or by returning its input (``no-copies``: ranges, weight
  quantization, Python and autograd only). The ranges, observers and weight quantizers still run.

The stand-ins give wrong values, so their steps train nothing; they bound what the step could cost
with the same passes over memory. ``keep_freed_memory()`` is called first (``--default-malloc``
skips it), as a library user is told to.

    python benchmarks/step_anatomy.py [--steps 14] [--stand-ins] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

import train_bench
from bitplan.quant import kernels
from bitplan.train import keep_freed_memory

PARTS = {
    "weights": {"activation_bits": None, "gradient_bits": None, "gradient_quant": "none"},
    "w+a8": {"activation_bits": 8, "gradient_bits": None, "gradient_quant": "none"},
    "w+g8sr": {"activation_bits": None, "gradient_bits": 8, "gradient_quant": "sr"},
    "w+a8+g8sr": {"activation_bits": 8, "gradient_bits": 8, "gradient_quant": "sr"},
}


KEPT = (kernels.affine_nearest_kept, kernels.integer_nearest_kept, kernels.symmetric_nearest_kept)
"""Recipes returning (X̂, codes)."""
DECODES = (kernels.affine_decode, kernels.integer_decode)
"""Recipes returning X̂ from codes; their last argument is X̂'s dtype."""


def copies(recipe: Callable, x: torch.Tensor, *args: object) -> object:
    """A stand-in result of ``recipe`` with the sizes it writes (uint8 codes where it makes codes)."""
    if recipe in KEPT:
        return x.clone(), torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    if recipe in DECODES:
        return torch.empty(x.shape, dtype=args[-1], device=x.device).copy_(x)
    return x.clone()


def no_copies(recipe: Callable, x: torch.Tensor, *args: object) -> object:
    """A stand-in result of ``recipe`` that moves no data (an uninitialised decode, the input itself)."""
    if recipe in KEPT:
        return x, torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    if recipe in DECODES:
        return torch.empty(x.shape, dtype=args[-1], device=x.device)
    return x


STAND_INS = {"copies": copies, "no-copies": no_copies}


@contextmanager
def standing_in(name: str | None) -> Iterator[None]:
    """Within this context the elementwise kernels (not the ranges) run as the stand-in ``name``."""
    if name is None:
        yield
        return
    real, stand_in = kernels.run, STAND_INS[name]

    def run(recipe: Callable, x: torch.Tensor, *args: object) -> object:
        return real(recipe, x, *args) if recipe is kernels.channel_range else stand_in(recipe, x, *args)

    kernels.run = run
    try:
        yield
    finally:
        kernels.run = real


def label(variant: str, stand_in: str | None) -> str:
    return variant if stand_in is None else f"{variant} ({stand_in})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=14, help="interleaved rounds measured")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stand-ins", action="store_true", help="also time the w+a8+g8sr step with stand-in kernels")
    parser.add_argument("--default-malloc", action="store_true", help="do not call keep_freed_memory()")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "step_anatomy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        keep_freed_memory()
    train_bench.SETTINGS.update(PARTS)
    workload, device = train_bench.WORKLOADS["resnet20"], torch.device("cpu")
    variants = train_bench.build_variants(workload, False, device, ("fp32", *PARTS))
    cases = [(name, None) for name in variants]
    if args.stand_ins:
        cases += [("w+a8+g8sr", stand_in) for stand_in in STAND_INS]
    x, y = train_bench.batch_of(workload, device)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {}
    for round_index in range(args.warmup + args.steps):
        shift = round_index % len(cases)
        for name, stand_in in cases[shift:] + cases[:shift]:
            runner, optimizer, _ = variants[name]
            with standing_in(stand_in):
                seconds = train_bench.step(runner, optimizer, x, y)
            if round_index >= args.warmup:
                times.setdefault(label(name, stand_in), []).append(seconds)
    load_after = os.getloadavg()
    fp32 = statistics.median(times["fp32"])
    print(f"resnet20, batch 128, {args.threads} threads, median of {args.steps} interleaved steps, "
          f"{'glibc malloc as it comes' if args.default_malloc else 'keep_freed_memory()'}")
    print(f"{'case':<28} {'ms/step':>8} {'× fp32':>7} {'+ms':>7}")
    rows = {}
    for case in (label(name, stand_in) for name, stand_in in cases):
        median = statistics.median(times[case])
        rows[case] = {"median_ms": median * 1e3, "ratio": median / fp32, "extra_ms": (median - fp32) * 1e3}
        print(f"{case:<28} {median * 1e3:8.1f} {median / fp32:7.3f} {(median - fp32) * 1e3:7.1f}")
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"threads": args.threads, "steps": args.steps, "keep_freed_memory": not args.default_malloc,
              "load_average": [load_before, load_after], "torch": torch.__version__, "rows": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
