"""``bitplan diff A.json B.json``: two plans' per-layer bits side by side, with size and BitOPs deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.choices import OutputFormat
from bitplan.cli.common import console, write_or_print
from bitplan.cli.options import Format, Json, Output, cli_command, resolve_format


def register(app: typer.Typer) -> None:
    """Add ``bitplan diff`` to ``app``."""
    app.command("diff")(diff)


@cli_command()
def diff(
    plan_a: Annotated[Path, typer.Argument(metavar="A", help="Plan A, the reference (deltas are B − A).", show_default=False)],
    plan_b: Annotated[Path, typer.Argument(metavar="B", help="Plan B.", show_default=False)],
    across_architectures: Annotated[
        bool,
        typer.Option("--across-architectures", help="Compare plans of two architectures (layers matched by name only)."),
    ] = False,
    output: Output = None,
    format: Format = None,
    json: Json = False,
) -> None:
    """Compare two plans: each layer's bits in A and B, and how MBit and BitOPs change from A to B."""
    from bitplan.plan.diff import diff_plan_files
    from bitplan.plan.render import diff_csv, diff_markdown, diff_tables

    chosen = resolve_format(format, json)
    result = diff_plan_files(plan_a, plan_b, across_architectures=across_architectures)
    if chosen is OutputFormat.table and output is None:
        for table in diff_tables(result):
            console.print(table)
        return
    text = {
        OutputFormat.json: lambda: result.model_dump_json(indent=2),
        OutputFormat.csv: lambda: diff_csv(result),
        OutputFormat.md: lambda: diff_markdown(result),
        OutputFormat.table: lambda: diff_markdown(result),  # a table written to a file is its Markdown
    }[chosen]()
    write_or_print(text, output)
