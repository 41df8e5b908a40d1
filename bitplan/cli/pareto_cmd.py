"""``bitplan pareto``: every method's plans at every mean-bits budget, scored on a trained model.

Every default lives in ``bitplan.pareto.ParetoConfig`` (and ``TrainConfig`` for ``--eval qat``);
this command parses the lists, calls ``run_pareto`` and prints the summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.choices import EvalMode
from bitplan.cli.common import emit, provided
from bitplan.cli.options import (
    BUDGET_PANEL,
    OUTPUT_PANEL,
    PLAN_PANEL,
    TRAINING,
    TRAINING_PANEL,
    Checkpoint,
    Data,
    Format,
    InputShape,
    Json,
    Levels,
    Model,
    Progress,
    Seeds,
    WeightOnly,
    cli_command,
    parse_seeds,
    resolve_format,
)

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.pareto import ParetoResult

DEFAULT_METHODS = "uniform,random,first-last,A:C-,F:C+,dpc,fisher,sqnr"


def parse_budgets(text: str) -> list[float]:
    """``"1.5,2,3"`` -> [1.5, 2.0, 3.0]."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise typer.BadParameter(f"`--budget-avg-bits {text}` must be numbers joined by commas, e.g. `1.5,2,3,4`")
    return values


@cli_command(TRAINING, aliases=("batch_size_alias", "out"))
def pareto(
    model: Model,
    data: Data = None,
    checkpoint: Checkpoint = None,
    input_shape: InputShape = None,
    levels: Levels = None,
    budget_avg_bits: Annotated[
        str | None, typer.Option("--budget-avg-bits", help="Mean-bits budgets, comma-separated, e.g. 1.5,2,3,4.", rich_help_panel=BUDGET_PANEL)
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option("--methods", help=f"Methods, comma-separated (default {DEFAULT_METHODS}; also hessian, loss-delta, "
                     "recommended, any FACTOR:STRATEGY).", rich_help_panel=PLAN_PANEL),
    ] = None,
    random_plans: Annotated[int | None, typer.Option("--random-plans", min=1, help="Random plans per budget (default 9).", rich_help_panel=PLAN_PANEL)] = None,
    weight_only: WeightOnly = False,
    eval: Annotated[  # noqa: A002 (the option's name)
        EvalMode | None, typer.Option("--eval", help="ptq: apply each plan to the checkpoint; qat: fine-tune --epochs first.", rich_help_panel=TRAINING_PANEL)
    ] = None,
    seeds: Seeds = None,
    batches: Annotated[int | None, typer.Option("--batches", min=1, help="Training batches each sensitivity measure averages over (default 8).", rich_help_panel=PLAN_PANEL)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Sweep folder (default runs/pareto).", rich_help_panel=OUTPUT_PANEL)] = None,
    progress: Progress = True,
    format: Format = None,
    json: Json = False,
    *,
    training: dict,
) -> None:
    """Accuracy (or perplexity) against mean bits for every method, beside uniform and random plans."""
    from bitplan.choices import DEFAULT_DATA
    from bitplan.errors import PlanError
    from bitplan.pareto import ParetoConfig, run_pareto
    from bitplan.plan.planner import parse_levels
    from bitplan.train import make_config

    output_format = resolve_format(format, json)
    if levels is None or budget_avg_bits is None:
        raise PlanError("`bitplan pareto` needs --levels (e.g. 1,2,3,4,8) and --budget-avg-bits (e.g. 1.5,2,3,4).")
    data = data or DEFAULT_DATA
    device = training.get("device")
    template = make_config({"model": model, "data": data, **training}) if eval is EvalMode.qat else None
    given = {
        "checkpoint": checkpoint, "input_shape": input_shape, "levels": parse_levels(levels),
        "budgets": parse_budgets(budget_avg_bits), "methods": (methods or DEFAULT_METHODS).split(","),
        "random_plans": random_plans, "weight_only": weight_only, "eval": eval,
        "seeds": parse_seeds(seeds) if seeds else None, "sensitivity_batches": batches,
        "batch_size": training.get("batch_size"), "device": device, "train": template, "out": output,
    }
    config = ParetoConfig(model=model, data=data, **provided(given))
    result = run_pareto(config, progress=progress)
    emit(result, [pareto_table(result)], output_format)


def pareto_table(result: ParetoResult) -> Table:
    """The summary: one row per (method, budget) with its mean, interval and loss."""
    from rich.table import Table

    from bitplan.pareto.report import describe, summary_header, summary_rows

    table = Table(title=f"bitplan pareto: {result.model}", caption=describe(result))
    for index, column in enumerate(summary_header(result)):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in summary_rows(result):
        table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    """Add ``bitplan pareto`` to ``app``."""
    app.command("pareto")(pareto)
