"""Lean start-up: which modules a command imports (a test of imports, not of time).

Each case runs ``python -m bitplan ARGS`` in a fresh subprocess through a small wrapper that dumps
``sys.modules`` at exit; ``--help``, every ``CMD --help`` and ``check --no-model`` must never load
torch, and profiling an ONNX file must not either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from bitplan.cli.app import app

# Runs the CLI once per argument list in the JSON argv[2], in one process; after each run appends
# {"code": exit code, "modules": [...]} to the list written to argv[1]. Modules only accumulate, so
# a run is charged with everything imported by the runs before it (a stricter test, not a looser one).
WRAPPER = """
import json, runpy, sys
out, runs, dumps = sys.argv[1], json.loads(sys.argv[2]), []
for args in runs:
    sys.argv, code = ["bitplan", *args], 0
    try:
        runpy.run_module("bitplan", run_name="__main__")
    except SystemExit as exit:
        code = exit.code or 0
    dumps.append({"code": code, "modules": sorted(sys.modules)})
with open(out, "w") as file:
    json.dump(dumps, file)
"""
HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "scipy", "matplotlib", "sympy", "transformers", "torchao")
COMMANDS = sorted(typer.main.get_command(app).commands)


def imported_by_runs(tmp_path: Path, *runs: tuple[str, ...]) -> list[tuple[int, set[str]]]:
    """Exit code and imported modules (dotted names and their top-level packages) after each run."""
    out = tmp_path / "modules.json"
    completed = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), json.dumps(runs)], capture_output=True, text=True, timeout=300
    )
    assert out.exists(), completed.stderr
    return [
        (dump["code"], {name.split(".")[0] for name in dump["modules"]} | set(dump["modules"]))
        for dump in json.loads(out.read_text())
    ]


def imported_by(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """Exit code and imported modules after ``bitplan ARGS`` in a fresh process."""
    return imported_by_runs(tmp_path, args)[0]


def test_import_bitplan_is_lean() -> None:
    code = "import sys, bitplan, bitplan.plan, bitplan.cli.app; print(sorted(sys.modules))"
    modules = set(eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout))
    assert not modules & set(HEAVY)


def test_every_public_name_resolves() -> None:
    import bitplan
    import bitplan.plan

    for package in (bitplan, bitplan.plan):
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None, name
    import bitplan.qat.core  # the package that holds it is named apart from the verb

    assert callable(bitplan.apply) and bitplan.apply is bitplan.qat.apply


def test_every_command_is_registered() -> None:
    assert {"profile", "plan", "check", "train", "apply", "sensitivity", "compare", "report", "zoo"} <= set(COMMANDS)


def test_help_never_imports_torch(tmp_path: Path) -> None:
    runs = [("--help",), *((name, "--help") for name in COMMANDS)]
    for args, (code, modules) in zip(runs, imported_by_runs(tmp_path, *runs), strict=True):
        assert code == 0, args
        assert not modules & set(HEAVY), (args, modules & set(HEAVY))


def test_check_no_model_never_imports_torch(tmp_path: Path) -> None:
    plan = Path(__file__).parents[1] / "plans" / "lstm2_A_U_6-8.json"
    (passing, modules), (over_budget, _) = imported_by_runs(
        tmp_path,
        ("check", str(plan), "--no-model", "--max-avg-bits", "8"),
        ("check", str(plan), "--no-model", "--max-avg-bits", "6"),
    )
    assert passing == 0 and over_budget == 1  # 7 average bits: the budget is still checked
    assert not modules & set(HEAVY)


def test_onnx_profile_never_imports_torch(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor("fc.weight", TensorProto.FLOAT, [4, 8], [0.0] * 32)],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    code, modules = imported_by(tmp_path, "profile", str(path), "--input-shape", "3x8", "--format", "json")
    assert code == 0
    assert "onnx" in modules and "torch" not in modules


def test_profiling_a_torch_model_loads_no_optional_extras(tmp_path: Path) -> None:
    code, modules = imported_by(tmp_path, "profile", "zoo:resnet20", "--format", "json")
    assert code == 0 and "torch" in modules
    assert not modules & {"onnx", "onnxruntime", "matplotlib", "scipy", "transformers", "torchao"}


def test_profiling_zoo_models_never_loads_the_compiler_stack(tmp_path: Path) -> None:
    """Shapes come from ``bitplan.frontends.shapes``, not from meta kernels that import torch._dynamo and sympy.

    Modules accumulate over the runs, so every model here must stay on the Python shape rules.
    """
    specs = ["zoo:resnet20", "zoo:mobilenet_v2", "zoo:lstm2", "zoo:transformer_lm?style=llama&n_layers=1", "zoo:alexnet_cifar"]
    runs = [("profile", spec, "--format", "json") for spec in specs]
    results = imported_by_runs(tmp_path, *runs)
    assert [code for code, _ in results] == [0] * len(specs)
    assert not results[-1][1] & {"torch._dynamo", "sympy", "torch._inductor"}
