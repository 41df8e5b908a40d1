"""``bitplan profile MODEL``: every GEMM's accumulation, usage frequency, depth, params and MACs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.choices import OutputFormat, RoutingChoice, TracerChoice
from bitplan.cli.common import console, err_console, write_or_print
from bitplan.cli.options import (
    MODEL_PANEL,
    OUTPUT_PANEL,
    Batch,
    Data,
    Format,
    InputShape,
    Json,
    Model,
    Output,
    Routing,
    cli_command,
    resolve_format,
)

if TYPE_CHECKING:  # the schema (pydantic models) is imported when a profile is made, not for --help
    from bitplan.profile.schema import ModelProfile


@cli_command()
def profile(
    model: Model,
    input_shape: InputShape = None,
    batch: Batch = None,
    tracer: Annotated[
        TracerChoice, typer.Option("--tracer", help="auto (record, then torch.export), record, or export.", rich_help_panel=MODEL_PANEL)
    ] = TracerChoice.auto,
    routing: Routing = RoutingChoice.uniform,
    data: Data = None,
    output: Output = None,
    format: Format = None,
    json: Json = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write accumulation/frequency per layer to this PNG.", rich_help_panel=OUTPUT_PANEL)
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, help="Group GEMMs by the first N components of their module path.", rich_help_panel=OUTPUT_PANEL)
    ] = None,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Show only the N GEMMs (or groups) with the most MACs.", rich_help_panel=OUTPUT_PANEL)
    ] = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="When tracing fails even on real tensors, write the GEMMs recorded before the failing op (the profile's notes name it).",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit 1 when a weight is read by an op bitplan cannot count, or by none, or an op has no rule.", rich_help_panel=OUTPUT_PANEL),
    ] = False,
) -> None:
    """Profile every GEMM-like op of a model (traced on meta tensors: no weights or activations allocated)."""
    from bitplan.profile import render
    from bitplan.spec import profile_spec

    format = resolve_format(format, json)
    with warnings.catch_warnings():  # the front end's warning about ops with no rule: one line below instead
        warnings.filterwarnings("ignore", message="not profiled")
        result = profile_spec(
            model, input_shape=input_shape, batch=batch, tracer=tracer, allow_partial=allow_partial, routing=routing, data=data
        )
    _warn_uncovered(result, strict)
    if plot is not None:
        render.plot(result, plot)
    if depth is not None or top is not None:
        _print_summary(result, format, output, depth=depth, top=top)
    elif format is OutputFormat.table and output is None:
        console.print(render.to_table(result))
    else:
        text = {
            OutputFormat.json: lambda: result.model_dump_json(indent=2),
            OutputFormat.csv: lambda: render.to_csv(result),
            OutputFormat.md: lambda: render.to_markdown(result),
            OutputFormat.table: lambda: result.model_dump_json(indent=2),
        }[format]()
        write_or_print(text, output)
    if strict and (result.suspect_uncovered or result.unknown_ops):
        raise typer.Exit(1)


def _warn_uncovered(result: ModelProfile, strict: bool) -> None:
    """One warning line (stderr) when a weight may have a GEMM missing from the profile, or an op has no rule."""
    suspect = result.suspect_uncovered
    if result.unknown_ops:
        listed = ", ".join(f"{entry.op} ×{entry.count}" for entry in result.unknown_ops)
        also = f"; also {len(suspect)} weight(s) read by no GEMM" if suspect else ""
        err_console.print(
            f"[yellow]warning:[/] ops bitplan has no rule for, so GEMMs inside them may be missing: {listed}{also}; see "
            f"`unknown_ops` and `uncovered` in --format json{'' if strict else ', or pass --strict to fail'}",
            soft_wrap=True,
        )
    elif suspect:
        first = suspect[0]
        err_console.print(
            f"[yellow]warning:[/] {len(suspect)} weight(s) read by no GEMM bitplan can count, so GEMMs may be "
            f"missing: `{first.parameter}` ({first.kind.value}, op `{first.op}`){' and more' if len(suspect) > 1 else ''}; see "
            f"`uncovered` in --format json{'' if strict else ', or pass --strict to fail'}",
            soft_wrap=True,
        )


def _print_summary(result, format: OutputFormat, output: Path | None, *, depth: int | None, top: int | None) -> None:
    """``--depth``/``--top``: a shorter view for people; the JSON stays the whole profile."""
    from bitplan.errors import SpecError
    from bitplan.profile import render
    from bitplan.profile.summary import summarize

    if format is OutputFormat.json:
        raise SpecError("--depth and --top shorten the table, CSV and Markdown; JSON is always the whole profile. "
                        "Drop --depth/--top, or use --format table, csv or md.")
    groups, how = summarize(result, depth=depth, top=top)
    if format is OutputFormat.table and output is None:
        console.print(render.groups_table(result, groups, how))
        return
    text = render.groups_csv(result, groups) if format is OutputFormat.csv else render.groups_markdown(result, groups, how)
    write_or_print(text, output)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
