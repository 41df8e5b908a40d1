"""``bitplan plan``: per-layer bit-widths from one factor of the profile and one strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bitplan.cli.common import JsonFlag, console, err_console, guarded, to_json, write_or_print
from bitplan.choices import (
    FULL_PRECISION_BITS,
    CapacityMeasure,
    Factor,
    GradQuant,
    Mapping,
    Objective,
    Preset,
    Strategy,
    WeightGranularity,
)


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
    """32 bits = not quantized (None); other widths, including ones above 32, go to the planner's check."""
    return None if bits == FULL_PRECISION_BITS else bits


@guarded
def plan(
    model: Annotated[str, typer.Argument(help="Model spec (zoo:resnet20, file.py:factory, model.onnx, ...) or a profile JSON.")],
    factor: Annotated[Factor | None, typer.Option("--factor", help="Factor to rank layers by.")] = None,
    strategy: Annotated[Strategy | None, typer.Option("--strategy", help="U, C+ (rise with factor), C- (fall), R.")] = None,
    bits: Annotated[str | None, typer.Option("--bits", help="Range of widths LOW-HIGH, e.g. 6-8 (default 4-8).")] = None,
    levels: Annotated[str | None, typer.Option("--levels", help="Explicit widths, e.g. 8,10,12,14,16.")] = None,
    uniform_bits: Annotated[
        int | None, typer.Option("--uniform-bits", help="Width of U and of the reference plan (default: middle of the range).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of R.")] = 0,
    mapping: Annotated[Mapping, typer.Option("--mapping", help="How factor values become levels.")] = Mapping.rank,
    preset: Annotated[Preset | None, typer.Option("--preset", help="dpc: C- on layer capacity.")] = None,
    capacity: Annotated[
        CapacityMeasure, typer.Option("--capacity", help="DPC's capacity measure (the paper does not publish it).")
    ] = CapacityMeasure.params,
    grid: Annotated[
        bool, typer.Option("--grid/--no-grid", help="Every factor × strategy plan (restricted by --factor/--strategy).")
    ] = False,
    budget_avg_bits: Annotated[
        float | None, typer.Option("--budget-avg-bits", help="Largest order-preserving plan with at most this mean.")
    ] = None,
    budget_mbit: Annotated[float | None, typer.Option("--budget-mbit", help="... with at most this many MBit.")] = None,
    budget_bitops: Annotated[
        float | None, typer.Option("--budget-bitops", help="... with at most this many forward BitOPs.")
    ] = None,
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Pin layers: first, last, names, FQNs or globs (comma-separated).")
    ] = None,
    keep_bits: Annotated[int, typer.Option("--keep-bits", help="Width of kept layers (32 = not quantized).")] = 8,
    include_activation_gemms: Annotated[
        bool,
        typer.Option("--include-activation-gemms/--no-include-activation-gemms", help="Also plan QKᵀ and A·V GEMMs."),
    ] = False,
    activation_bits: Annotated[int, typer.Option("--activation-bits", help="Activation bits for training (32 = fp32).")] = 8,
    gradient_bits: Annotated[int, typer.Option("--gradient-bits", help="Gradient bits for training (32 = fp32).")] = 8,
    gradient_quant: Annotated[
        GradQuant, typer.Option("--gradient-quant", help="Gradient quantizer for training.")
    ] = GradQuant.sr,
    weight_granularity: Annotated[
        WeightGranularity, typer.Option("--weight-granularity", help="Weight min/max per channel or per tensor.")
    ] = WeightGranularity.channel,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="Input shape for specs that need one.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Batch to profile at (F and MACs scale with it).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the plan here (with --grid: a folder for all plans).")
    ] = None,
    sensitivity: Annotated[
        Path | None, typer.Option("--sensitivity", help="A `bitplan sensitivity` report: the values of --factor S.")
    ] = None,
    objective: Annotated[
        Objective | None,
        typer.Option("--objective", help="min-sensitivity: the exact least-noise bits within the budget (needs --sensitivity)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Plan per-layer bit-widths (Section 4.1 of Shen et al. 2024), with size and BitOPs estimates."""
    from bitplan.errors import PlanError
    from bitplan.plan import Budget, BudgetKind
    from bitplan.plan.from_spec import grid_model, plan_model
    from bitplan.plan.planner import parse_bits_range, parse_levels
    from bitplan.plan.render import grid_table, layers_table, summary_table

    report = _load_sensitivity(sensitivity) if sensitivity is not None else None
    if bits is not None and levels is not None:
        raise PlanError("give either --bits LOW-HIGH or --levels A,B,C, not both.")
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
    options = dict(
        bits=parse_bits_range(bits) if bits is not None else None,
        levels=parse_levels(levels) if levels is not None else None,
        uniform_bits=uniform_bits,
        seed=seed,
        mapping=mapping,
        budget=budgets[0] if budgets else None,
        keep=_split(keep),
        keep_bits=keep_bits,
        include_activation_gemms=include_activation_gemms,
        activation_bits=_fp32_as_none(activation_bits),
        gradient_bits=_fp32_as_none(gradient_bits),
        gradient_quant=gradient_quant.value,
        weight_granularity=weight_granularity.value,
    )
    if grid:
        if preset is not None:
            raise PlanError("--grid plans every factor × strategy; drop --preset (or drop --grid).")
        plans, result = grid_model(
            model,
            input_shape=input_shape,
            batch=batch,
            factors=[factor] if factor else [f for f in Factor if f.structural],
            strategies=[strategy] if strategy else Strategy.paper(),
            sensitivity=report,
            **options,
        )
        if output is not None:
            from bitplan.plan.grid import save_grid

            written = save_grid(plans, result, output)
            err_console.print(f"wrote {len(written) - 1} plans and {written[-1]}")
        if json_output:
            write_or_print(to_json(result), None)
        else:
            console.print(grid_table(result))
        return
    result = plan_model(
        model,
        input_shape=input_shape,
        batch=batch,
        factor=factor,
        strategy=strategy,
        preset=preset,
        capacity=capacity,
        sensitivity=report,
        objective=objective.value if objective is not None else None,
        **options,
    )
    if output is not None:
        from bitplan.plan.io import save_plan

        save_plan(result, output)
        err_console.print(f"wrote {output}")
    if json_output:
        write_or_print(to_json(result), None)
    else:
        console.print(layers_table(result))
        console.print(summary_table(result))
