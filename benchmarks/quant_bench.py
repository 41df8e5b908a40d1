"""Quantizer throughput against memory-bound baselines, side by side in one process.

On a float32 tensor of ``--size-mib`` MiB (default 64; issue 4's floor: ≥ 0.8× the speed of
``torch.clone``, which also allocates its output) and a mid-size one (``--mid-mib``, default 8 ≈ a
ResNet-20 activation at batch 128), every variant is timed once per round, rounds interleaved in
rotating order (this machine drifts), and the median per variant is reported with its speed
relative to ``clone`` and to ``copy_`` into a preallocated buffer. Variants:

- baselines: ``clone``, ``copy_``, ``torch.fake_quantize_per_tensor_affine`` (scale/zero point
  precomputed, i.e. favoured), a ``torch.compile``'d fused min/max+quantize expression, and
  ``torch.rand_like`` (what CPU noise costs);
- bitplan: per-tensor nearest and stochastic, per-channel nearest and stochastic, LUQ (and SMP
  with 2 samples), SAWB 4-bit, and the eager fallback of nearest and stochastic.

Before timing, every compiled variant's output is checked bit for bit against its eager kernel,
and each first call (compile, warm or cold inductor cache) is timed. ``--cold`` also measures a
fresh process with an empty inductor cache (import + compile of the first kernel).

On CUDA (``--device cuda``) the same variants run on the GPU, each call synchronized.

    python benchmarks/quant_bench.py [--size-mib 64] [--mid-mib 8] [--rounds 15] [--threads 2]
                                     [--device cpu|cuda] [--cold] [--out benchmarks/results/quant_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bitplan import quant
from bitplan.atomic import atomic_write_text

BITS = 8
CHANNELS = 256


def fused_reference(x: torch.Tensor) -> torch.Tensor:
    """The straightforward per-tensor 8-bit GEMMLOWP expression (compiled as a baseline)."""
    low, high = torch.aminmax(x)
    scale = ((high - low) / (2**BITS - 1)).clamp_min(1e-8)
    return torch.clamp(torch.round((x - low) / scale), 0, 2**BITS - 1) * scale + low


def variants(x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """Name -> zero-argument call, for one input tensor."""
    buffer = torch.empty_like(x)
    rows = x.view(CHANNELS, -1)  # per-channel: 256 output channels
    low, high = torch.aminmax(x)
    fq_scale = float((high - low) / (2**BITS - 1))
    fq_zero = int(round(-float(low) / fq_scale))
    compiled_reference = torch.compile(fused_reference, dynamic=True)
    generator = torch.Generator(device=x.device).manual_seed(0)

    def eager(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with quant.kernel_policy(compile=False):
                return call()

        return run

    nearest = lambda: quant.uniform_quantize(x, BITS)  # noqa: E731
    stochastic = lambda: quant.uniform_quantize(x, BITS, stochastic=True, generator=generator)  # noqa: E731
    return {
        "clone": lambda: x.clone(),
        "copy_": lambda: buffer.copy_(x),
        "torch_fake_quantize": lambda: torch.fake_quantize_per_tensor_affine(x, fq_scale, fq_zero, 0, 2**BITS - 1),
        "compiled_expression": lambda: compiled_reference(x),
        "rand_like": lambda: torch.rand_like(x),
        "nearest": nearest,
        "stochastic": stochastic,
        "channel_nearest": lambda: quant.uniform_quantize(rows, BITS, channel_dim=0),
        "channel_stochastic": lambda: quant.uniform_quantize(rows, BITS, channel_dim=0, stochastic=True, generator=generator),
        "luq": lambda: quant.luq_quantize(x, generator=generator),
        "luq_smp2": lambda: quant.luq_quantize(x, generator=generator, samples=2),
        "sawb4": lambda: quant.sawb_quantize(x, 4),
        "eager_nearest": eager(nearest),
        "eager_stochastic": eager(stochastic),
    }


COMPILED = ("compiled_expression", "nearest", "stochastic", "channel_nearest", "channel_stochastic", "luq", "luq_smp2", "sawb4")


def first_calls(calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds of each variant's first call (compiles the bitplan kernels and the reference)."""
    seconds = {}
    for name, call in calls.items():
        started = time.perf_counter()
        call()
        seconds[name] = time.perf_counter() - started
    return seconds


