"""``bitplan plan``: per-layer bit-widths from one factor of the profile and one strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.cli.common import emit, err_console, provided
from bitplan.cli.options import (
    BUDGET_PANEL,
    OUTPUT_PANEL,
    PLAN_PANEL,
    QUANT_PANEL,
    SPEC_HELP,
    ActivationBits,
    Batch,
    Checkpoint,
    Data,
    Device_,
    Format,
    GradientBits,
    GradientQuant,
    InputShape,
    Json,
    WeightGranularity_,
    LEVELS,
    WeightOnly,
    cli_command,
    parse_levels_group,
    resolve_format,
)
from bitplan.choices import FULL_PRECISION_BITS, BudgetRule, CapacityMeasure, Factor, Objective, OutputFormat, Preset, Strategy, Tie, ZeroPoint


LAYERS_PANEL = "Layers kept or added"
MEASURED_PANEL = "Measured plans (--data)"


def _load_sensitivity(path: Path):
    from pydantic import ValidationError

    from bitplan.errors import PlanError
    from bitplan.sensitivity_analysis.schema import SensitivityReport

    try:
        return SensitivityReport.model_validate_json(path.read_text())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PlanError(f"`{path}` is not a sensitivity report: `{where}`: {first['msg']}. Write one with `bitplan sensitivity`.") from None


def register(app: typer.Typer) -> None:
    """Add ``bitplan plan`` to ``app``."""
    app.command("plan")(plan)


def _split(values: list[str] | None) -> list[str]:
    """``--keep first,last --keep 'layer1.*'`` -> ["first", "last", "layer1.*"]."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _fp32_as_none(bits: int) -> int | None:
    """The plan stores "not quantized" as null; the CLI spells it 32 (``FULL_PRECISION_BITS``)."""
    return None if bits == FULL_PRECISION_BITS else bits


