"""Training step time with fake quantization, relative to fp32, beside the memory-bandwidth limit.

Models (``--models``, default all three): ``resnet20`` (CIFAR, batch 128), ``mobilenet_v2``
(depthwise convs, 32×32 input, batch 64) and ``transformer_lm`` (4 blocks, d_model 256, 128 tokens,
batch 8). SGD with momentum, ``--threads`` threads (default 2), ``--device`` (cpu or cuda).
Variants, each its own copy of one initial model, all in this process:

- ``fp32``: the plain model;
- ``weights``: the C− A 4–8 plan's weights quantized (activations and gradients fp32);
- ``w+a8+g8sr``: plus 8-bit activations and 8-bit stochastically rounded output gradients;
- ``w+a8+luq``: plus 8-bit activations and LUQ (radix-2 FP4) output gradients.

Steps are interleaved (one step of every variant per round, in rotating order), which cancels the
slow drift of a shared machine; the median per variant is reported with its ratio to fp32.

Each variant is used as a library user would: ``bitplan.apply`` and a plain loop, glibc's malloc as
it comes (``--keep-freed-memory`` calls ``bitplan.train.keep_freed_memory()`` first, as
``bitplan train`` does). Next to the step time: the bytes one training forward keeps for backward
(``bitplan.qat.memory.kept_for_backward``: every storage once, parameters excluded; the model's
forward, and with the loss) and, in a fresh process that builds the variant alone, the peak resident
memory over its first three steps (kernel compiles included) and how much the resident memory grows
over the ten steps after them (``--no-rss`` skips those processes).

The limit. Fake quantization adds passes over memory that fp32 training does not make; a step
cannot be faster than fp32 plus the time to move those bytes. Per step and quantized tensor T
(a planned weight, a layer input, a layer-output gradient), the minimum is one read for the range
(min/max or max|T|) and one read plus one write for the quantized copy: 3·|T| bytes. The limit
ratio is (fp32 step + Σ 3·|T| / B) / fp32 step, with B the ``copy_`` bandwidth (read + write bytes
per second) measured in this run on a tensor of the model's mean activation size. Targets (issue
13, resnet20): w+a8+g8sr ≤ 1.25× (aim 1.15×), LUQ ≤ 1.3×.

Where the time goes (resnet20, eager, 2 threads; torch.profiler and per-call timers around the
quantizers inside real steps, before this file's last changes; load average 1–2.5). fp32 step
≈ 270 ms. The W+A8+SR-G8 step added ≈ 85 ms:

- gradient quantizers, 20 calls: 28–30 ms (LUQ: 53 ms). Per 1 M-element call: the compiled
  stochastic-rounding kernel 630 µs (LUQ 800 µs), the range pass (``aminmax``) 137 µs, eager
  scalar ops ≈ 50 µs, the dynamo guard and call ≈ 50 µs; ``clone`` of the same tensor ≈ 225 µs.
  Inside the kernel (1 M elements, compiled, interleaved): round-to-nearest 224 µs, rounding with a
  constant noise 252 µs, with noise from the element index alone 435 µs, with the full hash 600 µs:
  building the vector of element indices cost more than the hash. Now the index comes as 16·row
  plus a 16-element seed vector (``kernels.lane_seeds``) and LUQ's level search is a 3-step binary
  search: SR kernel 626 → 421 µs, LUQ 750 → 585 µs (same noise and levels, bit for bit; one
  interleaved run, load 2.9, ``clone`` 208 µs).
- forward quantizers, 20 weights + 20 activations: 18–19 ms (per activation: observer
  ``aminmax`` + one fused nearest-rounding pass; weights are small).
- page faults: a quantized step faults 16–36 K pages (64–150 MB) where fp32 faults none. The
  quantized activations saved for backward (+92 MB at batch 128) make glibc trim and regrow the
  heap every step. With the thresholds raised (``MALLOC_TRIM_THRESHOLD_`` /
  ``MALLOC_MMAP_THRESHOLD_``) the faults vanish and the ratios drop (same session, interleaved): SR
  1.244 → 1.217, LUQ 1.370 → 1.279. ``bitplan train`` raises them itself
  (``bitplan.train.keep_freed_memory``). It still matters with codes kept for backward: a
  quantized step allocates and frees more than an fp32 one (the quantized copies the GEMMs read,
  the decoded operands in backward), and glibc returns the freed top of its heap each time; 40 K
  faults per step without it, none with it (issue 20; the allocator looked irrelevant for a while
  only because a reference cycle, since fixed, kept every step's quantized tensors alive).
  Python-level overhead per quantizer call (checks, scalar range math, autograd node) is ≈ 0.1 ms,
  ≈ 6 ms per step: small against the passes. ``benchmarks/step_anatomy.py`` splits the step into its
  parts and bounds it with stand-in kernels.

Compiled (``--compile``): inside an outer ``torch.compile`` the quantizers used to flatten each
activation in logical order while inductor stores convolution activations channels-last, so every
quantizer became a gather plus a transposing copy (compiled SR step 3.1× compiled fp32); they now
keep the tensor's shape (1.17×, same loaded run). What remains is the extra passes inductor cannot
fuse away (the range reduction must finish before rounding) and the noise hash.

Run: ``python benchmarks/train_bench.py [--steps 20] [--models resnet20,...] [--variants w+a8+g8sr,...]
[--compile] [--device cuda]``. ``--compile`` also times every variant ``torch.compile``d (SR then
draws its seeds from the global generator), interleaved with eager fp32 as the reference of the
``× eager fp32`` column (target: compiled w+a8+g8sr ≤ 1.0× eager fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bitplan.qat import apply, quant_runtime
from bitplan.qat.memory import kept_for_backward
from bitplan.plan import make_plan
from bitplan.spec import load_model, profile_spec
from bitplan.train import keep_freed_memory


@dataclass(frozen=True)
class Workload:
    """A model spec, its batch, and how its loss is computed from (output, target)."""

    spec: str
    batch: int
    language_model: bool = False


WORKLOADS = {
    "resnet20": Workload("zoo:resnet20", 128),
    "mobilenet_v2": Workload("zoo:mobilenet_v2?input_size=32&num_classes=10", 64),
    "transformer_lm": Workload(
        "zoo:transformer_lm?d_model=256&n_layers=4&n_heads=4&d_ff=1024&vocab=2000&seq_len=128", 8, True
    ),
}
TARGETS = {"resnet20": {"weights": 1.05, "w+a8+g8sr": 1.25, "w+a8+luq": 1.3}}  # × fp32 of the same mode
COMPILED_TARGETS = {"w+a8+g8sr": 1.0}
EAGER_REFERENCE = "fp32 (eager)"  # timed among the compiled variants: the reference of their "× eager fp32"  # × eager fp32: compiled SR training no slower than plain eager training
SETTINGS = {
    "fp32": None,
    "weights": {"activation_bits": None, "gradient_bits": None, "gradient_quant": "none"},
    "w+a8+g8sr": {"activation_bits": 8, "gradient_bits": 8, "gradient_quant": "sr"},
    "w+a8+luq": {"activation_bits": 8, "gradient_bits": None, "gradient_quant": "luq"},
}


def build_variants(
    workload: Workload, compiled: bool, device: torch.device, names: tuple[str, ...] = tuple(SETTINGS)
) -> dict[str, tuple]:
    """One (runner, optimizer, model) per variant in ``names``, all from the same initial weights."""
    plan = make_plan(profile_spec(workload.spec), factor="A", strategy="C-", bits=(4, 8))
    torch.manual_seed(0)
    initial = load_model(workload.spec).model.state_dict()
    variants = {}
    for name in names:
        settings = SETTINGS[name]
        loaded = load_model(workload.spec, batch=workload.batch)
        model = loaded.model
        model.load_state_dict(initial)
        model.to(device)
        if settings is not None:
            inputs = tuple(t.to(device) for t in loaded.example_inputs)
            apply(model, plan.model_copy(update=settings), inputs, seed=0)
            if compiled:
                quant_runtime(model).global_rng = True  # compile cannot trace a torch.Generator
        runner = torch.compile(model) if compiled else model
        variants[name] = (runner, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), model)
    return variants


def batch_of(workload: Workload, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random input batch and targets of the workload's shape."""
    example = load_model(workload.spec, batch=workload.batch, device="meta").example_inputs[0]
    generator = torch.Generator().manual_seed(0)
    if workload.language_model:
        vocab = int(workload.spec.split("vocab=")[1].split("&")[0])
        x = torch.randint(0, vocab, tuple(example.shape), generator=generator)
        return x.to(device), torch.randint(0, vocab, tuple(example.shape), generator=generator).to(device)
    x = torch.randn(tuple(example.shape), generator=generator)
    return x.to(device), torch.randint(0, 10, (workload.batch,), generator=generator).to(device)