def identical_to_eager(x: torch.Tensor) -> dict[str, bool]:
    """Whether each compiled bitplan kernel matches its eager recipe bit for bit (same seeds)."""
    rows = x.view(CHANNELS, -1)

    def seeded() -> torch.Generator:
        return torch.Generator(device=x.device).manual_seed(1)

    checks = {
        "nearest": lambda: quant.uniform_quantize(x, BITS),
        "stochastic": lambda: quant.uniform_quantize(x, BITS, stochastic=True, generator=seeded()),
        "channel_nearest": lambda: quant.uniform_quantize(rows, BITS, channel_dim=0),
        "channel_stochastic": lambda: quant.uniform_quantize(
            rows, BITS, channel_dim=0, stochastic=True, generator=seeded()
        ),
        "luq_smp2": lambda: quant.luq_quantize(x, generator=seeded(), samples=2),
        "sawb4": lambda: quant.sawb_quantize(x, 4),
    }
    result = {}
    for name, call in checks.items():
        compiled = call()
        with quant.kernel_policy(compile=False):
            result[name] = bool(torch.equal(compiled, call()))
    return result


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call, each round running every variant once in a rotated order."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            started = time.perf_counter()
            calls[name]()
            sync()
            times[name].append(time.perf_counter() - started)
    return times


def summarize(times: dict[str, list[float]], nbytes: int) -> dict[str, dict[str, float]]:
    """Median/best ms, GB/s (read + write), and speed relative to clone and copy_ (higher = faster).

    Ratios of medians are the headline; ratios of best times are less sensitive to other jobs.
    """
    medians = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    return {
        name: {
            "median_ms": medians[name] * 1e3,
            "best_ms": min(values) * 1e3,
            "gb_per_s": 2 * nbytes / medians[name] / 1e9,
            "vs_clone": medians["clone"] / medians[name],
            "vs_copy": medians["copy_"] / medians[name],
            "vs_clone_best": best["clone"] / best[name],
        }
        for name, values in times.items()
    }


def measure(size_mib: float, rounds: int, device: torch.device) -> dict[str, object]:
    """All variants on one tensor size."""
    x = torch.randn(int(size_mib * 2**20) // 4, device=device)
    calls = variants(x)
    warm = first_calls(calls)
    first_calls(calls)  # second warm-up: allocator and caches settled
    report = summarize(interleaved(calls, rounds, device), x.numel() * 4)
    print(f"\n{size_mib:g} MiB float32 ({x.numel():,} elements), {rounds} interleaved rounds, median:")
    print(f"  {'variant':22s} {'ms':>8s} {'GB/s':>7s} {'vs clone':>9s} {'vs copy_':>9s} {'best/best':>9s} {'1st call s':>10s}")
    for name, row in report.items():
        print(
            f"  {name:22s} {row['median_ms']:8.2f} {row['gb_per_s']:7.1f} {row['vs_clone']:8.2f}× "
            f"{row['vs_copy']:8.2f}× {row['vs_clone_best']:8.2f}× {warm[name]:10.2f}"
        )
    return {"size_mib": size_mib, "numel": x.numel(), "results": report, "first_call_s": warm}


def cold_compile_seconds() -> dict[str, float]:
    """A fresh process with an empty inductor cache: import, then first nearest and stochastic calls."""
    script = (
        "import time, torch; t = time.perf_counter(); from bitplan import quant; "
        "x = torch.randn(1 << 20); a = time.perf_counter(); quant.uniform_quantize(x, 8); "
        "b = time.perf_counter(); quant.uniform_quantize(x, 8, stochastic=True); c = time.perf_counter(); "
        "print(a - t, b - a, c - b)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    imported, nearest, stochastic = (float(value) for value in output.stdout.split()[-3:])
    return {"import": imported, "nearest_first_call": nearest, "stochastic_first_call": stochastic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=64.0)
    parser.add_argument("--mid-mib", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--cold", action="store_true", help="also time a cold compile in a fresh process")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quant_bench.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()

    policy = quant.get_kernel_policy()
    print(f"torch {torch.__version__}, {args.threads} threads on {device}, kernel policy {policy}")
    checks = identical_to_eager(torch.randn(CHANNELS * 4096, device=device))
    print("compiled == eager, bit for bit:", checks)
    sizes = [measure(size, args.rounds, device) for size in (args.size_mib, args.mid_mib) if size > 0]
    load_after = os.getloadavg()
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    report = {
        "torch": torch.__version__,
        "threads": args.threads,
        "device": str(device),
        "load_average": [load_before, load_after],
        "machine": platform.processor() or platform.machine(),
        "policy": {"compile": policy.compile, "min_numel": policy.min_numel},
        "compiled_equals_eager": checks,
        "sizes": sizes,
    }
    if args.cold:
        report["cold_compile_s"] = cold_compile_seconds()
        print("cold compile (fresh process, empty inductor cache), seconds:", report["cold_compile_s"])
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
