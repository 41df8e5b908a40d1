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
  now lazy (PEP 562) and ``bitplan.spec`` imports torch only to build a model: ``--help`` imports
  typer and rich only (~0.2 s; pydantic comes with the commands that make results), ``check
  --no-model`` adds pydantic, the ONNX front end onnx and numpy.
- ``import torch`` itself already imports torch.export and torch.distributed (torch/__init__.py);
  they are part of the floor, not of bitplan.
- Profiling a torch model used to cost import torch + ~2.2 s, although tracing takes 0.05 s: on the
  meta device nearly every op (add, relu, conv2d, batch_norm, randn, arange, ...) runs a Python
  reference kernel, and those call ``torch._check`` (which imports sympy through
  torch.fx.experimental.symbolic_shapes) or are wrapped in ``torch._compile._disable_dynamo``
  (which imports torch._dynamo): ~1.2 s of imports plus slow first calls. Counted per op with an
  import hook, every zoo model hit them. ``bitplan.frontends.shapes`` now computes the output
  shapes of those ops in Python (checked against the meta kernels in tests/test_shapes.py), both
  while the model is built on meta and while it is traced, so neither package is imported
  (tests/test_imports.py). What is left over ``import torch``: typer/rich/pydantic (~0.15 s), the
  zoo and front-end modules, building the model on meta and tracing it (0.05 s small, ~0.3 s 7B).
- ``profile model.onnx``: onnx + numpy import (~0.13 s) and the CLI (~0.15 s) dominate. Constant
  and Identity nodes are now folded without ``onnx.reference`` (48 of resnet20's 62 folds).

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


# Processes run as an installed package does: with bytecode caches (this sandbox sets
# PYTHONDONTWRITEBYTECODE=1, which recompiles every bitplan module in every process, ~0.1 s).
CHILD_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=CHILD_ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(argvs: dict[str, list[str]], rounds: int) -> dict[str, dict[str, float]]:
    """Median wall/CPU seconds per case over interleaved rounds, and ratios to ``import_torch``."""
    names = list(argvs)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # untimed: writes the bytecode caches and warms the page cache
        run_once(argvs[name])
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
            "wall_over_torch_s": wall - torch_wall,
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
    print(f"{'case':<18} {'wall s':>7} {'cpu s':>7} {'wall-torch':>10} {'cpu-torch':>9} {'× torch':>8} {'target':>16}")
    for name, row in report.items():
        if row["target_s"] is not None:
            target = f"≤ {row['target_s']:.1f} s"
        elif row["target_over_torch_s"] is not None:
            target = f"≤ torch + {row['target_over_torch_s']:.1f} s"
        else:
            target = "-"
        print(
            f"{name:<18} {row['wall_s']:7.2f} {row['cpu_s']:7.2f} {row['wall_over_torch_s']:+10.2f} {row['cpu_over_torch_s']:+9.2f} "
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
