"""``bitplan report DIR``: re-render a grid's tables, figures and report.html, or draw a training run's curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.choices import OutputFormat
from bitplan.cli.common import console, emit, err_console, write_or_print
from bitplan.cli.options import Format, Json, cli_command, resolve_format


@cli_command()
def report(
    directory: Annotated[
        Path, typer.Argument(help="A grid (bitplan compare -o), a sweep (bitplan pareto -o) or a run directory (bitplan train -o).")
    ],
    format: Format = None,
    json: Json = False,
) -> None:
    """Re-render results.md/.csv/.json, the figures and report.html from the files on disk."""
    from bitplan.compare import GridResult
    from bitplan.compare import report as render

    output_format = resolve_format(format, json)
    from bitplan.pareto.report import is_sweep, render_pareto

    if is_sweep(directory):
        from bitplan.cli.pareto_cmd import pareto_table

        sweep = render_pareto(directory)
        emit(sweep, [pareto_table(sweep)], output_format)
        err_console.print(f"wrote {directory / 'pareto.md'} and {directory / 'report.html'}")
        return
    result = render(directory)
    if isinstance(result, GridResult):
        from bitplan.cli.compare_cmd import grid_table

        emit(result, [grid_table(result)], output_format)
        err_console.print(f"wrote {directory / 'results.md'} and {directory / 'report.html'}")
    elif output_format is OutputFormat.json:
        write_or_print(result.model_dump_json(indent=2), None)
    else:
        for run, metric in result.final.items():
            value = "unfinished" if metric is None else f"{metric:.3f}"
            console.print(f"{run}: final {result.metric_name.value} {value}")
        err_console.print("wrote " + ", ".join(result.files))


def register(app: typer.Typer) -> None:
    """Add ``bitplan report`` to ``app``."""
    app.command("report")(report)
