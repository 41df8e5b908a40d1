"""``bitplan diff A.json B.json``: two plans' per-layer bits side by side, with size and BitOPs deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.cli.common import FormatOption, JsonFlag, OutputFormat, OutputPath, console, guarded, write_or_print


def register(app: typer.Typer) -> None:
    """Add ``bitplan diff`` to ``app``."""
    app.command("diff")(diff)


@guarded
def diff(
    plan_a: Annotated[Path, typer.Argument(help="Plan A (the reference; deltas are B − A).")],
    plan_b: Annotated[Path, typer.Argument(help="Plan B.")],
    format: FormatOption = OutputFormat.table,
    json_output: JsonFlag = False,
    output: OutputPath = None,
) -> None:
    """Compare two plans: each layer's bits in A and B, and how MBit and BitOPs change from A to B."""
    from bitplan.plan.diff import diff_plan_files
    from bitplan.plan.render import diff_csv, diff_markdown, diff_tables

    result = diff_plan_files(plan_a, plan_b)
    chosen = OutputFormat.json if json_output else format
    if chosen is OutputFormat.table and output is None:
        for table in diff_tables(result):
            console.print(table)
        return
    text = {
        OutputFormat.json: lambda: result.model_dump_json(indent=2),
        OutputFormat.csv: lambda: diff_csv(result),
        OutputFormat.md: lambda: diff_markdown(result),
        OutputFormat.table: lambda: diff_markdown(result),
    }[chosen]()
    write_or_print(text, output)
