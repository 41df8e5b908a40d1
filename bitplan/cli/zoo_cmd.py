"""``bitplan zoo``: the built-in models with their default inputs, tasks, sizes and options."""

from __future__ import annotations

import typer

from bitplan.cli.common import emit
from bitplan.cli.options import Format, Json, cli_command, resolve_format


@cli_command()
def zoo(format: Format = None, json: Json = False) -> None:
    """List the built-in models (random init; nothing is downloaded). Use them as zoo:NAME?option=value."""
    from rich.table import Table

    from bitplan.zoo import catalog

    output_format = resolve_format(format, json)
    models = catalog()
    table = Table(title="bitplan zoo (use as zoo:NAME?option=value)")
    table.add_column("model", style="bold")
    table.add_column("task")
    table.add_column("default input")
    table.add_column("params", justify="right")
    table.add_column("options (defaults)")
    table.add_column("description")
    for model in models:
        options = ", ".join(f"{option.name}={_format_default(option.default)}" for option in model.options)
        shape = "×".join(str(size) for size in model.input_shape)
        table.add_row(
            model.name, model.task.value, f"{shape} {model.input_dtype}", f"{model.params:,}", options, model.description
        )
    emit(models, [table], output_format)


def _format_default(value: object) -> str:
    """``3,15,3`` for lists (as written in a spec), plain text otherwise."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def register(app: typer.Typer) -> None:
    app.command("zoo")(zoo)
