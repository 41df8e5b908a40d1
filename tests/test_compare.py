"""``bitplan.compare``: grid numbers against the runs and plans, caching, resume, U sharing, size matching.

One test trains a real tiny grid (2 strategies × 2 seeds × 1 epoch, synthetic data, two processes);
the caching tests replace the train engine by ``fake_train``, which writes a run directory the way
``train_run`` does, so they can count exactly which runs were trained.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bitplan.compare import GridConfig, GridResult, run_grid
from bitplan.compare.cells import plan_cells
from bitplan.compare.executor import threads_per_job
from bitplan.compare.runs import run_key
from bitplan.plan import BitPlan, load_plan
from bitplan.plan.synthetic import resnet20_profile
from bitplan.train import RunConfigFile, RunResult, TrainConfig

TINY_FACTORY = '''
import torch
from torch import nn


def build(num_classes: int = 4, hidden: int = 16):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return model, (torch.zeros(1, 3, 2, 2),)
'''
TINY_DATA = "synthetic?classes=4&n=96&test_n=48"


@pytest.fixture
def tiny_spec(tmp_path: Path) -> str:
    """A file-spec MLP on 3×2×2 inputs (GEMMs with K = 12 and 16, so A's C− and C+ differ)."""
    path = tmp_path / "tiny_model.py"
    path.write_text(TINY_FACTORY)
    return f"{path}:build"


def grid_config(spec: str, out: Path, **overrides) -> GridConfig:
    train = TrainConfig(model=spec, data=TINY_DATA, epochs=1, batch_size=16, lr=0.2, **overrides.pop("train", {}))
    values = dict(train=train, factors=["A"], strategies=["U", "C-"], seeds=[0, 1], out=out)
    values.update(overrides)
    return GridConfig(**values)


class FakeTrainer:
    """Stands in for ``train_run``: writes final.json (metric from seed and plan) and counts its calls."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[tuple[Path, bool]] = []
        self.interrupt_at = interrupt_at

    def __call__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> RunResult:
        self.calls.append((config.out, resume))
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            config.out.mkdir(parents=True)  # started, then interrupted before its first checkpoint
            raise KeyboardInterrupt
        metric = 50.0 + 3.0 * config.seed + config.plan.estimates.avg_bits
        line = {"epoch": 1, "train_loss": 1.0, "train_metric": metric, "test_loss": 1.1, "metric": metric,
                "lr": 0.0, "seconds": 0.1}
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "metrics.jsonl").write_text(json.dumps(line) + "\n")
        result = RunResult(status="ok", seed=config.seed, metric_name="accuracy", metric=metric, train_loss=1.0,
                           test_loss=1.1, epochs_done=1, epochs=config.epochs, seconds=0.1, out=str(config.out))
        (config.out / "final.json").write_text(result.model_dump_json())
        return result

    @property
    def trained(self) -> list[Path]:
        return [out for out, _ in self.calls]


@pytest.fixture
def fake_train(monkeypatch) -> FakeTrainer:
    trainer = FakeTrainer()
    monkeypatch.setattr("bitplan.compare.executor.train_run", trainer)
    return trainer


def finished_runs(grid: Path) -> dict[Path, float]:
    """Run directory -> modification time of its final.json."""
    return {path.parent: path.stat().st_mtime_ns for path in (grid / "runs").glob("*/final.json")}


def test_tiny_grid_numbers_equal_the_runs_and_the_plans(tiny_spec, tmp_path):
    out = tmp_path / "grid"
    returned = run_grid(grid_config(tiny_spec, out), jobs=2, progress=False)
    result = GridResult.model_validate_json((out / "results.json").read_text())
    assert result == returned and result.complete and result.runs_total == 4
    assert [(row.factor.value, row.strategy.value) for row in result.rows] == [("A", "U"), ("A", "C-")]
    for row in result.rows:
        finals = [RunResult.model_validate_json((out / run.run_dir / "final.json").read_text()) for run in row.runs]
        assert sorted(final.seed for final in finals) == [0, 1]
        metrics = np.array([final.metric for final in finals])
        assert all(final.status == "ok" for final in finals) and row.ok == 2 and row.pending == 0
        assert row.mean == pytest.approx(metrics.mean(), abs=1e-12)
        assert row.variance == pytest.approx(metrics.var(ddof=0), abs=1e-12)
        plan = load_plan(out / row.plan_file)
        for run in row.runs:  # every run trained exactly the cell's plan, with its own seed
            record = RunConfigFile.model_validate_json((out / run.run_dir / "config.json").read_text())
            assert record.config.plan == plan and record.seed == run.seed
        weights = [layer for layer in plan.layers if layer.weight is not None]
        planned = sum(layer.params for layer in weights)
        size = sum(layer.params * layer.bits for layer in weights) + (plan.total_params - planned) * 32
        assert row.mbit == pytest.approx(size / 1e6, rel=1e-12)
        assert row.avg_bits == pytest.approx(sum(layer.params * layer.bits for layer in weights) / planned)
    uniform, c_minus = (load_plan(out / row.plan_file) for row in result.rows)
    assert set(uniform.bits_by_weight().values()) == {6}
    assert c_minus.bits_by_weight() == {"1.weight": 8, "3.weight": 4}  # K = 12 → 8 bits, K = 16 → 4 bits
    with (out / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert [float(line["mean"]) for line in lines] == [row.mean for row in result.rows]
    assert [float(line["mbit"]) for line in lines] == [row.mbit for row in result.rows]
    assert f"{result.rows[1].mean:.2f}" in (out / "results.md").read_text()
    for name in ("report.html", "figure7.png", "bars_A.png"):
        assert (out / name).stat().st_size > 1000


def test_interrupted_grid_resumes_without_training_finished_runs_again(tiny_spec, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    config = grid_config(tiny_spec, out)
    interrupted = FakeTrainer(interrupt_at=3)
    monkeypatch.setattr("bitplan.compare.executor.train_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_grid(config, progress=False)
    before = finished_runs(out)
    assert len(before) == 2
    partial = GridResult.model_validate_json((out / "results.json").read_text())
    assert (partial.runs_finished, partial.runs_total) == (2, 4)  # reportable while interrupted

    resumed = FakeTrainer()
    monkeypatch.setattr("bitplan.compare.executor.train_run", resumed)
    result = run_grid(config, progress=False)
    assert len(resumed.calls) == 2 and not set(resumed.trained) & set(before)
    assert dict(resumed.calls)[interrupted.trained[2]] is True  # the started run resumes, the new one does not
    assert sorted(resume for _, resume in resumed.calls) == [False, True]
    after = finished_runs(out)
    assert all(after[run] == mtime for run, mtime in before.items())  # finished runs untouched
    assert result.complete and len(after) == 4

    again = FakeTrainer()
    monkeypatch.setattr("bitplan.compare.executor.train_run", again)
    run_grid(config, progress=False)
    assert again.calls == []


def test_changed_configuration_reruns_only_what_changed(tiny_spec, tmp_path, fake_train):
    out = tmp_path / "grid"
    run_grid(grid_config(tiny_spec, out), progress=False)
    assert len(fake_train.calls) == 4
    first = set(fake_train.trained)

    run_grid(grid_config(tiny_spec, out, seeds=[0, 1, 2]), progress=False)  # one more seed
    added = set(fake_train.trained[4:])
    assert len(added) == 2 and not added & first and all("seed2" in path.name for path in added)

    run_grid(grid_config(tiny_spec, out, seeds=[0, 1, 2], strategies=["U", "C-", "C+"]), progress=False)
    new_cell = fake_train.trained[6:]
    assert len(new_cell) == 3 and all(path.name.startswith("A_Cplus") for path in new_cell)

    result = run_grid(grid_config(tiny_spec, out, train={"weight_decay": 0.0}), progress=False)
    assert len(fake_train.calls) == 13  # a training option changes every run's key
    assert result.runs_total == 4 and result.complete


def test_uniform_is_planned_and_trained_once_and_shown_for_every_factor(tiny_spec, tmp_path, fake_train):
    out = tmp_path / "grid"
    result = run_grid(grid_config(tiny_spec, out, factors=["A", "F", "D"], strategies=["U", "C+"]), progress=False)
    assert len(fake_train.calls) == (1 + 3) * 2  # U once, C+ per factor; two seeds each
    uniform = [row for row in result.rows if row.strategy.value == "U"]
    assert [row.factor.value for row in uniform] == ["A", "F", "D"] and all(row.shared for row in uniform)
    assert len({(row.plan_file, row.mean, tuple(run.run_dir for run in row.runs)) for row in uniform}) == 1
    assert sorted(path.name for path in (out / "plans").iterdir()) == ["A_Cplus.json", "D_Cplus.json", "F_Cplus.json", "U.json"]


def test_match_size_plans_every_strategy_within_uniform_average_bits():
    profile = resnet20_profile()
    config = GridConfig(train=TrainConfig(model="zoo:resnet20"), factors=["A", "F"], match_size=True)
    cells = plan_cells(config, profile)
    uniform = cells[0].plan
    assert uniform.strategy.value == "U" and uniform.estimates.avg_bits == 6.0 and uniform.budget is None
    assert len(cells) == 1 + 2 * 3
    for cell in cells[1:]:
        assert cell.plan.budget.kind.value == "avg_bits" and cell.plan.budget.value == 6.0
        assert cell.plan.estimates.avg_bits <= 6.0 + 1e-12
    unmatched = plan_cells(config.model_copy(update={"match_size": False}), profile)
    a_plus = next(cell.plan for cell in unmatched if cell.label == "A C+")
    assert a_plus.estimates.avg_bits > 6.0  # without matching, A C+ on resnet20 is larger than U


def test_run_key_covers_plan_seed_and_options_but_not_the_directory():
    plan = make_tiny_plan()
    base = TrainConfig(model="zoo:resnet20", data="synthetic", plan=plan, seed=0, out=Path("a"))
    assert run_key(base) == run_key(base.model_copy(update={"out": Path("b")}))
    changed = [
        {"seed": 1}, {"lr": 0.1}, {"epochs": 3}, {"data": "digits"}, {"gradient_bits": 6},
        {"plan": plan.model_copy(update={"seed": 7})},
    ]
    keys = {run_key(base.model_copy(update=update)) for update in changed}
    assert len(keys) == len(changed) and run_key(base) not in keys


def make_tiny_plan() -> BitPlan:
    from bitplan.plan import make_plan

    return make_plan(resnet20_profile(), factor="A", strategy="C-", bits=(4, 8))


@pytest.mark.parametrize(("jobs", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (3, 8, 2)])
def test_parallel_jobs_share_the_cores_without_oversubscribing(jobs, cores, threads):
    assert threads_per_job(jobs, cores=cores) == threads
    assert jobs * threads <= max(cores, jobs)


def test_grid_config_refuses_repeats_and_a_planned_template():
    with pytest.raises(ValueError, match="`seeds` repeats"):
        GridConfig(train=TrainConfig(), seeds=[0, 0])
    with pytest.raises(ValueError, match="leave its `plan` and `factor` unset"):
        GridConfig(train=TrainConfig(factor="A"))
    assert GridConfig(train=TrainConfig()).run_count == (1 + 3 * 3) * 4  # the paper's grid: 10 cells × 4 seeds


def test_cells_whose_plans_coincide_are_flagged(tiny_spec, tmp_path, fake_train):
    # Both linears of the tiny MLP are used once per sample (F = 1): F's C+ and C- collapse to U's middle width.
    result = run_grid(grid_config(tiny_spec, tmp_path / "grid", factors=["A", "F"], strategies=["U", "C+", "C-"]),
                      progress=False)
    assert result.row("F", "C+").same_bits_as == ["U", "F C-"] and result.row("A", "C+").same_bits_as == []
    assert result.row("A", "U").same_bits_as == ["F C+", "F C-"]
    assert "U assigns every layer the same bits as F C+, F C-" in (tmp_path / "grid" / "results.md").read_text()
