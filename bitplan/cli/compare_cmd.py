"""``bitplan compare``: the paper's experiment grid — every factor × strategy plan, trained for every seed.

Every default lives in ``bitplan.compare.GridConfig`` and ``bitplan.train.TrainConfig``; this
command forwards only the options the user gave, calls ``run_grid`` and prints Table 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.cli.common import emit, provided
from bitplan.cli.options import (
    OUTPUT_PANEL,
    PLAN_PANEL,
    TRAINING,
    TRAINING_PANEL,
    Data,
    Format,
    InputShape,
    Json,
    Model,
    Progress,
    Seeds,
    LEVELS,
    cli_command,
    parse_levels_group,
    parse_seeds,
    resolve_format,
)
from bitplan.choices import Factor, Strategy

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.compare import GridResult


def parse_choices(text: str, kind: type, option: str) -> list:
    """``"U,C+,C-"`` -> [Strategy.U, ...]; a Unicode minus (C−) is read as ``-``."""
    names = [part.strip().replace("−", "-") for part in text.split(",") if part.strip()]
    choices = ",".join(member.value for member in kind)
    try:
        values = [kind(name) for name in names]
    except ValueError:
        values = []
    if not values:
        raise typer.BadParameter(f"`{option} {text}` must be a comma-separated subset of {choices}")
    return values


@cli_command(TRAINING, LEVELS, aliases=("act_bits", "grad_bits", "grad_quant", "grad_samples", "batch_size_alias", "out"))
def compare(
    model: Model,
    data: Data = None,
    input_shape: InputShape = None,
    factors: Annotated[str | None, typer.Option("--factors", help="Factors, comma-separated (default A,F,D).", rich_help_panel=PLAN_PANEL)] = None,
    strategies: Annotated[
        str | None, typer.Option("--strategies", help="Strategies, comma-separated (default U,C+,C-,R).", rich_help_panel=PLAN_PANEL)
    ] = None,
    match_size: Annotated[
        bool | None,
        typer.Option("--match-size/--no-match-size", help="Plan C+, C-, R within U's average bits (similar size).", rich_help_panel=PLAN_PANEL),
    ] = None,
    seeds: Seeds = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Runs trained at once, each in its own process.", rich_help_panel=TRAINING_PANEL)] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Grid folder (default runs/compare).", rich_help_panel=OUTPUT_PANEL)] = None,
    progress: Progress = True,
    format: Format = None,
    json: Json = False,
    *,
    training: dict,
    widths: dict,
) -> None:
    """Train every factor × strategy plan for every seed; write Tables 1–2, figures and report.html."""
    from bitplan.compare import GridConfig, run_grid
    from bitplan.train import make_config

    output_format = resolve_format(format, json)
    train_options = {"model": model, "data": data, "input_shape": input_shape, **training}
    grid_options = {
        "factors": parse_choices(factors, Factor, "--factors") if factors else None,
        "strategies": parse_choices(strategies, Strategy, "--strategies") if strategies else None,
        **parse_levels_group(widths),
        "seeds": parse_seeds(seeds) if seeds else None, "match_size": match_size, "out": output,
    }
    template = make_config(provided(train_options))
    config = GridConfig(train=template, **provided(grid_options))
    result = run_grid(config, jobs=jobs, progress=progress)
    emit(result, [grid_table(result)], output_format)


def grid_table(result: GridResult) -> Table:
    """Table 1 and 2 in one terminal table: mean (variance) and MBit per strategy and factor."""
    from rich.table import Table

    from bitplan.compare.tables import best_rows, metric_short

    short = metric_short(result.metric_name)
    factors = [factor.value for factor in result.config.factors]
    best = best_rows(result)
    table = Table(title=f"{result.model} on {result.data}: {result.runs_finished}/{result.runs_total} runs finished")
    table.add_column("#Bit")
    table.add_column("Strategy")
    for factor in factors:
        table.add_column(f"{short}-{factor} (var)", justify="right")
        table.add_column(f"MBit-{factor}", justify="right")
    by_cell = {(row.factor.value, row.strategy.value): row for row in result.rows}
    for strategy in (strategy.value for strategy in result.config.strategies):
        cells = [by_cell.get((factor, strategy)) for factor in factors]
        bits = next((row.bits for row in cells if row is not None), "")
        values = []
        for factor, row in zip(factors, cells):
            if row is None:
                values += ["", ""]
                continue
            if row.mean is None:
                outcome = "pending" if row.pending else "failed"
            else:
                outcome = f"{row.mean:.2f} ({row.variance:.3f})"
                outcome = f"[bold green]{outcome}[/]" if (factor, strategy) in best else outcome
            if row.failed:
                outcome += f" [red]{row.failed} failed[/]"
            values += [outcome, f"{row.mbit:.4g}"]
        table.add_row(bits, strategy, *values)
    table.caption = f"variance: {result.variance}; files in {result.config.out}"
    return table


def register(app: typer.Typer) -> None:
    """Add ``bitplan compare`` to ``app``."""
    app.command("compare")(compare)
