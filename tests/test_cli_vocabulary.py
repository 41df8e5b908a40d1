"""One vocabulary across commands: the same option means the same thing everywhere (docs/cli.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.cli.options import cli_command, TRAINING

runner = CliRunner()


def test_debug_works_after_the_verb_and_shows_the_traceback() -> None:
    quiet = runner.invoke(app, ["profile", "zoo:no_such_model"])
    loud = runner.invoke(app, ["profile", "zoo:no_such_model", "--debug"])
    assert quiet.exit_code == 2 and "no_such_model" in quiet.output and "--debug" in quiet.output
    assert loud.exit_code != 0 and loud.exception is not None  # re-raised instead of one red paragraph
    assert "No such option" not in loud.output


def test_plan_json_is_the_plan_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "zoo:resnet20", "--factor", "A", "--strategy", "C-", "--bits", "4-8", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["factor"] == "A" and plan["strategy"] == "C-" and len(plan["layers"]) == 20
    by_name = {layer["name"]: layer["bits"] for layer in plan["layers"]}
    assert by_name["conv1"] == 8 and by_name["layer3.2.conv2"] == 4  # C−: smallest K (27) widest, largest K (576) narrowest


def test_format_csv_and_md_carry_the_same_rows_as_the_table() -> None:
    csv_out = runner.invoke(app, ["zoo", "--format", "csv"])
    md_out = runner.invoke(app, ["zoo", "--format", "md"])
    listed = json.loads(runner.invoke(app, ["zoo", "--json"]).stdout)
    assert csv_out.exit_code == md_out.exit_code == 0
    csv_rows = csv_out.stdout.strip().splitlines()
    md_rows = md_out.stdout.strip().splitlines()
    assert len(csv_rows) == len(md_rows) - 1 == len(listed) + 1  # header (+ md rule) and one row per model
    assert csv_rows[1].split(",")[0] == listed[0]["name"]


def test_json_and_another_format_disagree() -> None:
    result = runner.invoke(app, ["zoo", "--json", "--format", "csv"])
    assert result.exit_code == 2 and "--json" in result.output


def test_old_spellings_still_work_and_mean_the_new_option() -> None:
    seen: list[dict] = []

    @cli_command(TRAINING, aliases=("act_bits", "out"))
    def command(output: Path | None = None, *, training: dict) -> None:
        seen.append({"output": output, **training})

    given = {name: None for name in TRAINING.options}
    command(**{**given, "activation_bits": None}, act_bits=4, out=Path("r"), output=None, debug=False)
    command(**{**given, "activation_bits": 6}, act_bits=4, out=None, output=Path("new"), debug=False)
    assert seen == [{"output": Path("r"), "activation_bits": 4}, {"output": Path("new"), "activation_bits": 6}]


def test_hidden_aliases_are_not_in_help() -> None:
    shown = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "--activation-bits" in shown and "--act-bits" not in shown and "--out " not in shown


def test_train_takes_the_model_first_and_an_input_shape(tmp_path: Path) -> None:
    factory = tmp_path / "tiny.py"
    factory.write_text(
        "import torch\n\ndef build(num_classes=10, in_channels=1):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    spec = f"{factory}:build"
    common = ["--data", "digits", "--epochs", "1", "--no-progress", "--json"]
    missing = runner.invoke(app, ["train", spec, *common, "-o", str(tmp_path / "a")])
    assert missing.exit_code == 2 and "--input-shape" in missing.output
    given = runner.invoke(app, ["train", spec, "--input-shape", "1x1x8x8", *common, "-o", str(tmp_path / "b")])
    assert given.exit_code == 0, given.output
    summary = json.loads(given.stdout)
    assert summary["seeds"][0]["status"] == "ok" and summary["seeds"][0]["metric"] > 50  # a linear model learns digits


def test_loaded_model_unpacks_as_model_and_inputs() -> None:
    from bitplan import load_model

    model, inputs = load_model("zoo:resnet20", batch=2)
    assert type(model).__name__ == "CifarResNet" and inputs[0].shape == (2, 3, 32, 32)


@pytest.mark.parametrize("command", ["profile", "plan", "train", "compare", "sensitivity", "study", "check", "zoo", "report"])
def test_every_command_takes_format_json_and_debug(command: str) -> None:
    shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    for option in ("--format", "--json", "--debug"):
        assert option in shown, f"`bitplan {command}` lacks {option}"


def test_debug_before_the_verb_still_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bitplan", "--debug", "profile", "zoo:no_such_model"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
