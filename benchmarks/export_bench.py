"""Export time and file size against the plan's size, and bit-packing throughput against ``copy_``.

Models (real weights on the CPU, as their factories build them), each with the A / C− 4–8 plan:

- ``zoo:resnet50`` (25.6 M parameters), exported packed and as ONNX QDQ;
- a ~1 B-parameter ``zoo:transformer_lm`` shape (``--lm-spec``; GPT-2 style, d_model 2048,
  19 blocks, d_ff 8192, vocab 32000: 1.02 B parameters, 4.1 GB in fp32), exported packed.

For each: seconds to export (``save_packed``: codes + packing + one safetensors write), seconds to
load back (``load_packed``), bytes written, and the ratio bytes / (plan MBit / 8). For resnet50,
``save_packed`` is also timed against ``torch.save`` of the fp32 state dict, interleaved in this
process over ``--rounds`` rounds (medians; target ≤ 1.5×). Packing is then timed alone on
``--codes`` random codes of 2, 4, 6 and 8 bits (uint8): GB/s of the fp32 tensor they encode (4
bytes per code, the issue's unit) for pack and unpack, beside ``copy_`` of that fp32 tensor into a
preallocated one (the memory-bound floor), medians of interleaved rounds on one thread.

    python benchmarks/export_bench.py [--skip-lm] [--codes 33554432] [--rounds 5]
                                      [--out benchmarks/results/export.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bitplan.atomic import atomic_write_text
from bitplan.export import load_packed, save_packed, to_onnx
from bitplan.export.packing import pack_codes, unpack_codes
from bitplan.plan import make_plan
from bitplan.spec import load_model, profile_spec

LM_SPEC = "zoo:transformer_lm?d_model=2048&n_layers=19&n_heads=16&d_ff=8192&vocab=32000&seq_len=128"


def export_figures(spec: str, directory: Path, *, onnx: bool) -> dict:
    """Plan, build, export and reload one model; sizes and seconds."""
    started = time.perf_counter()
    plan = make_plan(profile_spec(spec), factor="A", strategy="C-", bits=(4, 8))
    planned = time.perf_counter() - started
    started = time.perf_counter()
    loaded = load_model(spec)
    built = time.perf_counter() - started
    model = loaded.model.eval()
    params = sum(p.numel() for p in model.parameters())
    path = directory / "model.safetensors"
    started = time.perf_counter()
    save_packed(model, plan, path)
    exported = time.perf_counter() - started
    started = time.perf_counter()
    load_packed(path)
    reloaded = time.perf_counter() - started
    figures = {
        "spec": spec,
        "params": params,
        "fp32_bytes": params * 4,
        "plan_mbit": plan.estimates.mbit,
        "plan_bytes": plan.estimates.size_bits / 8,
        "histogram": plan.estimates.histogram,
        "plan_seconds": planned,
        "build_seconds": built,
        "packed_seconds": exported,
        "packed_load_seconds": reloaded,
        "packed_bytes": path.stat().st_size,
        "packed_over_plan": path.stat().st_size / (plan.estimates.size_bits / 8),
    }
    path.unlink()
    if onnx:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_onnx(model, plan, directory / "model.onnx", loaded.example_inputs)
        figures["onnx_seconds"] = time.perf_counter() - started
        figures["onnx_bytes"] = (directory / "model.onnx").stat().st_size
        (directory / "model.onnx").unlink()
    del model, loaded
    gc.collect()
    return figures


def save_against_torch_save(spec: str, directory: Path, rounds: int) -> dict:
    """Median seconds of ``torch.save`` (fp32 state dict) and ``save_packed`` (A C− 4–8), interleaved."""
    plan = make_plan(profile_spec(spec), factor="A", strategy="C-", bits=(4, 8))
    model = load_model(spec).model.eval()
    times: dict[str, list[float]] = {"torch.save": [], "save_packed": []}
    runs = {"torch.save": lambda: torch.save(model.state_dict(), directory / "fp32.pt"),
            "save_packed": lambda: save_packed(model, plan, directory / "packed.safetensors")}
    for round_index in range(rounds + 1):  # the first round warms both up and is not counted
        for name in list(runs)[round_index % 2 :] + list(runs)[: round_index % 2]:
            started = time.perf_counter()
            runs[name]()
            if round_index:
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"spec": spec, **{f"{name}_seconds": seconds for name, seconds in medians.items()},
            "fp32_bytes": (directory / "fp32.pt").stat().st_size,
            "packed_bytes": (directory / "packed.safetensors").stat().st_size,
            "ratio": medians["save_packed"] / medians["torch.save"], "target": 1.5}


def packing_figures(numel: int, rounds: int) -> list[dict]:
    """Median seconds of pack, unpack and an fp32 ``copy_`` over interleaved rounds, per width (one thread)."""
    results = []
    torch.set_num_threads(1)
    source = torch.randn(numel)
    target = torch.zeros_like(source)  # written once: no first-touch faults timed
    for bits in (2, 4, 6, 8):
        codes = torch.randint(0, 2**bits, (numel,), dtype=torch.uint8)
        packed = pack_codes(codes, bits)
        assert torch.equal(unpack_codes(packed, bits, numel).to(torch.uint8), codes)
        times: dict[str, list[float]] = {"pack": [], "unpack": [], "copy_": []}
        for _ in range(rounds):
            for name, run in (("copy_", lambda: target.copy_(source)), ("pack", lambda: pack_codes(codes, bits)),
                              ("unpack", lambda: unpack_codes(packed, bits, numel))):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(values) for name, values in times.items()}
        results.append({
            "bits": bits,
            "codes": numel,
            **{f"{name}_seconds": seconds for name, seconds in medians.items()},
            **{f"{name}_fp32_gb_per_s": 4 * numel / seconds / 1e9 for name, seconds in medians.items()},
            "pack_over_copy": medians["copy_"] / medians["pack"],
            "unpack_over_copy": medians["copy_"] / medians["unpack"],
        })
    torch.set_num_threads(os.cpu_count() or 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-spec", default=LM_SPEC)
    parser.add_argument("--skip-lm", action="store_true", help="leave out the 1B transformer (needs ~10 GB of RAM)")
    parser.add_argument("--codes", type=int, default=1 << 25)
    parser.add_argument("--skip-models", action="store_true", help="only the interleaved save and packing figures")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    packing = packing_figures(args.codes, args.rounds)
    models = []
    with tempfile.TemporaryDirectory(prefix="bitplan-export-bench-") as directory:
        saving = save_against_torch_save("zoo:resnet50", Path(directory), args.rounds)
        if not args.skip_models:
            models.append(export_figures("zoo:resnet50", Path(directory), onnx=True))
            if not args.skip_lm:
                models.append(export_figures(args.lm_spec, Path(directory), onnx=False))
    load_after = os.getloadavg()
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load_average": [load_before, load_after]},
        "packing": packing,
        "save_against_torch_save": saving,
        "models": models,
    }
    if models:
        print(f"{'model':<12} {'params':>13} {'plan MB':>9} {'file MB':>9} {'file/plan':>9} {'export s':>9} {'load s':>7}")
    for row in models:
        name = row["spec"].split("?")[0] + ("(1B)" if "?" in row["spec"] else "")
        print(f"{name:<12} {row['params']:>13,} {row['plan_bytes'] / 1e6:>9.2f} {row['packed_bytes'] / 1e6:>9.2f} "
              f"{row['packed_over_plan']:>9.3f} {row['packed_seconds']:>9.2f} {row['packed_load_seconds']:>7.2f}")
    print(f"resnet50: torch.save (fp32, {saving['fp32_bytes'] / 1e6:.1f} MB) {saving['torch.save_seconds']:.3f} s, "
          f"save_packed ({saving['packed_bytes'] / 1e6:.1f} MB) {saving['save_packed_seconds']:.3f} s: "
          f"{saving['ratio']:.2f}× (target ≤ {saving['target']}×)")
    for row in packing:
        print(f"{row['bits']}-bit codes, GB/s of fp32 input: pack {row['pack_fp32_gb_per_s']:.2f}, unpack "
              f"{row['unpack_fp32_gb_per_s']:.2f}, copy_ {row['copy__fp32_gb_per_s']:.2f} "
              f"(pack/copy_ = {row['pack_over_copy']:.2f}×, unpack/copy_ = {row['unpack_over_copy']:.2f}×)")
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
