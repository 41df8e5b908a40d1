"""``run_pareto``: every method's plans at every budget, each scored on the trained model.

Layout of a sweep folder::

    pareto.json  pareto.csv  pareto.md  pareto.png  report.html
    plans/<method>-<budget>[-r<seed>].json    one plan per point (random: one per plan seed)
    points/<key>.json                         PTQ: the evaluation of one plan, keyed by what it depends on
    runs/<plan>-seed<s>-<key>/                QAT: one fine-tuning run per (plan, seed), as `bitplan train` writes
    sections/60-pareto.html                   the report section, for `bitplan compare`'s report.html too

Everything that can refuse the input — methods, budgets, model, data, checkpoint, every plan — is
checked before the folder is created or locked, so bad input leaves nothing behind. A rerun reads
finished points (``points/``, or a run's ``final.json``) instead of computing them again; a point's
key hashes its plan, the checkpoint's bytes, the data, the evaluation settings and the bitplan
version, so anything that changes a result changes the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bitplan.atomic import atomic_write_text
from bitplan.choices import EvalMode
from bitplan.errors import TrainingError
from bitplan.pareto.methods import PlannedPoint, check_budgets, parse_methods, sweep_plans
from bitplan.pareto.report import write_outputs
from bitplan.pareto.result import ParetoConfig, ParetoPoint, ParetoResult, SkippedPoint
from bitplan.plan import save_plan
from bitplan.sensitivity_analysis.at_budget import methods_at_budget
from bitplan.data import Task
from bitplan.train import MetricName, RunResult, TrainConfig, train_run
from bitplan.train.evaluate import Evaluation, Evaluator, weight_mean_bits
from bitplan.train.folder import FINAL_FILE, check_grid_folder, hold_folder
from bitplan.train.loop import read_result

PLANS_DIR = "plans"
POINTS_DIR = "points"
RUNS_DIR = "runs"
KEY_LENGTH = 16


def run_pareto(config: ParetoConfig, *, progress: bool = True) -> ParetoResult:
    """Score every method's plans at every budget on the trained model and write the sweep folder.

    Args:
        config: Model, data, checkpoint, levels, budgets, methods, PTQ or QAT, seeds, out.
        progress: Progress bars on stderr.

    Returns:
        The sweep (also ``config.out / "pareto.json"``).

    Raises:
        PlanError: An unknown method or a budget outside the levels (nothing is written).
        SpecError, DataError, TrainingError: Model, data or checkpoint unusable, or they do not fit
            (nothing is written); ``config.out`` is a training run folder.
        FolderBusyError: Another process holds ``config.out``.

    Example:
        >>> config = ParetoConfig(model="zoo:digits_cnn", data="digits", checkpoint=Path("runs/digits"),
        ...                       levels=[1, 2, 3, 4, 8], budgets=[1.5, 2], methods=["uniform", "random", "fisher"])
        >>> result = run_pareto(config)  # doctest: +SKIP
        >>> result.of("fisher")[0].metric  # doctest: +SKIP
        93.1
    """
    methods = parse_methods(config.methods)
    check_budgets(config.budgets, config.levels)
    check_grid_folder(config.out)
    console = Console(stderr=True, quiet=not progress)
    evaluator = Evaluator.load(
        config.model, config.data, checkpoint=config.checkpoint, batch_size=config.batch_size, device=config.device,
        input_shape=config.input_shape,
    )
    planner = methods_at_budget(
        config.model, config.data, levels=config.levels, checkpoint=config.checkpoint,
        batches=config.sensitivity_batches, seed=config.seeds[0], device=config.device, weight_only=config.weight_only,
    )
    with console.status("making every plan (measuring each sensitivity once)"):
        planned, not_planned = sweep_plans(planner, methods, config.budgets, config.random_plans)
    skipped = [SkippedPoint(method=s.method, budget=s.budget, reason=s.reason) for s in not_planned]
    template = _template(config) if config.eval is EvalMode.qat else None
    with hold_folder(config.out, "this sweep (`-o`)"):
        for point in planned:
            save_plan(point.plan, config.out / _plan_file(point))
        baseline = evaluator.evaluate(None)
        digest = _checkpoint_digest(config.checkpoint)
        for note in skipped:
            console.print(f"[yellow]note:[/] no {note.method} plan at {note.budget:g} bits: {note.reason}")
        points = _score(config, planned, evaluator, digest, template, console, progress)
        from bitplan import __version__

        result = ParetoResult(
            config=config, model=evaluator.spec, metric_name=evaluator.metric_name, baseline=baseline,
            points=points, skipped=skipped, bitplan_version=__version__,
        )
        write_outputs(result, config.out)
        console.print(f"wrote {config.out / 'pareto.json'}, pareto.md, pareto.png and report.html")
        return result


def _template(config: ParetoConfig) -> TrainConfig:
    """The fine-tuning recipe: the config's (or one epoch of the defaults) starting from the checkpoint."""
    base = config.train or TrainConfig(epochs=1)
    return base.model_copy(update={
        "model": config.model, "data": config.data, "input_shape": config.input_shape, "init": config.checkpoint,
        "device": config.device, "plan": None, "factor": None,
    })


