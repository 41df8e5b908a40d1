"""The train command forwards the options it was given to ``train_seeds`` (or ``launch``), nothing else."""

from __future__ import annotations

import json


import pytest
from typer.testing import CliRunner

import bitplan.train as train_package
from bitplan.cli.app import app
from bitplan.train import SeedsSummary, TrainConfig
from bitplan.train.records import MetricName, SeedStatus

runner = CliRunner()


def _summary(failed: bool = False) -> SeedsSummary:
    seed = SeedStatus(seed=0, status="failed" if failed else "ok", metric=None if failed else 97.5, epochs_done=1, out="x")
    return SeedsSummary(
        metric_name=MetricName.accuracy, mean=None if failed else 97.5, variance=None if failed else 0.0,
        std=None if failed else 0.0, ok=0 if failed else 1, failed=1 if failed else 0, seeds=[seed], out="x",
    )


@pytest.fixture
def calls(monkeypatch):
    recorded: dict = {}

    def fake_train_seeds(config, seeds, *, resume=False, overwrite=False, progress=True):
        recorded.update(config=config, seeds=seeds, resume=resume, overwrite=overwrite, progress=progress)
        return recorded.get("summary", _summary())

    def fake_launch(job, nproc):
        recorded.update(job=job, nproc=nproc)
        return 0

    monkeypatch.setattr(train_package, "train_seeds", fake_train_seeds)
    monkeypatch.setattr(train_package, "launch", fake_launch)
    return recorded


def test_no_arguments_runs_the_embedded_example(calls):
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    assert calls["config"] == TrainConfig.example() and calls["seeds"] == [0]
    assert calls["config"].factor.value == "A" and calls["config"].strategy.value == "C-"
    assert calls["config"].bits == (4, 8) and calls["config"].model == "zoo:digits_cnn"


def test_a_model_without_plan_options_trains_in_fp32(calls):
    result = runner.invoke(app, ["train", "--model", "zoo:resnet20", "--data", "synthetic"])
    assert result.exit_code == 0, result.output
    assert not calls["config"].quantized


def test_options_reach_the_config(calls, tmp_path):
    args = [
        "train", "--model", "zoo:resnet20", "--data", "synthetic", "--factor", "F", "--strategy", "C+",
        "--bits", "6-8", "--epochs", "3", "--batch-size", "64", "--lr", "0.1", "--optimizer", "adamw",
        "--schedule", "multistep", "--weight-decay", "0.001", "--seeds", "0,1,2,3", "--out", str(tmp_path / "r"),
        "--act-bits", "4", "--grad-bits", "6", "--grad-quant", "luq", "--weight-granularity", "tensor",
        "--keep-last-fp32", "--cyclic", "3-8", "--forward-quant", "sawb", "--resume", "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = calls["config"]
    assert (config.factor.value, config.strategy.value, config.bits) == ("F", "C+", (6, 8))
    assert (config.epochs, config.batch_size, config.lr, config.optimizer.value) == (3, 64, 0.1, "adamw")
    assert (config.schedule.value, config.weight_decay, config.out) == ("multistep", 0.001, tmp_path / "r")
    assert (config.activation_bits, config.gradient_bits, config.gradient_quant.value) == (4, 6, "luq")
    assert config.weight_granularity.value == "tensor" and config.keep_last_fp32 and config.cyclic == (3, 8)
    assert config.forward_quant.value == "sawb"
    assert calls["seeds"] == [0, 1, 2, 3] and calls["resume"] and not calls["progress"]


def test_plan_file_is_loaded(calls, tmp_path):
    from bitplan.plan import make_plan, save_plan
    from bitplan.spec import profile_spec

    plan = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="C-", bits=(4, 8))
    path = save_plan(plan, tmp_path / "plan.json")
    result = runner.invoke(app, ["train", "--plan", str(path)])
    assert result.exit_code == 0, result.output
    assert calls["config"].plan == plan and calls["config"].factor is None


def test_json_prints_the_summary_and_failures_exit_1(calls):
    result = runner.invoke(app, ["train", "--json"])
    assert SeedsSummary.model_validate_json(result.stdout) == _summary()
    calls["summary"] = _summary(failed=True)
    result = runner.invoke(app, ["train", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"] == 1


def test_nproc_launches_torchrun_with_the_same_job(calls):
    result = runner.invoke(app, ["train", "--nproc", "2", "--seeds", "3,4", "--json"])
    assert result.exit_code == 0, result.output
    assert calls["nproc"] == 2 and "config" not in calls
    job = calls["job"]
    assert job.config == TrainConfig.example() and job.seeds == [3, 4] and job.print_json


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--seeds", "a,b"], "--seeds"), (["--bits", "four"], "`four`"), (["--plan", "missing.json"], "missing.json")],
)
def test_bad_arguments_exit_2(calls, args, message):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_help_lists_the_options():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    for option in ("--plan", "--factor", "--seeds", "--resume", "--nproc", "--gradient-quant", "--compile", "--json"):
        assert option in result.output



def test_invalid_option_is_one_clear_error(calls):
    result = runner.invoke(app, ["train", "--bits", "8-4"])
    assert result.exit_code == 2
    assert "`bits`" in result.output
