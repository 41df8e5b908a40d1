"""``bitplan study``: the seed paper's matrix experiments (Section 3, Figures 4–6) as tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bitplan.choices import Distribution, OutputFormat, QuantizedOperand, StudySweep
from bitplan.cli.common import console, emit, err_console, provided
from bitplan.cli.options import Device_, Format, Json, Output, Threads, cli_command, resolve_format

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.study import StudyConfig, StudyResult


def register(app: typer.Typer) -> None:
    """Add ``bitplan study`` to ``app``."""
    app.command("study")(study)


def parse_int_list(text: str, option: str) -> list[int]:
    """Parse "4,2" into [4, 2]; a usage error (exit 2) names the option otherwise."""
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        message = f"expected comma-separated integers such as 4,2, got {text!r}"
        raise typer.BadParameter(message, param_hint=option) from None


@cli_command(aliases=("out",))
def study(
    factor: Annotated[StudySweep, typer.Argument(help="Factor to sweep, or all three.")],
    bits: Annotated[str | None, typer.Option("--bits", help="Comma-separated bit-widths, 1..16 (default 4,2).")] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Random trials per sweep point (default 50).")] = None,
    dist: Annotated[
        Distribution | None,
        typer.Option("--dist", help="Matrix entries: N(0,1), U(-1,1) or max(0,N(0,1)) (default normal)."),
    ] = None,
    quantize: Annotated[
        QuantizedOperand | None, typer.Option("--quantize", help="Operand of Y = X·W to quantize (default right).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of every random draw (default 0).")] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="The dimensions each sweep keeps fixed (default 64).")
    ] = None,
    accumulation: Annotated[
        str | None, typer.Option("--accumulation", help="Accumulation counts K (default 9,18,…,2304).")
    ] = None,
    frequency: Annotated[
        str | None, typer.Option("--frequency", help="Uses per quantized element (default 512,256,…,16,9).")
    ] = None,
    depth: Annotated[int | None, typer.Option("--depth", help="Matrices in the depth chain (default 3).")] = None,
    device: Device_ = None,
    threads: Threads = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write CSV, JSON and PNG files into this folder.", rich_help_panel="Output")
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw a PNG per factor (with -o).")] = True,
    format: Format = None,
    json: Json = False,
) -> None:
    """Quantize one operand of random matrix products and measure the distance from the float64 truth.

    Sweeps accumulation (K), usage frequency of the quantized elements, or depth in a chain of three
    equal-size matrices, as in the seed paper's Figures 4–6. Definitions: docs/study.md.
    """
    options: dict[str, Any] = {
        "bits": parse_int_list(bits, "--bits") if bits is not None else None,
        "trials": trials,
        "distribution": dist,
        "quantize": quantize,
        "seed": seed,
        "size": size,
        "accumulation": parse_int_list(accumulation, "--accumulation") if accumulation is not None else None,
        "frequency": parse_int_list(frequency, "--frequency") if frequency is not None else None,
        "depth": depth,
        "device": None if device is None or device.value == "auto" else device.value,
        "threads": threads,
        "out": output,
        "plots": plots,
    }
    if factor is not StudySweep.all:
        options["factors"] = [factor.value]
    output_format = resolve_format(format, json)
    config = build_config(provided(options))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bitplan.study import run_study

    with Progress(
        TextColumn("[bold]study[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=config.total_points())

        def on_progress(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=name)

        result = run_study(config, on_progress=on_progress)
    if output is not None:
        kinds = "CSV, JSON and PNG" if plots else "CSV and JSON"
        err_console.print(f"wrote {kinds} files to {output}")
    emit(result, summary_tables(result), output_format)


def build_config(options: dict[str, Any]) -> StudyConfig:
    """Validate the options into a ``StudyConfig``; an invalid value is a usage error (exit 2)."""
    from pydantic import ValidationError

    from bitplan.study import StudyConfig

    try:
        return StudyConfig(**options)
    except ValidationError as error:
        problems = "; ".join(describe_problem(problem) for problem in error.errors())
        raise typer.BadParameter(f"invalid study options: {problems}.") from None


def describe_problem(problem: dict[str, Any]) -> str:
    """One pydantic error as "`--option`: message" (custom messages already name the field)."""
    message = str(problem["msg"]).removeprefix("Value error, ")
    field = str(problem["loc"][0]) if problem["loc"] else ""
    flag = {"distribution": "dist"}.get(field, field)
    return message if f"`{field}`" in message or not field else f"`--{flag}`: {message}"


def summary_tables(result: StudyResult) -> list[Table]:
    """One rich table per factor: per sweep value and bit-width, the distances and their variances."""
    from rich.table import Table

    config = result.config
    tables = []
    for factor_result in result.factors:
        table = Table(
            title=f"{factor_result.factor.value}: {factor_result.sweep}",
            caption=(
                f"{config.quantize.value} operand quantized, {config.distribution.value} entries, "
                f"{config.trials} trials, {factor_result.seconds:.2f} s"
            ),
        )
        for column in ("value", "bits", "distance", "variance", "relative", "rel. variance"):
            table.add_column(column, justify="right")
        for point in factor_result.points:  # sweep order, bit-widths in the configured order
            table.add_row(
                str(point.value),
                str(point.bits),
                f"{point.distance:.4g}",
                f"{point.distance_variance:.3g}",
                f"{point.relative_distance:.4g}",
                f"{point.relative_variance:.3g}",
            )
        tables.append(table)
    tables[-1].caption += f"; {config.total_points()} sweep points in {result.seconds:.2f} s"
    return tables
