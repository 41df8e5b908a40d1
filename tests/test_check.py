"""bitplan check: each violation, and the exit codes CI relies on (0 valid, 1 violations, 2 usage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bitplan.spec
from bitplan.cli.app import app
from bitplan.errors import PlanError
from bitplan.plan import Budget, check_plan, make_plan, save_plan
from bitplan.plan.synthetic import GemmShape, profile_from_gemms, resnet20_profile

RESNET20 = resnet20_profile()
OTHER = profile_from_gemms("zoo:other", [GemmShape("conv1", 1024, 27, 16, 1), GemmShape("head", 1, 16, 10, 2)])
runner = CliRunner()


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    return save_plan(make_plan(RESNET20, factor="A", strategy="C-"), tmp_path / "plan.json")


def tamper(path: Path, edit) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def codes(report) -> list[str]:
    return [violation.code for violation in report.violations]


def test_a_fresh_plan_passes(plan_file: Path) -> None:
    report = check_plan(plan_file, profile=RESNET20, max_mbit=1.3, max_avg_bits=4.5, min_bits=4, max_bitops=1.7e9)
    assert report.ok and report.violations == []
    assert report.mbit == 1.22272 and report.min_bits == 4 and report.layers == 20


def test_limits_are_each_reported(plan_file: Path) -> None:
    report = check_plan(plan_file, profile=RESNET20, max_mbit=1.0, max_avg_bits=4.0, min_bits=5, max_bitops=1e9)
    assert not report.ok
    assert codes(report) == ["max_mbit", "max_avg_bits", "max_bitops"] + ["min_bits"] * 5
    assert "1.22272 MBit, above the limit 1 MBit" in report.violations[0].message


def test_a_tampered_width_is_caught(plan_file: Path) -> None:
    def lower_stem(data: dict) -> None:
        data["layers"][0]["bits"] = 4  # conv1 (K = 27) must have the most bits under C-

    report = check_plan(tamper(plan_file, lower_stem), profile=RESNET20)
    assert set(codes(report)) == {"order", "estimates", "accumulator_bits"}  # the stored widths were for 8 bits
    assert any("C- needs bits non-increasing" in v.message for v in report.violations)


def test_a_width_outside_the_levels_is_caught(plan_file: Path) -> None:
    def widen(data: dict) -> None:
        for layer in data["layers"]:
            if layer["factor_value"] == 576:
                layer["bits"] = 3

    report = check_plan(tamper(plan_file, widen), profile=RESNET20)
    assert "level" in codes(report) and "estimates" in codes(report)


def test_missing_duplicate_and_unknown_layers(plan_file: Path) -> None:
    def drop_and_rename(data: dict) -> None:
        data["layers"].pop(19)  # fc
        data["layers"][0]["name"] = "stem"

    report = check_plan(tamper(plan_file, drop_and_rename), profile=RESNET20)
    assert ["conv1", "fc"] == [v.layer for v in report.violations if v.code == "missing"]
    assert [v.layer for v in report.violations if v.code == "unknown_layer"] == ["stem"]

    def duplicate(data: dict) -> None:
        data["layers"].append(dict(data["layers"][0]))

    report = check_plan(tamper(plan_file, duplicate), profile=RESNET20)
    assert codes(report) == ["schema"] and "appears twice" in report.violations[0].message


def test_a_forged_factor_value_is_caught(plan_file: Path) -> None:
    report = check_plan(tamper(plan_file, lambda d: d["layers"][5].update(factor_value=999.0)), profile=RESNET20)
    assert "factor_value" in codes(report)


def test_a_plan_for_another_model_fails_the_fingerprint(plan_file: Path) -> None:
    report = check_plan(plan_file, profile=OTHER)
    assert codes(report)[0] == "fingerprint"
    assert "made for another architecture" in report.violations[0].message


@pytest.mark.parametrize("rule", ["fill", "order-preserving"])
def test_the_plans_own_budget_is_checked(tmp_path: Path, rule: str) -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C+", budget=Budget(kind="avg_bits", value=6), budget_rule=rule)
    path = save_plan(plan, tmp_path / "budget.json")
    assert check_plan(path, profile=RESNET20).ok
    report = check_plan(tamper(path, lambda d: d["budget"].update(value=5.5)), profile=RESNET20)
    assert codes(report) == ["budget"]


def test_schema_errors_are_violations_not_crashes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    report = check_plan(bad, profile=RESNET20)
    assert not report.ok and codes(report) == ["schema"]


def test_a_missing_plan_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="does not exist"):
        check_plan(tmp_path / "none.json", profile=RESNET20)


# --- the command and its exit codes ----------------------------------------------------------------


@pytest.fixture
def profiles(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Serve hand-built profiles instead of tracing; records every call."""
    calls: list[tuple] = []

    def fake_profile_spec(spec: str, **kwargs: object):
        calls.append((spec, kwargs))
        return {"zoo:resnet20": RESNET20, "zoo:other": OTHER}[spec]

    monkeypatch.setattr(bitplan.spec, "profile_spec", fake_profile_spec)
    return calls


