"""bitplan plan: options reach the library unchanged; real runs on zoo:resnet20; usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bitplan.plan.from_spec as from_spec
from bitplan.cli.app import app
from bitplan.choices import BudgetRule
from bitplan.plan import Budget, BudgetKind, Factor, Mapping, Strategy, load_plan, make_grid, make_plan
from bitplan.plan.synthetic import resnet20_profile

runner = CliRunner()
RESNET20 = resnet20_profile()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Replace the library calls with recorders that plan the hand-built ResNet-20."""
    recorded: list[tuple[str, dict]] = []

    def fake_plan_model(model: str, *, input_shape=None, batch=None, **options):
        recorded.append((model, {"input_shape": input_shape, "batch": batch, **options}))
        return make_plan(RESNET20, **options)

    def fake_grid_model(model: str, *, input_shape=None, batch=None, **options):
        recorded.append((model, {"input_shape": input_shape, "batch": batch, **options}))
        return make_grid(RESNET20, **options)

    monkeypatch.setattr(from_spec, "plan_model", fake_plan_model)
    monkeypatch.setattr(from_spec, "grid_model", fake_grid_model)
    return recorded


def test_options_are_passed_through(calls: list, tmp_path: Path) -> None:
    args = [
        "plan", "m.py:build", "--factor", "F", "--strategy", "C+", "--levels", "4,6,8", "--seed", "3",
        "--mapping", "quantile", "--budget-avg-bits", "6.5", "--keep", "first,last", "--keep", "layer2.*",
        "--keep-bits", "32", "--include-activation-gemms", "--activation-bits", "32", "--gradient-bits", "6",
        "--gradient-quant", "luq", "--weight-granularity", "tensor", "--input-shape", "1x3x32x32", "--batch", "4",
        "--uniform-bits", "6", "--budget-rule", "order-preserving", "-o", str(tmp_path / "p.json"),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model, options = calls[0]
    assert model == "m.py:build"
    assert options == {  # only what the user gave: every default is the library's
        "input_shape": "1x3x32x32",
        "batch": 4,
        "factor": Factor.F,
        "strategy": Strategy.C_plus,
        "levels": [4, 6, 8],
        "uniform_bits": 6,
        "seed": 3,
        "mapping": Mapping.quantile,
        "budget": Budget(kind=BudgetKind.avg_bits, value=6.5),
        "budget_rule": BudgetRule.order_preserving,
        "keep": ["first", "last", "layer2.*"],
        "keep_bits": 32,
        "include_activation_gemms": True,
        "activation_bits": None,
        "gradient_bits": 6,
        "gradient_quant": "luq",
        "weight_granularity": "tensor",
    }
    assert load_plan(tmp_path / "p.json").gradient_quant == "luq"


def test_preset_and_defaults(calls: list) -> None:
    result = runner.invoke(app, ["plan", "zoo:resnet20", "--preset", "dpc", "--capacity", "macs", "--bits", "6-8"])
    assert result.exit_code == 0, result.output
    _, options = calls[0]
    assert (options["preset"], options["capacity"], options["bits"]) == ("dpc", "macs", (6, 8))
    assert "budget" not in options and options["keep"] == [] and "activation_bits" not in options
    assert options["input_shape"] is None and options["batch"] is None
    assert "DPC (C- on macs)" in result.output


def test_grid_writes_every_plan_and_one_table(calls: list, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "zoo:resnet20", "--grid", "--factor", "A", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    _, options = calls[0]
    assert options["factors"] == [Factor.A] and options["strategies"] == Strategy.paper()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == sorted(
        ["grid.json"] + [f"resnet20_A_{s}_4-8.json" for s in ("U", "Cplus", "Cminus", "R")]
    )
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert [row["strategy"] for row in grid["rows"]] == ["U", "C+", "C-", "R"]
    assert "avg bits" in result.output and "4.391" in result.output  # the A C- row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--factor", "Q", "--strategy", "U"], "Invalid value for '--factor'"),
        (["--factor", "A", "--strategy", "C"], "Invalid value for '--strategy'"),
        (["--factor", "A", "--strategy", "U", "--bits", "8-4"], "bit range 8-4 is reversed"),
        (["--factor", "A", "--strategy", "U", "--bits", "4-40"], "leaves 1..32"),
        (["--factor", "A", "--strategy", "U", "--bits", "four"], "not of the form LOW-HIGH"),
        (["--factor", "A", "--strategy", "U", "--bits", "4-8", "--levels", "4,8"], "either --bits"),
        (["--factor", "A", "--strategy", "U", "--budget-mbit", "1", "--budget-avg-bits", "6"], "at most one"),
        (["--factor", "A", "--strategy", "C-", "--budget-avg-bits", "3"], "below every plan"),
        (["--strategy", "C+"], "give both --factor"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(calls: list, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["plan", "zoo:resnet20", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


# --- real runs: profile zoo:resnet20, plan, check -------------------------------------------------


def test_end_to_end_accumulation_c_minus_then_check(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    result = runner.invoke(app, ["plan", "zoo:resnet20", "--factor", "A", "--strategy", "C-", "--bits", "4-8", "-o", str(path)])
    assert result.exit_code == 0, result.output
    plan = load_plan(path)
    assert {layer.factor_value: layer.bits for layer in plan.layers} == {27: 8, 64: 7, 144: 6, 288: 5, 576: 4}
    assert plan == make_plan(RESNET20, factor="A", strategy="C-")  # the traced and hand-built profiles agree
    checked = runner.invoke(app, ["check", str(path), "--max-mbit", "1.3"])
    assert checked.exit_code == 0, checked.output


def test_end_to_end_frequency_c_plus_json() -> None:
    result = runner.invoke(app, ["plan", "zoo:resnet20", "--factor", "F", "--strategy", "C+", "--json"])
    assert result.exit_code == 0, result.output
    layers = json.loads(result.output)["layers"]
    assert {layer["factor_value"]: layer["bits"] for layer in layers} == {1: 4, 64: 5, 256: 7, 1024: 8}


def test_end_to_end_unknown_model_exits_2() -> None:
    result = runner.invoke(app, ["plan", "zoo:no_such_model", "--factor", "A", "--strategy", "U"])
    assert result.exit_code == 2
    assert "no_such_model" in result.output


def test_a_saved_profile_is_a_model_and_an_empty_one_is_refused(tmp_path: Path) -> None:
    saved = tmp_path / "profile.json"
    saved.write_text(RESNET20.model_dump_json())
    result = runner.invoke(app, ["plan", str(saved), "--factor", "A", "--strategy", "C-", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["fingerprint"] == RESNET20.fingerprint()
    empty = tmp_path / "empty.json"
    empty.write_text(RESNET20.model_copy(update={"layers": []}).model_dump_json())
    result = runner.invoke(app, ["plan", str(empty), "--factor", "A", "--strategy", "C-"])
    assert result.exit_code == 2
    assert "has no GEMM with a weight operand" in " ".join(result.output.split())
    broken = tmp_path / "broken.json"
    data = json.loads(saved.read_text())
    data["layers"][0]["name"] = 3
    broken.write_text(json.dumps(data))
    result = runner.invoke(app, ["plan", str(broken), "--factor", "A", "--strategy", "C-"])
    assert result.exit_code == 2
    assert "layers.0.name" in result.output
