"""``bitplan export MODEL --plan PLAN --format FORMAT -o OUT``: a planned model in a format other stacks load.

``bitplan apply PLAN CHECKPOINT -o OUT`` is kept, hidden, for one release as ``export --format packed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.choices import ExportFormat, OutputFormat
from bitplan.cli.common import emit, err_console
from bitplan.cli.options import OUTPUT_PANEL, PLAN_PANEL, Checkpoint, Json, Model, cli_command

if TYPE_CHECKING:
    from bitplan.export import ExportReport


@cli_command()
def export(
    model: Model,
    plan: Annotated[Path, typer.Option("--plan", help="The plan file (from `bitplan plan`).", rich_help_panel=PLAN_PANEL)],
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="Target format (docs/export.md).", rich_help_panel=OUTPUT_PANEL)
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write (a directory for compressed-tensors).", rich_help_panel=OUTPUT_PANEL)
    ],
    checkpoint: Checkpoint = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse instead of widening a width, leaving a layer out, or exporting a checkpoint trained with another plan.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    allow_nonfinite: Annotated[
        bool,
        typer.Option(
            "--allow-nonfinite",
            help="Export weights holding NaN/Inf as the format allows (planned ones stay float32) instead of refusing.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    json: Json = False,
) -> None:
    """Export a model quantized as its plan says: packed, onnx, torchao, compressed-tensors or modelopt."""
    from bitplan.export import export_model

    _render(export_model(model, plan, format, output, checkpoint=checkpoint, strict=strict, allow_nonfinite=allow_nonfinite), json)


@cli_command()
def apply_alias(
    plan: Annotated[Path, typer.Argument(help="The plan file the model was trained with.")],
    checkpoint: Annotated[Path, typer.Argument(help="A run's checkpoint.pt, or a saved state_dict.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .safetensors file to write.")],
    model: Annotated[str | None, typer.Option("--model", help="Model spec (default: the checkpoint's, else the plan's).")] = None,
    json: Json = False,
) -> None:
    """Deprecated: `bitplan export MODEL --plan PLAN --format packed --checkpoint CHECKPOINT -o OUT`."""
    from bitplan.export import export_model

    err_console.print("[yellow]`bitplan apply` is deprecated; use `bitplan export MODEL --plan PLAN --format packed`.[/]")
    _render(export_model(model, plan, ExportFormat.packed, output, checkpoint=checkpoint), json)


def _render(report: ExportReport, json: bool) -> None:
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    from rich.table import Table

    table = Table(title=f"{report.model} → {report.output} ({report.format.value})")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("bytes written", f"{report.bytes:,}")
    table.add_row("plan MBit (fp32 MBit)", f"{report.plan_mbit:.3f} ({report.fp32_mbit:.3f})")
    table.add_row("quantized weights (in this format)", str(report.layers_quantized))
    table.add_row("grid", report.zero_point.value)
    table.add_row("seconds", f"{report.seconds:.2f}")
    emit(report, [table], OutputFormat.json if json else OutputFormat.table)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("apply", hidden=True)(apply_alias)
