"""``bitplan profile MODEL``: every GEMM's accumulation, usage frequency, depth, params and MACs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.profile.schema import ModelProfile

from bitplan.cli.common import FormatOption, OutputFormat, OutputPath, console, err_console, guarded, write_or_print

ModelArgument = Annotated[str, typer.Argument(help="zoo:NAME[?k=v], file.py:factory, pkg.module:factory, torchvision:NAME, hf:TYPE or model.onnx")]
InputShapeOption = Annotated[str | None, typer.Option("--input-shape", help="Example input, e.g. 1x3x32x32 or 1x128:int64 (several joined by ',').")]
BatchOption = Annotated[int | None, typer.Option("--batch", help="Batch size (leading dimension) of the example input.")]


@guarded
def profile(
    model: ModelArgument,
    input_shape: InputShapeOption = None,
    batch: BatchOption = None,
    format: FormatOption = OutputFormat.table,
    output: OutputPath = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write accumulation/frequency per layer to this PNG.")] = None,
    tracer: Annotated[str, typer.Option("--tracer", help="auto (record, then torch.export), record, or export.")] = "auto",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a weight is read by an op bitplan cannot count, or by none.")] = False,
) -> None:
    """Profile every GEMM-like op of a model (traced on meta tensors: no weights or activations allocated)."""
    from bitplan.profile import render
    from bitplan.spec import profile_spec

    if tracer not in ("auto", "record", "export"):
        raise typer.BadParameter(f"`--tracer {tracer}` is not one of auto, record, export")
    result = profile_spec(model, input_shape=input_shape, batch=batch, tracer=tracer)
    _warn_uncovered(result, strict)
    if plot is not None:
        render.plot(result, plot)
    if format is OutputFormat.table and output is None:
        console.print(render.to_table(result))
        return
    text = {
        OutputFormat.json: lambda: result.model_dump_json(indent=2),
        OutputFormat.csv: lambda: render.to_csv(result),
        OutputFormat.md: lambda: render.to_markdown(result),
        OutputFormat.table: lambda: result.model_dump_json(indent=2),
    }[format]()
    write_or_print(text, output)
    if strict and result.suspect_uncovered:
        raise typer.Exit(1)


def _warn_uncovered(result: ModelProfile, strict: bool) -> None:
    """One warning line (stderr) when a weight may have a GEMM missing from the profile."""
    suspect = result.suspect_uncovered
    if suspect:
        first = suspect[0]
        err_console.print(
            f"[yellow]warning:[/] {len(suspect)} weight(s) read by no GEMM bitplan can count, so GEMMs may be "
            f"missing: `{first.parameter}` ({first.kind.value}, op `{first.op}`){' and more' if len(suspect) > 1 else ''}; see "
            f"`uncovered` in --format json{'' if strict else ', or pass --strict to fail'}",
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
