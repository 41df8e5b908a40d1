"""Start-up cost of the ``bitplan`` command, whole processes, against ``python -c "import torch"``.

Cases (each a fresh process; rounds interleaved in rotating order, so a shared machine's drift hits
every case alike; median wall and CPU seconds, and their ratio to ``import torch``):

- ``import_torch``: ``python -c "import torch"``, the floor of anything that computes;
- ``help``: ``bitplan --help`` (target 0.3 s; never imports torch);
- ``check_no_model``: ``bitplan check PLAN --no-model`` (schema and budgets only; never imports torch);
- ``profile_small``: ``bitplan profile zoo:resnet20`` (target: import torch + 0.5 s);
- ``profile_resnet50``: ``bitplan profile zoo:resnet50``;
- ``profile_7b_meta``: ``bitplan profile zoo:transformer_lm?preset=llama2-7b`` (target: import torch + 1.5 s);
- ``profile_onnx``: ``bitplan profile resnet20.onnx`` (target 0.5 s; never imports torch).

Where the time goes (``python -X importtime``, ``torch.profiler`` and an import-hook stack dump,
this 2-core machine under load, torch 2.13 CPU):

- Before issue 13, ``import bitplan`` imported torch plus, through ``bitplan.qat.core``,
  torch._dynamo, sympy and torch.distributed: ``--help`` cost 1.8–4 s. The package ``__init__``s are
  now lazy (PEP 562) and ``bitplan.spec`` imports torch only to build a model: ``--help`` and
  ``check --no-model`` import typer, rich and pydantic only (~0.3 s), the ONNX front end onnx+numpy.
- ``import torch`` itself already imports torch.export and torch.distributed (torch/__init__.py);
  they are part of the floor, not of bitplan.
- Profiling a torch model costs import torch + the recorder's forward on meta tensors, and that
  forward is what is slow the first time: meta tensors have no C++ kernels for many ops (relu,
  batch_norm, normal_, ...), so torch runs its Python references (torch._refs / torch._decomp),
  which are wrapped in ``torch._compile._disable_dynamo`` and import torch._dynamo, sympy and
  torch._inductor on first use (~1–2.5 s of CPU; the same model profiled again in one process takes
  0.2 s). Avoiding it needs a recorder that propagates shapes itself instead of running meta
  kernels (a fake-dispatch recorder); see the issue-13 report.

    python benchmarks/startup_bench.py [--rounds 5] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "plans" / "lstm2_A_U_6-8.json"
TARGETS_S = {"help": 0.3, "profile_onnx": 0.5}
TARGETS_OVER_TORCH_S = {"profile_small": 0.5, "profile_7b_meta": 1.5}


def cases(onnx_file: Path) -> dict[str, list[str]]:
    """Case name -> argv of one whole process."""
    bitplan = [sys.executable, "-m", "bitplan"]
    return {
        "import_torch": [sys.executable, "-c", "import torch"],
        "help": [*bitplan, "--help"],
        "check_no_model": [*bitplan, "check", str(PLAN), "--no-model"],
        "profile_small": [*bitplan, "profile", "zoo:resnet20", "--format", "json"],
        "profile_resnet50": [*bitplan, "profile", "zoo:resnet50", "--format", "json"],
        "profile_7b_meta": [*bitplan, "profile", "zoo:transformer_lm?preset=llama2-7b", "--format", "json"],
        "profile_onnx": [*bitplan, "profile", str(onnx_file), "--format", "json"],
    }


def export_resnet20(path: Path) -> None:
    """Write zoo:resnet20 as ONNX (in a subprocess, so this process stays torch-free)."""
    script = (
        "import sys, torch; from bitplan.spec import load_model; m = load_model('zoo:resnet20'); "
        "torch.onnx.export(m.model.eval(), m.example_inputs, sys.argv[1], dynamo=False)"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", script, str(path)], check=True, capture_output=True)


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(argvs: dict[str, list[str]], rounds: int) -> dict[str, dict[str, float]]:
    """Median wall/CPU seconds per case over interleaved rounds, and ratios to ``import_torch``."""
    names = list(argvs)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = run_once(argvs[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    torch_wall = statistics.median(walls["import_torch"])
    torch_cpu = statistics.median(cpus["import_torch"])
    report = {}
    for name in names:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        report[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "best_wall_s": min(walls[name]),
            "wall_vs_torch": wall / torch_wall,
            "cpu_vs_torch": cpu / torch_cpu,
            "cpu_over_torch_s": cpu - torch_cpu,
            "target_s": TARGETS_S.get(name),
            "target_over_torch_s": TARGETS_OVER_TORCH_S.get(name),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = Path(folder) / "resnet20.onnx"
        export_resnet20(onnx_file)
        report = measure(cases(onnx_file), args.rounds)
    load_after = os.getloadavg()
    print(f"median of {args.rounds} interleaved rounds; load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'case':<18} {'wall s':>7} {'cpu s':>7} {'cpu-torch':>9} {'× torch':>8} {'target':>16}")
    for name, row in report.items():
        if row["target_s"] is not None:
            target = f"≤ {row['target_s']:.1f} s"
        elif row["target_over_torch_s"] is not None:
            target = f"≤ torch + {row['target_over_torch_s']:.1f} s"
        else:
            target = "-"
        print(
            f"{name:<18} {row['wall_s']:7.2f} {row['cpu_s']:7.2f} {row['cpu_over_torch_s']:+9.2f} "
            f"{row['cpu_vs_torch']:7.2f}× {target:>16}"
        )
    record = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": [load_before, load_after]},
        "rounds": args.rounds,
        "results": report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
