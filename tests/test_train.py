"""``bitplan.train``: run directory files, seeds summary, non-finite loss, schedules, plan overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bitplan.train import RunConfigFile, RunResult, SeedsSummary, TrainConfig, train_run, train_seeds
from bitplan.train.config import Schedule
from bitplan.train.loop import lr_factor
from bitplan.train.records import MetricsLine

TINY_FACTORY = '''
import torch
from torch import nn


def build(num_classes: int = 4, hidden: int = 16):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return model, (torch.zeros(1, 3, 2, 2),)
'''


@pytest.fixture
def tiny_spec(tmp_path: Path) -> str:
    """A file-spec MLP on 3×2×2 inputs with 4 classes (synthetic data follows its example input)."""
    path = tmp_path / "tiny_model.py"
    path.write_text(TINY_FACTORY)
    return f"{path}:build"


def tiny_config(spec: str, out: Path, **overrides) -> TrainConfig:
    values = dict(
        model=spec, data="synthetic?classes=4&n=256&test_n=64", factor="A", strategy="C-", bits=(4, 8),
        epochs=2, batch_size=16, lr=0.05, threads=1, out=out,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_run_directory_holds_config_metrics_checkpoint_and_final(tiny_spec, tmp_path):
    result = train_run(tiny_config(tiny_spec, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    assert result.status == "ok" and result.epochs_done == 2 and result.metric_name.value == "accuracy"
    record = RunConfigFile.model_validate_json((run / "config.json").read_text())
    assert record.config.plan is not None and record.config.plan.fingerprint
    assert record.versions.torch == torch.__version__ and record.seed == 0
    lines = [MetricsLine.model_validate_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line.epoch for line in lines] == [1, 2]
    assert lines[-1].metric == result.metric and lines[-1].lr == pytest.approx(0.0)
    assert RunResult.model_validate_json((run / "final.json").read_text()) == result
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    plain = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    )
    plain.load_state_dict(checkpoint["model"], strict=True)


def test_summary_mean_and_variance_equal_numpy(tiny_spec, tmp_path):
    summary = train_seeds(tiny_config(tiny_spec, tmp_path / "runs", epochs=1), [0, 1, 2], progress=False)
    finals = [json.loads((tmp_path / "runs" / f"seed-{s}" / "final.json").read_text())["metric"] for s in (0, 1, 2)]
    assert len(set(finals)) > 1, "different seeds should give different runs"
    assert summary.mean == pytest.approx(np.mean(finals), abs=1e-12)
    assert summary.variance == pytest.approx(np.var(finals), abs=1e-12)  # population variance, ddof=0
    assert SeedsSummary.model_validate_json((tmp_path / "runs" / "summary.json").read_text()) == summary


def test_exploding_loss_fails_the_seed_and_the_next_seed_runs(tiny_spec, tmp_path):
    summary = train_seeds(tiny_config(tiny_spec, tmp_path / "runs", lr=1e6, epochs=1), [0, 1], progress=False)
    assert [seed.status for seed in summary.seeds] == ["failed", "failed"]
    assert summary.mean is None and summary.failed == 2
    assert "lower the learning rate" in summary.seeds[0].message.lower()
    for seed in (0, 1):
        final = RunResult.model_validate_json((tmp_path / "runs" / f"seed-{seed}" / "final.json").read_text())
        assert final.status == "failed"


def test_non_finite_loss_keeps_the_last_good_checkpoint(tiny_spec, tmp_path, monkeypatch):
    from bitplan.train import loop

    real = loop.batch_loss
    calls = {"n": 0}

    def poisoned(output, target, task):  # NaN from the 20th training batch of seed 0 on (epoch 2)
        loss, correct, count = real(output, target, task)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] >= 20 and calls["n"] < 1000:
                loss = loss * float("nan")
        return loss, correct, count

    monkeypatch.setattr(loop, "batch_loss", poisoned)
    config = tiny_config(tiny_spec, tmp_path / "runs", epochs=3)
    first = train_run(config.model_copy(update={"out": tmp_path / "runs" / "a"}), progress=False)
    assert first.status == "failed" and first.epochs_done == 1
    assert "epoch 2" in first.message and "checkpoint" in first.message
    assert torch.load(tmp_path / "runs" / "a" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert len((tmp_path / "runs" / "a" / "metrics.jsonl").read_text().splitlines()) == 1
    calls["n"] = 1000  # the poison is spent: the next seed trains normally
    second = train_run(config.model_copy(update={"out": tmp_path / "runs" / "b", "seed": 1}), progress=False)
    assert second.status == "ok" and second.epochs_done == 3


def test_resume_of_a_finished_run_returns_its_result(tiny_spec, tmp_path):
    config = tiny_config(tiny_spec, tmp_path / "run", epochs=1)
    first = train_run(config, progress=False)
    assert train_run(config, resume=True, progress=False) == first


def test_resume_with_other_settings_is_refused(tiny_spec, tmp_path):
    from bitplan.errors import TrainingError

    config = tiny_config(tiny_spec, tmp_path / "run", epochs=1)
    train_run(config, progress=False)
    (tmp_path / "run" / "final.json").unlink()
    with pytest.raises(TrainingError, match=r"other settings \(lr \(checkpoint [0-9.e-]+, now 0.5\)\)"):
        train_run(config.model_copy(update={"lr": 0.5}), resume=True, progress=False)


def test_language_model_reports_perplexity(tmp_path):
    config = TrainConfig(
        model="zoo:lstm2?embed=16&hidden=16&tie_weights=false", data="synthetic?n=32&test_n=8", epochs=1, batch_size=8,
        lr=0.5, clip_grad_norm=0.25, threads=1, out=tmp_path / "lm", factor="A", strategy="U", bits=(8, 8),
    )
    result = train_run(config, progress=False)
    record = RunConfigFile.model_validate_json((tmp_path / "lm" / "config.json").read_text())
    assert result.metric_name.value == "perplexity" and 1.0 < result.metric < 64 * 4
    assert record.model_options["vocab"] == "64"  # synthetic LM data's vocabulary sized the model


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        (Schedule.cosine, 0, 1.0), (Schedule.cosine, 50, 0.5), (Schedule.cosine, 100, 0.0),
        (Schedule.multistep, 49, 1.0), (Schedule.multistep, 50, 0.1), (Schedule.multistep, 75, 0.01),
        (Schedule.step, 33, 1.0), (Schedule.step, 34, 0.1), (Schedule.step, 67, 0.01), (Schedule.constant, 90, 1.0),
    ],
)
def test_learning_rate_schedules(schedule, step, expected):
    assert lr_factor(schedule, step, 100) == pytest.approx(expected, abs=1e-12)


def test_overrides_fold_into_the_effective_plan(tiny_spec, tmp_path):
    from bitplan.spec import load_model
    from bitplan.train.setup import effective_plan

    loaded = load_model(tiny_spec)
    config = tiny_config(
        tiny_spec, tmp_path, activation_bits=32, gradient_bits=4, gradient_quant="luq",
        weight_granularity="tensor", keep_last_fp32=True,
    )
    plan = effective_plan(config, loaded.model, loaded.example_inputs)
    assert plan.activation_bits is None and plan.gradient_bits == 4 and plan.gradient_quant == "luq"
    assert plan.weight_granularity == "tensor"
    assert plan.layers[-1].bits == 32 and plan.layers[0].bits < 32


def test_no_plan_trains_in_full_precision(tiny_spec, tmp_path):
    config = tiny_config(tiny_spec, tmp_path / "fp32", factor=None, epochs=1)
    assert not config.quantized
    train_run(config, progress=False)
    record = RunConfigFile.model_validate_json((tmp_path / "fp32" / "config.json").read_text())
    assert record.config.plan is None


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="`bits`"):
        TrainConfig(bits=(8, 4))
    with pytest.raises(ValueError, match="`plan` or `factor`"):
        TrainConfig.example().model_validate({**TrainConfig.example().model_dump(), "plan": _any_plan()})


def _any_plan():
    from bitplan.plan import make_plan
    from bitplan.spec import profile_spec

    return make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="U", bits=(8, 8))


def test_luq_gradients_sawb_forward_and_cyclic_precision_train(tiny_spec, tmp_path):
    config = tiny_config(
        tiny_spec, tmp_path / "luq", epochs=1, gradient_quant="luq", forward_quant="sawb", gradient_samples=2,
        cyclic=(3, 8), cyclic_cycles=2,
    )
    result = train_run(config, progress=False)
    record = RunConfigFile.model_validate_json((tmp_path / "luq" / "config.json").read_text())
    assert result.status == "ok" and math.isfinite(result.train_loss)
    assert record.config.plan.gradient_quant == "luq" and record.config.forward_quant.value == "sawb"