def loss_of(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross entropy; token logits [B, T, V] are flattened against targets [B, T]."""
    return F.cross_entropy(output.flatten(0, -2), y.flatten())


def step(runner: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One timed training step (forward, backward, SGD), in seconds."""
    synchronize(x.device)
    began = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss_of(runner(x), y).backward()
    optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - began


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quantized_bytes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Bytes of the planned weights, quantized layer inputs and quantized output gradients per step,
    and how many tensors they are."""
    sizes = {"weights": 0, "activations": 0, "gradients": 0, "tensors": 0}
    handles = []

    def record(module: torch.nn.Module, inputs: tuple, output: object) -> None:
        layer = module.bitplan_quant
        first = inputs[0]
        out = output[0] if isinstance(output, tuple) else output
        sizes["weights"] += sum(getattr(module, name).nbytes for name in layer.weight_bits)
        sizes["tensors"] += len(layer.weight_bits)
        if layer.activation_bits is not None and first.is_floating_point():
            sizes["activations"] += first.nbytes
            sizes["tensors"] += 1
        if layer.gradient_quant.value != "none":
            sizes["gradients"] += out.nbytes
            sizes["tensors"] += 1

    for module in model.modules():
        if hasattr(module, "bitplan_quant"):
            handles.append(module.register_forward_hook(record))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return sizes


def kept_megabytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """MB one training forward keeps for backward: the model's forward alone, and with the loss."""
    _, model_only = kept_for_backward(model, lambda: model(x))
    _, with_loss = kept_for_backward(model, lambda: loss_of(model(x), y))
    return {"kept_mb": model_only.total / 1e6, "kept_with_loss_mb": with_loss.total / 1e6}


RSS_STEPS = (3, 10)
"""The RSS process's warm-up steps (compiles included), then the steps over which its growth is measured."""


def rss_megabytes(model_name: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    """Resident MB of a fresh process that builds one variant and trains it: the peak over its first
    steps (kernel compiles included) and the growth over the steps after them (0 unless memory leaks)."""
    command = [sys.executable, __file__, "--rss-child", f"{model_name}:{variant}", "--threads", str(args.threads),
               "--device", args.device] + (["--keep-freed-memory"] if args.keep_freed_memory else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def rss_child(target: str, device: torch.device) -> None:
    """``--rss-child MODEL:VARIANT``: build that variant alone, train it, print its RSS figures as JSON."""
    model_name, variant = target.split(":")
    workload = WORKLOADS[model_name]
    runner, optimizer, _ = build_variants(workload, False, device, (variant,))[variant]
    x, y = batch_of(workload, device)
    warmup, measured = RSS_STEPS
    for _ in range(warmup):
        step(runner, optimizer, x, y)
    peak = _memory_status("VmHWM")
    before = _memory_status("VmRSS")
    for _ in range(measured):
        step(runner, optimizer, x, y)
    print(json.dumps({"peak_rss_mb": peak, "rss_growth_mb": _memory_status("VmRSS") - before}))


def _memory_status(field: str) -> float:
    """MB of ``VmHWM`` (peak) or ``VmRSS`` (current) from ``/proc/self/status``.

    Not ``getrusage``'s ``ru_maxrss``: that survives fork and exec, so a child started by a large
    parent reports the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def copy_bandwidth(numel: int, device: torch.device, rounds: int = 20, pool_bytes: int = 1 << 27) -> float:
    """Bytes per second ``copy_`` moves (read + write) on float32 tensors of ``numel`` elements.

    The copies cycle through a pool of ``pool_bytes`` (128 MiB) so they come from memory, not from
    a cache that the training step's working set would not fit in either. The best copy counts: the
    limit is a bound, and on a shared machine slower copies measure the other jobs.
    """
    pairs = max(1, pool_bytes // (8 * numel))
    sources = [torch.randn(numel, device=device) for _ in range(pairs)]
    targets = [torch.zeros_like(source) for source in sources]  # written once: no first-touch faults timed
    times = []
    for index in range(max(rounds, pairs)):
        source, target = sources[index % pairs], targets[index % pairs]
        synchronize(device)
        began = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        times.append(time.perf_counter() - began)
    return 2 * sources[0].nbytes / min(times)


def measure(variants: dict[str, tuple], x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int) -> dict:
    """Median step time per variant over interleaved rounds, and the ratio to fp32."""
    warm_seconds = {name: sum(step(*variants[name][:2], x, y) for _ in range(warmup)) for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(steps):
        shift = round_index % len(names)  # rotate the order: no variant always follows the same one
        for name in names[shift:] + names[:shift]:
            times[name].append(step(*variants[name][:2], x, y))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        name: {"median_ms": 1e3 * medians[name], "ratio": medians[name] / medians["fp32"],
               "min_ms": 1e3 * min(times[name]), "warmup_s": warm_seconds[name]}
        for name in variants
    }


def with_limits(table: dict, variants: dict[str, tuple], x: torch.Tensor, model_name: str, compiled: bool) -> dict:
    """Add each variant's bandwidth limit (see the module docstring) and target to its row.

    Eager rows get the issue's ratio targets (× eager fp32, resnet20); compiled rows the compile
    target, which is a ratio to *eager* fp32 (the ``× eager fp32`` column), for every model.
    """
    fp32_s = table["fp32"]["median_ms"] / 1e3
    for name, row in table.items():
        row["target"] = COMPILED_TARGETS.get(name) if compiled else TARGETS.get(model_name, {}).get(name)
        if name == "fp32":
            row.update(limit=1.0, extra_bytes=0, copy_gb_per_s=None)
            continue
        sizes = quantized_bytes(variants[name][2], x)
        tensors = sizes.pop("tensors")
        extra = 3 * sum(sizes.values())
        bandwidth = copy_bandwidth(max(sum(sizes.values()) // 4 // max(1, tensors), 1 << 12), x.device)
        row.update(limit=(fp32_s + extra / bandwidth) / fp32_s, extra_bytes=extra, bytes_by_kind=sizes,
                   copy_gb_per_s=bandwidth / 1e9)
    return table


def run_model(model_name: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Eager (and optionally compiled) tables for one workload."""
    workload = WORKLOADS[model_name]
    x, y = batch_of(workload, device)
    variants = build_variants(workload, False, device, args.variants)
    eager = measure(variants, x, y, args.steps, args.warmup)
    for name, row in eager.items():
        row["vs_eager_fp32"] = row["ratio"]
        row.update(kept_megabytes(variants[name][2], x, y))
        row.update(dict.fromkeys(("peak_rss_mb", "rss_growth_mb")) if args.no_rss else rss_megabytes(model_name, name, args))
    for row in eager.values():
        row["kept_ratio"] = row["kept_mb"] / eager["fp32"]["kept_mb"]
    results = {"eager": with_limits(eager, variants, x, model_name, False)}
    if args.compile:
        # eager fp32 runs in the same interleaved rounds, so "× eager fp32" compares like with like
        compiled = {**build_variants(workload, True, device, args.variants), EAGER_REFERENCE: variants["fp32"]}
        table = measure(compiled, x, y, args.steps, args.warmup)
        reference = table.pop(EAGER_REFERENCE)["median_ms"]
        compiled.pop(EAGER_REFERENCE)
        for row in table.values():
            row["vs_eager_fp32"] = row["median_ms"] / reference
        results["compiled"] = with_limits(table, compiled, x, model_name, True)
    return results


def render(model_name: str, results: dict) -> None:
    """Print one workload's table: ratio to fp32 beside the bandwidth limit and the target."""
    workload = WORKLOADS[model_name]
    print(f"\n{model_name} ({workload.spec}), batch {workload.batch}")
    print(
        f"{'variant':<12} {'mode':<9} {'ms/step':>9} {'× fp32':>7} {'limit':>6} {'extra MB':>9} {'copy GB/s':>9} "
        f"{'× eager fp32':>13} {'target':>7} {'kept MB':>8} {'× fp32':>7} {'+loss MB':>9} {'peak RSS MB':>12} "
        f"{'RSS +MB/10 steps':>16}"
    )
    for mode, table in results.items():
        for name, row in table.items():
            target = f"{row['target']:.2f}" if row["target"] else "-"
            bandwidth = f"{row['copy_gb_per_s']:.1f}" if row["copy_gb_per_s"] else "-"
            memory = ""
            if "kept_mb" in row:
                rss = f"{row['peak_rss_mb']:.0f}" if row["peak_rss_mb"] else "-"
                growth = f"{row['rss_growth_mb']:.0f}" if row["rss_growth_mb"] is not None else "-"
                memory = f" {row['kept_mb']:8.1f} {row['kept_ratio']:7.3f} {row['kept_with_loss_mb']:9.1f} {rss:>12} {growth:>16}"
            print(
                f"{name:<12} {mode:<9} {row['median_ms']:9.1f} {row['ratio']:7.3f} {row['limit']:6.3f} "
                f"{row['extra_bytes'] / 1e6:9.1f} {bandwidth:>9} {row['vs_eager_fp32']:13.3f} {target:>7}{memory}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="interleaved rounds measured")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--models", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
    parser.add_argument(
        "--variants", default=",".join(SETTINGS), help="comma-separated subset (fp32 always runs): " + ", ".join(SETTINGS)
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd variants")
    parser.add_argument(
        "--keep-freed-memory", action="store_true",
        help="call bitplan.train.keep_freed_memory() first, as `bitplan train` does (default: glibc's malloc as it comes)",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS processes (one per variant)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_bench.json")
    args = parser.parse_args()
    args.variants = ("fp32", *(name for name in args.variants.split(",") if name != "fp32"))
    unknown = [name for name in args.variants if name not in SETTINGS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()  # what `bitplan train` does; fp32 and every variant share the setting
    device = torch.device(args.device)
    if args.rss_child:
        rss_child(args.rss_child, device)
        return
    load_before = os.getloadavg()
    results = {}
    for model_name in args.models.split(","):
        results[model_name] = run_model(model_name, args, device)
        render(model_name, results[model_name])
    load_after = os.getloadavg()
    print(f"\n{args.threads} threads on {device}, median of {args.steps} interleaved steps; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                    "device": str(device), "load_average": [load_before, load_after],
                    "keep_freed_memory": args.keep_freed_memory},
        "steps": args.steps,
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
