"""``bitplan check``: gate a plan file in CI (exit 0 valid, 1 violations, 2 usage errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.choices import OutputFormat
from bitplan.cli.common import console, emit
from bitplan.cli.options import Format, InputShape, Json, TrustModelSpec, cli_command, resolve_format

VIOLATIONS_EXIT_CODE = 1


def register(app: typer.Typer) -> None:
    """Add ``bitplan check`` to ``app``."""
    app.command("check")(check)


@cli_command()
def check(
    plans: Annotated[list[Path], typer.Argument(help="Plan files to check (several for pre-commit).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Model spec to check against (default: the spec in the plan).")
    ] = None,
    input_shape: InputShape = None,
    max_mbit: Annotated[float | None, typer.Option("--max-mbit", help="Largest allowed model size in MBit.")] = None,
    max_avg_bits: Annotated[
        float | None, typer.Option("--max-avg-bits", help="Largest allowed parameter-weighted mean bits.")
    ] = None,
    min_bits: Annotated[int | None, typer.Option("--min-bits", help="Smallest allowed width of any layer.")] = None,
    max_bitops: Annotated[float | None, typer.Option("--max-bitops", help="Largest allowed forward BitOPs.")] = None,
    no_model: Annotated[
        bool,
        typer.Option(
            "--no-model",
            help="Check schema, strategy, estimates and budgets only: no re-profiling (fast; never imports torch).",
        ),
    ] = False,
    trust_model_spec: TrustModelSpec = False,
    max_accumulator_bits: Annotated[
        int | None,
        typer.Option(
            "--max-accumulator-bits",
            min=2,
            help="Widest allowed integer accumulator (forward, dX or dW) of any layer.",
        ),
    ] = None,
    format: Format = None,
    json: Json = False,
) -> None:
    """Validate plans: schema, fingerprint, coverage of every weight GEMM, bits and budgets.

    Exit 0 when every plan passes, 1 when any has a violation (each is listed), 2 for usage errors.
    """
    from bitplan.plan.check import check_plans
    from bitplan.plan.render import check_table

    reports = check_plans(
        plans,
        model=model,
        input_shape=input_shape,
        max_mbit=max_mbit,
        max_avg_bits=max_avg_bits,
        min_bits=min_bits,
        max_bitops=max_bitops,
        against_model=not no_model,
        trust_model_spec=trust_model_spec,
        max_accumulator_bits=max_accumulator_bits,
    )
    output_format = resolve_format(format, json)
    if output_format is not OutputFormat.table:  # one object for one plan, a list for several
        emit(reports[0] if len(reports) == 1 else reports, [check_table(report) for report in reports], output_format)
    for report in [] if output_format is not OutputFormat.table else reports:
        if report.ok:
            fits = f"fits {report.model}" if report.model is not None else "is valid (model not checked)"
            console.print(
                f"[green]ok[/]: {report.plan} {fits}: {report.layers} GEMMs, "
                f"{report.avg_bits:.3f} avg bits, {report.mbit:.4f} MBit, "
                f"{report.bitops_forward / 1e9:.4g} forward GBitOPs, narrowest {report.min_bits} bits",
                highlight=False,
            )
        elif console.is_terminal:
            console.print(check_table(report))
        else:  # piped: one line per violation, as compilers print them (a table's width would be its longest message)
            for violation in report.violations:
                where = f" `{violation.layer}`" if violation.layer else ""
                console.print(f"{report.plan}: {violation.code}{where}: {violation.message}", highlight=False, markup=False, soft_wrap=True)
    if not all(report.ok for report in reports):
        raise typer.Exit(VIOLATIONS_EXIT_CODE)
