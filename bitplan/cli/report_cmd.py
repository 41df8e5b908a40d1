"""``bitplan report DIR``: re-render a grid's tables, figures and report.html, or draw a training run's curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.cli.common import JsonFlag, console, err_console, guarded, write_or_print


@guarded
def report(
    directory: Annotated[Path, typer.Argument(help="A grid directory (bitplan compare --out) or a run directory (bitplan train --out).")],
    json: JsonFlag = False,
) -> None:
    """Re-render results.md/.csv/.json, the figures and report.html from the files on disk."""
    from bitplan.compare import GridResult
    from bitplan.compare import report as render

    result = render(directory)
    if json:
        write_or_print(result.model_dump_json(indent=2), None)
    elif isinstance(result, GridResult):
        from bitplan.cli.compare_cmd import grid_table

        console.print(grid_table(result))
        err_console.print(f"wrote {directory / 'results.md'} and {directory / 'report.html'}")
    else:
        for run, metric in result.final.items():
            value = "unfinished" if metric is None else f"{metric:.3f}"
            console.print(f"{run}: final {result.metric_name.value} {value}")
        err_console.print("wrote " + ", ".join(result.files))


def register(app: typer.Typer) -> None:
    """Add ``bitplan report`` to ``app``."""
    app.command("report")(report)
