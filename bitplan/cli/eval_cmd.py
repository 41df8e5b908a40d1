"""``bitplan eval MODEL --data DATA --checkpoint RUN [--plan PLAN]``: test metric and loss of a trained model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.cli.common import emit, provided, write_or_print
from bitplan.cli.options import (
    MODEL_PANEL,
    Checkpoint,
    Data,
    Device_,
    Format,
    InputShape,
    Json,
    Model,
    Output,
    PlanFile,
    WeightOnly,
    cli_command,
    resolve_format,
)

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.train import EvalResult


@cli_command(aliases=("batch_size_alias",))
def eval(  # noqa: A001 (the command's name)
    model: Model,
    data: Data = None,
    checkpoint: Checkpoint = None,
    plan: PlanFile = None,
    weight_only: WeightOnly = False,
    input_shape: InputShape = None,
    device: Device_ = None,
    batch_size: Annotated[int | None, typer.Option("--batch", min=1, help="Test batch size (default 256).", rich_help_panel=MODEL_PANEL)] = None,
    output: Output = None,
    format: Format = None,
    json: Json = False,
) -> None:
    """Test metric (accuracy, or perplexity) and loss of a trained model; --plan quantizes it after training."""
    from bitplan.choices import DEFAULT_DATA
    from bitplan.train import evaluate_model

    output_format = resolve_format(format, json)
    given = {
        "checkpoint": checkpoint, "device": device, "batch_size": batch_size, "input_shape": input_shape,
        "weight_only": weight_only,
    }
    options = provided(given)
    result = evaluate_model(model, data or DEFAULT_DATA, plan=plan, **options)
    if output is not None:
        write_or_print(result.model_dump_json(indent=2), output)
    emit(result, [eval_table(result)], output_format)


def eval_table(result: EvalResult) -> Table:
    """One row: what was evaluated and its metric and loss."""
    from rich.table import Table

    table = Table(title=f"{result.model} on {result.data}")
    for column in ("checkpoint", "plan", "mean bits", "MBit", result.metric_name.value, "test loss", "predictions"):
        table.add_column(column, justify="left" if column in ("checkpoint", "plan") else "right")
    table.add_row(
        result.checkpoint or "(initialisation)", result.plan or "(full precision)",
        "32" if result.avg_bits is None else f"{result.avg_bits:.3f}", "" if result.mbit is None else f"{result.mbit:.4f}",
        f"{result.metric:.3f}", f"{result.loss:.4f}", str(result.predictions),
    )
    return table


def register(app: typer.Typer) -> None:
    """Add ``bitplan eval`` to ``app``."""
    app.command("eval")(eval)
