"""``bitplan pareto``: every point's numbers equal an independent evaluation of its plan file; caching; bad input."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.compare.html import extra_sections
from bitplan.pareto import ParetoConfig, ParetoResult, run_pareto
from bitplan.plan import load_plan
from bitplan.train import TrainConfig, evaluate_model
from bitplan.train.evaluate import Evaluator

runner = CliRunner()
LEVELS = [1, 2, 3, 4, 8]
BUDGETS = [1.5, 2.0]
METHODS = ["uniform", "random", "first-last", "A:C-", "dpc", "fisher", "recommended"]


def hand_mean_bits(plan_file: Path) -> float:
    """Σ params × bits / Σ params over the plan file's weights, each shared weight once."""
    layers = {layer.weight: layer for layer in load_plan(plan_file).layers if layer.weight is not None}
    return sum(layer.params * layer.bits for layer in layers.values()) / sum(layer.params for layer in layers.values())


@pytest.fixture(scope="module")
def sweep(trained_digits, tmp_path_factory) -> tuple[ParetoConfig, ParetoResult]:
    spec, checkpoint = trained_digits
    config = ParetoConfig(
        model=spec, data="digits", checkpoint=checkpoint, levels=LEVELS, budgets=BUDGETS, methods=METHODS,
        random_plans=3, weight_only=True, sensitivity_batches=2, out=tmp_path_factory.mktemp("pareto") / "sweep",
    )
    return config, run_pareto(config, progress=False)


def test_points_equal_an_independent_evaluation_of_their_plan_files(sweep, trained_digits) -> None:
    config, result = sweep
    spec, checkpoint = trained_digits
    assert {p.method for p in result.points} == set(METHODS)
    assert len([p for p in result.points if p.method == "random"]) == 3 * len(BUDGETS)
    for point in result.points:
        plan_file = config.out / point.plan
        independent = evaluate_model(spec, "digits", checkpoint=checkpoint, plan=plan_file)
        assert independent.metric == point.metric, point
        assert independent.loss == pytest.approx(point.loss, rel=1e-9)
        assert point.avg_bits == pytest.approx(hand_mean_bits(plan_file), abs=1e-12)
        assert point.avg_bits <= point.budget + 1e-9  # every plan stays within its budget
        assert point.mbit == load_plan(plan_file).estimates.mbit
    uniform = [p for p in result.points if p.method == "uniform"]
    assert [(p.budget, p.avg_bits) for p in uniform] == [(2.0, 2.0)]  # uniform only where the budget is a level
    for point in (p for p in result.points if p.method == "random"):
        assert point.budget - 1 <= point.avg_bits <= point.budget  # within one level step of the budget
    plans = {load_plan(config.out / p.plan).bits_by_weight().values().__repr__() for p in result.points
             if p.method == "random" and p.budget == 1.5}
    assert len(plans) > 1  # random plans differ by seed


