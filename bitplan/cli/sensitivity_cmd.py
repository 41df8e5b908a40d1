"""``bitplan sensitivity MODEL --data SPEC``: measured per-layer sensitivity, and how A/F/D predict it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.choices import DEFAULT_DATA, OutputFormat, SensitivityMethod
from bitplan.cli.common import emit, provided, write_or_print
from bitplan.cli.options import (
    OUTPUT_PANEL,
    Batch,
    Checkpoint,
    Data,
    Device_,
    Format,
    Json,
    Model,
    Output,
    WeightGranularity_,
    cli_command,
    resolve_format,
)

MEASURE_PANEL = "Measure"


@cli_command(aliases=("batch_size_alias", "per_channel"))
def sensitivity(
    model: Model,
    data: Data = None,
    checkpoint: Checkpoint = None,
    device: Device_ = None,
    method: Annotated[
        SensitivityMethod | None, typer.Option("--method", help="fisher (default), loss-delta, sqnr or hessian.", rich_help_panel=MEASURE_PANEL)
    ] = None,
    bits: Annotated[
        int | None, typer.Option("--bits", min=1, max=16, help="Weight bits the quantization error is taken at (default 4).", rich_help_panel=MEASURE_PANEL)
    ] = None,
    weight_granularity: WeightGranularity_ = None,
    batches: Annotated[int | None, typer.Option("--batches", min=1, help="Training batches to average over (default 8).", rich_help_panel=MEASURE_PANEL)] = None,
    batch_size: Batch = None,
    probes: Annotated[int | None, typer.Option("--probes", min=1, help="Rademacher probes per batch (hessian).", rich_help_panel=MEASURE_PANEL)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed of the batches drawn (default 0).", rich_help_panel=MEASURE_PANEL)] = None,
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="Rank-correlate A, F, D, capacity, MACs with the measure.", rich_help_panel=MEASURE_PANEL)
    ] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Scatter plot per factor (PNG); implies --validate.", rich_help_panel=OUTPUT_PANEL)] = None,
    output: Output = None,
    format: Format = None,
    json: Json = False,
) -> None:
    """Measure how much quantizing each layer's weight hurts (larger = more sensitive)."""
    from bitplan.cli.sensitivity_render import tables
    from bitplan.sensitivity_analysis import measure_sensitivity
    from bitplan.sensitivity_analysis import validate as correlations
    from bitplan.sensitivity_analysis.validate import scatter

    output_format = resolve_format(format, json)
    given = {
        "method": method, "bits": bits, "batches": batches, "batch_size": batch_size, "seed": seed, "checkpoint": checkpoint,
        "probes": probes, "weight_granularity": weight_granularity, "device": device,
    }
    options = provided(given)
    report = measure_sensitivity(model, data or DEFAULT_DATA, progress=output_format is OutputFormat.table, **options)
    if validate or plot is not None:
        report = report.model_copy(update={"validation": correlations(report, seed=report.seed)})
    if plot is not None:
        scatter(report, plot)
    if output is not None:
        write_or_print(report.model_dump_json(indent=2), output)
    emit(report, tables(report), output_format)


def register(app: typer.Typer) -> None:
    app.command("sensitivity")(sensitivity)