@cli_command(LEVELS, aliases=("seed_alias",))
def plan(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=f"Model spec or a profile JSON: {SPEC_HELP}", show_default=False)],
    input_shape: InputShape = None,
    batch: Batch = None,
    data: Data = None,
    checkpoint: Checkpoint = None,
    device: Device_ = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="recommended (default with --data), uniform, random, first-last, dpc, FACTOR:STRATEGY (e.g. A:C-), "
            "fisher, hessian, loss-delta or sqnr.",
            rich_help_panel=MEASURED_PANEL,
        ),
    ] = None,
    batches: Annotated[
        int | None, typer.Option("--batches", min=1, help="Training batches measured on (default 8 of 128).", rich_help_panel=MEASURED_PANEL)
    ] = None,
    factor: Annotated[Factor | None, typer.Option("--factor", help="Factor to rank layers by.", rich_help_panel=PLAN_PANEL)] = None,
    strategy: Annotated[
        Strategy | None, typer.Option("--strategy", help="U, C+ (rise with factor), C- (fall), R.", rich_help_panel=PLAN_PANEL)
    ] = None,
    preset: Annotated[Preset | None, typer.Option("--preset", help="dpc: C- on layer capacity.", rich_help_panel=PLAN_PANEL)] = None,
    capacity: Annotated[
        CapacityMeasure | None,
        typer.Option("--capacity", help="DPC's capacity measure (the paper does not publish it).", rich_help_panel=PLAN_PANEL),
    ] = None,
    grid: Annotated[
        bool,
        typer.Option("--grid/--no-grid", help="Every factor × strategy plan (restricted by --factor/--strategy).", rich_help_panel=PLAN_PANEL),
    ] = False,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Pin layers: first, last, names, FQNs or globs (comma-separated).", rich_help_panel=LAYERS_PANEL),
    ] = None,
    keep_bits: Annotated[int | None, typer.Option("--keep-bits", help="Width of kept layers (32 = not quantized).", rich_help_panel=LAYERS_PANEL)] = None,
    include_activation_gemms: Annotated[
        bool,
        typer.Option("--include-activation-gemms/--no-include-activation-gemms", help="Also plan QKᵀ and A·V GEMMs.", rich_help_panel=LAYERS_PANEL),
    ] = False,
    budget_avg_bits: Annotated[
        float | None, typer.Option("--budget-avg-bits", help="A plan with at most this mean bits, as close to it as the levels allow.", rich_help_panel=BUDGET_PANEL)
    ] = None,
    budget_mbit: Annotated[float | None, typer.Option("--budget-mbit", help="... with at most this many MBit.", rich_help_panel=BUDGET_PANEL)] = None,
    budget_bitops: Annotated[
        float | None, typer.Option("--budget-bitops", help="... with at most this many forward BitOPs.", rich_help_panel=BUDGET_PANEL)
    ] = None,
    sensitivity: Annotated[
        Path | None,
        typer.Option("--sensitivity", help="A `bitplan sensitivity` report: the values of --factor S.", rich_help_panel=BUDGET_PANEL),
    ] = None,
    budget_rule: Annotated[
        BudgetRule | None,
        typer.Option(
            "--budget-rule",
            help="How C+, C- and R meet a budget: fill (default: their mapping shifted, then filled) or order-preserving (the seed paper's).",
            rich_help_panel=BUDGET_PANEL,
        ),
    ] = None,
    objective: Annotated[
        Objective | None,
        typer.Option(
            "--objective", help="min-sensitivity: the exact least-noise bits within the budget (needs --sensitivity).", rich_help_panel=BUDGET_PANEL
        ),
    ] = None,
    weight_only: WeightOnly = False,
    activation_bits: ActivationBits = None,
    gradient_bits: GradientBits = None,
    gradient_quant: GradientQuant = None,
    weight_granularity: WeightGranularity_ = None,
    zero_point: Annotated[
        ZeroPoint | None,
        typer.Option("--zero-point", help="Quantizer grid: float (range minimum) or integer (torchao, ONNX, vLLM).", rich_help_panel=QUANT_PANEL),
    ] = None,
    tie: Annotated[
        Tie | None,
        typer.Option(
            "--tie", help="fused: one width per group a serving stack fuses (q/k/v, gate/up); default fused for hf models.",
            rich_help_panel=PLAN_PANEL,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the plan here (with --grid: a folder for all plans).", rich_help_panel=OUTPUT_PANEL),
    ] = None,
    format: Format = None,
    json: Json = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw the plan's bits per layer with K and M to this .png, .pdf or .svg.", rich_help_panel=OUTPUT_PANEL)
    ] = None,
    *,
    widths: dict,
) -> None:
    """Plan per-layer bit-widths (Section 4.1 of Shen et al. 2024), with size and BitOPs estimates.

    With --data (and --checkpoint) and a budget: the recommended plan, measured on the data.
    """
    from bitplan.errors import PlanError
    from bitplan.plan import Budget, BudgetKind
    from bitplan.plan.from_spec import grid_model, plan_model
    from bitplan.plan.render import grid_table, layers_table, summary_table

    report = _load_sensitivity(sensitivity) if sensitivity is not None else None
    budgets = [
        Budget(kind=kind, value=value)
        for kind, value in (
            (BudgetKind.avg_bits, budget_avg_bits),
            (BudgetKind.mbit, budget_mbit),
            (BudgetKind.bitops, budget_bitops),
        )
        if value is not None
    ]
    if len(budgets) > 1:
        raise PlanError("give at most one of --budget-avg-bits, --budget-mbit, --budget-bitops.")
    if any(budget.value <= 0 for budget in budgets):
        raise PlanError("a budget must be positive.")
    given = dict(
        budget=budgets[0] if budgets else None,
        budget_rule=budget_rule,
        weight_only=weight_only or None,
        keep=_split(keep),
        keep_bits=keep_bits,
        include_activation_gemms=include_activation_gemms,
        activation_bits=activation_bits,
        gradient_bits=gradient_bits,
        gradient_quant=gradient_quant,
        weight_granularity=weight_granularity,
        zero_point=zero_point,
        tie=tie,
        input_shape=input_shape,
        batch=batch,
        scores=report.scores() if report is not None else None,
    )
    options = provided(given)
    options.update({"seed" if key == "plan_seed" else key: value for key, value in parse_levels_group(widths).items()})
    for name in ("activation_bits", "gradient_bits"):  # the plan stores "not quantized" as null
        if name in options:
            options[name] = _fp32_as_none(options[name])
    output_format = resolve_format(format, json)
    if plot is not None:
        from bitplan.figures import figure_format

        figure_format(plot)  # a bad name is refused before any work, and before anything is written
    if data is not None or method is not None:
        result = _measured_plan(model, data, method, checkpoint, device, batches, output_format, factor, strategy, preset, objective, sensitivity, grid, options)
        _write_and_show(result, model, output, plot, input_shape, batch, output_format)
        return
    if checkpoint is not None:
        raise PlanError("--checkpoint names the trained weights to measure: give --data DATA too (or drop --checkpoint).")
    if grid:
        if plot is not None:
            raise PlanError("--plot draws one plan; drop --grid, or plot each plan of the grid with `bitplan plan`.")
        if preset is not None:
            raise PlanError("--grid plans every factor × strategy; drop --preset (or drop --grid).")
        plans, result = grid_model(
            model,
            factors=[factor] if factor else [f for f in Factor if f.structural],
            strategies=[strategy] if strategy else Strategy.paper(),
            **options,
        )
        if output is not None:
            from bitplan.plan.grid import save_grid

            written = save_grid(plans, result, output)
            err_console.print(f"wrote {len(written) - 1} plans and {written[-1]}")
        emit(result, [grid_table(result)], output_format)
        return
    recipe = {"factor": factor, "strategy": strategy, "preset": preset, "capacity": capacity, "objective": objective}
    result = plan_model(model, **provided(recipe), **options)
    _write_and_show(result, model, output, plot, input_shape, batch, output_format)