def _plan_file(point: PlannedPoint) -> str:
    return f"{PLANS_DIR}/{point.slug}.json"


def _checkpoint_digest(checkpoint: Path | None) -> str:
    if checkpoint is None:
        return "initialisation"
    from bitplan.export.checkpoint import checkpoint_file

    return hashlib.sha256(checkpoint_file(checkpoint).read_bytes()).hexdigest()


def _key(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def _score(
    config: ParetoConfig, planned: list[PlannedPoint], evaluator: Evaluator, digest: str, template: TrainConfig | None,
    console: Console, progress: bool,
) -> list[ParetoPoint]:
    """Every point's metric: cached ones read, the others evaluated (PTQ) or fine-tuned (QAT)."""
    seeds = config.seeds if template is not None else [None]
    jobs = [(point, seed) for point in planned for seed in seeds]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    points = []
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task("scoring plans", total=len(jobs))
        for point, seed in jobs:
            bar.update(task, description=f"{point.slug}" + ("" if seed is None else f" seed {seed}"))
            if template is None:
                points.append(_ptq_point(config, point, evaluator, digest))
            else:
                points.append(_qat_point(config, point, seed, template, evaluator))
            bar.advance(task)
    return points


def _point(point: PlannedPoint, seed: int | None, evaluation: Evaluation | None, metric_name, status: str,
           run: str | None = None) -> ParetoPoint:
    plan = point.plan
    return ParetoPoint(
        method=point.method, budget=point.budget, seed=seed, plan_seed=point.plan_seed,
        avg_bits=weight_mean_bits(plan), mbit=plan.estimates.mbit, bitops=plan.estimates.bitops_forward,
        metric=evaluation.metric if evaluation else None, metric_name=metric_name,
        loss=evaluation.loss if evaluation else None, correct=evaluation.correct if evaluation else None,
        predictions=evaluation.predictions if evaluation else None, status=status, plan=_plan_file(point), run=run,
    )


def _ptq_point(config: ParetoConfig, point: PlannedPoint, evaluator: Evaluator, digest: str) -> ParetoPoint:
    """Read the plan's cached evaluation, or evaluate it and cache it (identical plans share one file)."""
    from bitplan import __version__

    key = _key({
        "plan": point.plan.model_dump(mode="json"), "checkpoint": digest, "model": config.model, "data": config.data,
        "input_shape": config.input_shape, "batch": config.batch_size, "device": evaluator.device.type,
        "bitplan": __version__,
    })
    path = config.out / POINTS_DIR / f"{key}.json"
    evaluation = Evaluation.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None
    if evaluation is None:
        evaluation = evaluator.evaluate(point.plan)
        atomic_write_text(path, evaluation.model_dump_json(indent=2) + "\n")
    return _point(point, None, evaluation, evaluator.metric_name, "ok")


def _qat_point(
    config: ParetoConfig, point: PlannedPoint, seed: int, template: TrainConfig, evaluator: Evaluator
) -> ParetoPoint:
    """Fine-tune from the checkpoint with the plan (resuming an interrupted run), or read the finished run."""
    from bitplan.compare.runs import run_key

    run_config = TrainConfig.model_validate({**template.model_dump(), "plan": point.plan, "seed": seed})
    name = f"{point.slug}-seed{seed}-{run_key(run_config)}"
    directory = config.out / RUNS_DIR / name
    run_config = run_config.model_copy(update={"out": directory})
    finished = read_result(directory) if (directory / FINAL_FILE).is_file() else None
    result = finished or train_run(run_config, resume=directory.exists(), progress=False)
    if result.status == "ok" and (result.metric is None or result.test_loss is None):
        raise TrainingError(f"run `{directory}` finished without a test metric; delete the folder and run again")
    evaluation = None
    if result.status == "ok":
        evaluation = _final_evaluation(result, evaluator)
    return _point(point, seed, evaluation, evaluator.metric_name, result.status, run=f"{RUNS_DIR}/{name}")


def _final_evaluation(result: RunResult, evaluator: Evaluator) -> Evaluation:
    """The run's last test evaluation (metric and loss from ``final.json``; counts from its test split)."""
    predictions = _predictions(evaluator)
    accuracy = result.metric if evaluator.metric_name is MetricName.accuracy else None
    correct = round(accuracy * predictions / 100) if accuracy is not None else 0
    return Evaluation(metric_name=evaluator.metric_name, metric=result.metric, loss=result.test_loss,
                      correct=correct, predictions=predictions)


def _predictions(evaluator: Evaluator) -> int:
    dataset = evaluator.data.test
    per_sample = evaluator.data.input_shape[-1] if evaluator.data.task is Task.language_model else 1
    return len(dataset) * per_sample

