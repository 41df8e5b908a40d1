"""``bitplan sensitivity MODEL --data SPEC``: measured per-layer sensitivity, and how A/F/D predict it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.cli.common import JsonFlag, OutputPath, console, guarded, write_or_print
from bitplan.choices import SensitivityMethod


@guarded
def sensitivity(
    model: Annotated[str, typer.Argument(help="Model spec, as for `bitplan train`.")],
    data: Annotated[str, typer.Option("--data", help="Data spec: digits, cifar10:PATH, text:PATH, synthetic, ...")] = "digits",
    method: Annotated[SensitivityMethod, typer.Option("--method", help="fisher, loss-delta, sqnr or hessian.")] = SensitivityMethod.fisher,
    bits: Annotated[int, typer.Option("--bits", min=1, max=16, help="Weight bits the quantization error is taken at.")] = 4,
    batches: Annotated[int, typer.Option("--batches", min=1, help="Training batches to average over.")] = 8,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 128,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="checkpoint.pt of a `bitplan train` run (default: random init).")] = None,
    probes: Annotated[int, typer.Option("--probes", min=1, help="Rademacher probes per batch (hessian).")] = 8,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight ranges for Δw.")] = True,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Rank-correlate A, F, D, capacity, MACs with the measure.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Scatter plot per factor (PNG); implies --validate.")] = None,
    output: OutputPath = None,
    json_output: JsonFlag = False,
) -> None:
    """Measure how much quantizing each layer's weight hurts (larger = more sensitive)."""
    from bitplan.cli.sensitivity_render import render
    from bitplan.sensitivity_analysis import measure_sensitivity
    from bitplan.sensitivity_analysis import validate as correlations
    from bitplan.sensitivity_analysis.validate import scatter

    report = measure_sensitivity(
        model, data, method=method, bits=bits, batches=batches, batch_size=batch_size, seed=seed,
        checkpoint=checkpoint, probes=probes, per_channel=per_channel, device=device, progress=not json_output,
    )
    if validate or plot is not None:
        report = report.model_copy(update={"validation": correlations(report, seed=seed)})
    if plot is not None:
        scatter(report, plot)
    if output is not None:
        write_or_print(report.model_dump_json(indent=2), output)
    if json_output:
        write_or_print(report.model_dump_json(indent=2), None)
    else:
        render(report, console)


def register(app: typer.Typer) -> None:
    app.command("sensitivity")(sensitivity)