def test_exit_0_when_valid(plan_file: Path, profiles: list) -> None:
    result = runner.invoke(app, ["check", str(plan_file), "--max-avg-bits", "4.5"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "4.391 avg bits" in result.output
    assert profiles == [("zoo:resnet20", {"batch": 1})]  # once, at the plan's batch and its own input shapes


def test_exit_1_lists_each_violation(plan_file: Path, profiles: list) -> None:
    result = runner.invoke(app, ["check", str(plan_file), "--model", "zoo:other", "--min-bits", "5", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["model"] == "zoo:other"
    assert {"fingerprint", "missing", "unknown_layer", "min_bits"} <= {v["code"] for v in report["violations"]}


def test_exit_1_for_a_tampered_plan(plan_file: Path, profiles: list) -> None:
    tamper(plan_file, lambda d: d["layers"][0].update(bits=4))
    result = runner.invoke(app, ["check", str(plan_file)])
    assert result.exit_code == 1
    assert "estimates" in result.output and "order" in result.output


def test_exit_1_for_malformed_json(tmp_path: Path, profiles: list) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"schema_version": 1, "layers": [')
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "not valid JSON" in result.output


def test_exit_2_for_usage_errors(tmp_path: Path, plan_file: Path, profiles: list) -> None:
    assert runner.invoke(app, ["check", str(tmp_path / "missing.json")]).exit_code == 2
    assert runner.invoke(app, ["check", str(plan_file), "--max-mbit", "lots"]).exit_code == 2


def test_several_plans_profile_each_model_once(tmp_path: Path, plan_file: Path, profiles: list) -> None:
    second = save_plan(make_plan(RESNET20, factor="F", strategy="C+"), tmp_path / "second.json")
    result = runner.invoke(app, ["check", str(plan_file), str(second), "--json"])
    assert result.exit_code == 0, result.output
    assert [report["ok"] for report in json.loads(result.output)] == [True, True]
    assert len(profiles) == 1
    tamper(second, lambda d: d.update(fingerprint="0" * 16))
    assert runner.invoke(app, ["check", str(plan_file), str(second)]).exit_code == 1


def test_check_takes_the_input_shape_from_the_plan(tmp_path: Path) -> None:
    """A factory that returns only a module needs a shape to plan; checking the plan needs none again."""
    factory = tmp_path / "net.py"
    factory.write_text(
        "import torch\n\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(512, 10))\n"
    )
    spec = f"{factory}:build"
    with pytest.raises(bitplan.spec.SpecError, match="--input-shape"):
        bitplan.spec.profile_spec(spec)
    plan = make_plan(bitplan.spec.profile_spec(spec, input_shape="2x3x10x10"), factor="F", strategy="C+", bits=(4, 8))
    save_plan(plan, tmp_path / "p.json")
    report = check_plan(tmp_path / "p.json", model=spec)  # a code spec is named by the user, never read from the file
    assert report.ok, report.violations
    assert report.layers == 2 and plan.input_shapes == [[2, 3, 10, 10]]


def _no_model_gate(path: Path, limit: int = 26):
    return runner.invoke(app, ["check", str(path), "--no-model", "--max-accumulator-bits", str(limit)])


def test_no_model_accumulator_gate_never_passes_on_missing_widths(plan_file: Path) -> None:
    """An older plan (no widths, no shapes): the limit cannot be recomputed, so check exits 2, naming what is missing."""

    def older(data):
        for layer in data["layers"]:
            layer.pop("accumulator_bits", None)
            layer.pop("shape", None)

    result = _no_model_gate(tamper(plan_file, older))
    assert result.exit_code == 2, result.output
    assert "stores no GEMM shape" in " ".join(result.output.split()) and "Drop --no-model" in " ".join(result.output.split())


def test_no_model_accumulator_gate_recomputes_edited_widths(plan_file: Path) -> None:
    """Widths edited down: recomputed from the stored shapes, the edit is a violation and the limit still fails."""
    with_model = check_plan(plan_file, profile=RESNET20, max_accumulator_bits=20)
    assert "max_accumulator_bits" in codes(with_model)

    def edited_down(data):
        for layer in data["layers"]:
            layer["accumulator_bits"] = {"forward": 8, "grad_input": 8, "grad_weight": 8}

    tamper(plan_file, edited_down)
    report = check_plan(plan_file, against_model=False, max_accumulator_bits=20)
    assert "accumulator_bits" in codes(report)
    assert [v.layer for v in report.violations if v.code == "max_accumulator_bits"] == [
        v.layer for v in with_model.violations if v.code == "max_accumulator_bits"]
    assert _no_model_gate(plan_file, 20).exit_code == 1


def test_stored_shape_must_give_the_stored_params_and_macs(plan_file: Path) -> None:
    def edited_k(data):
        data["layers"][0]["shape"]["k"] = 1  # a shorter reduction: narrower accumulators

    report = check_plan(tamper(plan_file, edited_k), against_model=False)
    assert "shape" in codes(report) and not report.ok


def test_no_model_with_a_model_is_refused(plan_file: Path) -> None:
    result = runner.invoke(app, ["check", str(plan_file), "--no-model", "--model", "zoo:resnet20"])
    assert result.exit_code == 2 and "drop one of them" in " ".join(result.output.split()), result.output


def test_piped_violations_are_one_line_each(plan_file: Path) -> None:
    tamper(plan_file, lambda data: data["layers"][0].update(bits=3))
    result = runner.invoke(app, ["check", str(plan_file), "--no-model"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines and all(line.startswith(f"{plan_file}: ") for line in lines), result.output
    report = check_plan(plan_file, against_model=False)
    assert len(lines) == len(report.violations)  # no table padding every row to the longest message