def _measured_plan(model, data, method, checkpoint, device, batches, output_format, factor, strategy, preset, objective, sensitivity, grid, options):
    """``--data`` / ``--method``: one method's plan at the budget (``plan_by_method``)."""
    from bitplan.errors import PlanError
    from bitplan.sensitivity_analysis.at_budget import plan_by_method

    given = {"--factor": factor, "--strategy": strategy, "--preset": preset, "--objective": objective, "--sensitivity": sensitivity}
    clash = [flag for flag, value in given.items() if value is not None] + (["--grid"] if grid else [])
    if clash:
        raise PlanError(
            f"--data/--method choose the bits by a method ({method or 'recommended'}); drop {clash[0]}, "
            "or write the rule as --method FACTOR:STRATEGY (e.g. A:C-), dpc or fisher."
        )
    if options.get("budget") is None:
        raise PlanError("a measured plan needs a budget: add --budget-avg-bits, --budget-mbit or --budget-bitops.")
    extra = {"checkpoint": checkpoint, "device": device, "batches": batches}
    options = {**options, **provided(extra)}
    options.pop("scores", None)
    return plan_by_method(
        model, data, method=method or "recommended", progress=output_format is OutputFormat.table, **options
    )


def _write_and_show(result, model, output, plot, input_shape, batch, output_format) -> None:
    """Write the plan (``-o``), draw it (``--plot``) and print it."""
    from bitplan.plan.render import layers_table, summary_table

    if plot is not None:  # the figure first: a path it cannot be written to leaves no plan behind either
        from bitplan.plan.from_spec import load_profile
        from bitplan.plan.plot import plot_plan

        measured = result.source is not None and result.source.data is not None  # sized to its data: the plan's spec
        profile = load_profile(result.model) if measured else load_profile(model, input_shape=input_shape, batch=batch)
        plot_plan(result, profile, plot)
        err_console.print(f"wrote {plot}")
    if output is not None:
        from bitplan.plan.io import save_plan

        save_plan(result, output)
        err_console.print(f"wrote {output}")
    emit(result, [layers_table(result), summary_table(result)], output_format)