def test_files_tables_and_the_report_section(sweep) -> None:
    config, result = sweep
    stored = ParetoResult.model_validate_json((config.out / "pareto.json").read_text())
    assert stored == result
    rows = list(csv.DictReader(io.StringIO((config.out / "pareto.csv").read_text())))
    assert len(rows) == len(result.points) and rows[0]["method"] == result.points[0].method
    markdown = (config.out / "pareto.md").read_text()
    assert "| fisher | 1.5 |" in markdown and "Against random plans" in markdown
    assert (config.out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [section] = extra_sections(config.out)  # what `bitplan report` inserts into a grid's report.html
    assert section.startswith('<section class="pareto">') and "data:image/png;base64," in section
    assert section in (config.out / "report.html").read_text()
    (config.out / "pareto.md").unlink()
    out = runner.invoke(app, ["report", str(config.out), "--json"])  # re-rendered from pareto.json alone
    assert out.exit_code == 0, out.output
    assert ParetoResult.model_validate_json(out.stdout) == result and (config.out / "pareto.md").read_text() == markdown


def test_a_rerun_reads_every_finished_point(sweep, monkeypatch) -> None:
    config, result = sweep
    evaluated = []
    original = Evaluator.evaluate
    monkeypatch.setattr(Evaluator, "evaluate", lambda self, plan=None: evaluated.append(plan) or original(self, plan))
    again = run_pareto(config, progress=False)
    assert evaluated == [None]  # only the full-precision baseline; every plan's result came from points/
    assert again.points == result.points


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--methods", "uniform,A:Q"], "unknown method `A:Q`"),
        (["--budget-avg-bits", "0.5,2"], "smallest reachable is 1"),
        (["--budget-avg-bits", "2,9"], "the largest 8"),
        (["--levels", "2,4,16"], "1..8"),
        (["--data", "synthetic?task=language_model&vocab=20&shape=16"], "the model does not accept the data"),
        (["--data", "synthetic?classes=3&shape=1x8x8"], "size mismatch for fc2.weight"),  # a checkpoint of another model
    ],
)
def test_bad_input_exits_2_and_writes_nothing(trained_digits, tmp_path, options, named) -> None:
    spec, checkpoint = trained_digits
    base = {"--data": "digits", "--levels": "1,2,3,4,8", "--budget-avg-bits": "2", "--methods": "uniform"}
    given = dict(zip(options[::2], options[1::2]))
    arguments = [item for pair in {**base, **given}.items() for item in pair]
    out = runner.invoke(app, ["pareto", spec, "--checkpoint", str(checkpoint), *arguments, "-o", str(tmp_path / "sweep")])
    assert out.exit_code == 2, out.output
    assert named in " ".join(out.output.split()) and "Traceback" not in out.output
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_qat_points_are_their_fine_tuned_checkpoints_evaluated(trained_digits, tmp_path) -> None:
    spec, checkpoint = trained_digits
    config = ParetoConfig(
        model=spec, data="digits", checkpoint=checkpoint, levels=[2, 4, 8], budgets=[2.0, 3.0], methods=["uniform", "A:C-"],
        eval="qat", seeds=[0, 1], weight_only=True, train=TrainConfig(epochs=1, threads=1, lr=0.01), out=tmp_path / "qat",
    )
    result = run_pareto(config, progress=False)
    assert {(p.method, p.budget, p.seed) for p in result.points} == {
        ("uniform", 2.0, 0), ("uniform", 2.0, 1), ("A:C-", 2.0, 0), ("A:C-", 2.0, 1), ("A:C-", 3.0, 0), ("A:C-", 3.0, 1)}
    for point in result.points:
        run = config.out / point.run
        independent = evaluate_model(spec, "digits", checkpoint=run / "checkpoint.pt", plan=config.out / point.plan)
        assert independent.metric == point.metric and independent.loss == pytest.approx(point.loss, rel=1e-6)
    seeds = {p.seed: p.metric for p in result.points if p.method == "A:C-" and p.budget == 2.0}
    assert len(seeds) == 2
    started = {path: path.stat().st_mtime_ns for path in (config.out / "runs").glob("*/final.json")}
    assert run_pareto(config, progress=False).points == result.points  # finished runs are read, not trained again
    assert {path: path.stat().st_mtime_ns for path in (config.out / "runs").glob("*/final.json")} == started


def test_intervals_and_the_count_against_random_by_hand(sweep) -> None:
    from bitplan.pareto.result import ParetoPoint
    from bitplan.pareto.summary import against_random, groups, wilson

    config, result = sweep
    template = result.points[0]

    def point(method: str, metric: float, loss: float, seed: int | None = None) -> ParetoPoint:
        return template.model_copy(update={"method": method, "budget": 1.5, "plan_seed": seed, "metric": metric,
                                           "loss": loss, "correct": round(metric * 3.6), "predictions": 360})

    randoms = [point("random", m, l, s) for s, (m, l) in enumerate([(60.0, 2.0), (70.0, 1.0), (80.0, 0.5)])]
    mine = point("A:C-", 75.0, 0.8)
    made = result.model_copy(update={"points": [*randoms, mine]})
    by_method = {entry.method: entry for entry in groups(made)}
    # mean 70, s = 10, n = 3: 70 ± 4.302653 · 10 / √3
    assert by_method["random"].metric == 70.0
    assert by_method["random"].low == pytest.approx(70 - 24.841377, abs=1e-5)
    assert by_method["random"].high == pytest.approx(70 + 24.841377, abs=1e-5)
    # one accuracy: Wilson's interval for 270 of 360, (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)
    low, high = wilson(270, 360)
    assert (by_method["A:C-"].low, by_method["A:C-"].high) == (low, high)
    assert low == pytest.approx(70.279, abs=1e-3) and high == pytest.approx(79.193, abs=1e-3)
    [row] = against_random(made)
    assert (row.beats_metric, row.beats_loss, row.randoms) == (2, 2, 3)  # 75 > 60, 70 (not 80); loss 0.8 < 2.0, 1.0 (not 0.5)


def test_a_perplexity_interval_never_reaches_below_one() -> None:
    """Random plans' perplexities spread from 12.8 to 436 (as on the LM at 3 bits): mean − t·s/√n < 0."""
    from bitplan.pareto.result import ParetoPoint
    from bitplan.pareto.summary import group

    values = [12.8, 14.0, 15.1, 17.9, 20.3, 25.6, 31.0, 60.2, 436.0]
    points = [
        ParetoPoint(method="random", budget=3.0, seed=None, plan_seed=s, avg_bits=2.9, mbit=1.0, bitops=1,
                    metric=v, metric_name="perplexity", loss=1.0, status="ok", plan=f"plans/r{s}.json")
        for s, v in enumerate(values)
    ]
    summary = group(points, points[0].metric_name)
    mean = sum(values) / len(values)
    assert summary.metric == pytest.approx(mean) and summary.low == 1.0 and summary.high > mean
