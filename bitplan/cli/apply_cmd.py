"""``bitplan apply PLAN CHECKPOINT -o quantized.safetensors``: export a trained model's weights as codes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.cli.common import JsonFlag, console, guarded, write_or_print
from bitplan.cli.options import TrustModelSpec

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.apply.export import ApplyReport


@guarded
def apply_plan(
    plan: Annotated[Path, typer.Argument(help="The plan file the model was trained with.")],
    checkpoint: Annotated[Path, typer.Argument(help="A run's checkpoint.pt, or a saved state_dict.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .safetensors file to write.")],
    model: Annotated[str | None, typer.Option("--model", help="Model spec (default: the checkpoint's, else the plan's).")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Data spec: report the test metric before and after.")] = None,
    dequantized_out: Annotated[Path | None, typer.Option("--dequantized-out", help="Also write the dequantized state_dict here.")] = None,
    trust_model_spec: TrustModelSpec = False,
    json: JsonFlag = False,
) -> None:
    """Quantize a trained model's planned weights to integer codes (safetensors), report size and metric."""
    from bitplan.apply.export import export_quantized

    report = export_quantized(
        plan, checkpoint, output, model=model, data=data, dequantized_out=dequantized_out,
        trust_model_spec=trust_model_spec,
    )
    if json:
        write_or_print(report.model_dump_json(indent=2), None)
    else:
        console.print(_table(report))


def _table(report: ApplyReport) -> Table:
    from rich.table import Table

    table = Table(title=f"{report.model} → {report.out}")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("bytes", f"{report.bytes_fp32:,}", f"{report.bytes_file:,}")
    table.add_row("MBit", f"{report.mbit_fp32:.3f}", f"{report.mbit_quantized:.3f}")
    if report.metric_name is not None:
        table.add_row(report.metric_name, f"{report.metric_fp32:.2f}", f"{report.metric_quantized:.2f}")
    histogram: dict[int, int] = {}
    for layer in report.layers:
        histogram[layer.bits] = histogram.get(layer.bits, 0) + 1
    table.caption = "weights as codes: " + ", ".join(f"{count}×{bits}-bit" for bits, count in sorted(histogram.items()))
    return table


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_plan)
