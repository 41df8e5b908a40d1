"""Rich tables for plans, grids and check reports (the CLI prints these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from bitplan.plan.check import CheckReport
from bitplan.plan.schema import BitPlan

if TYPE_CHECKING:
    from bitplan.plan.grid import GridResult  # imports the planner (and torch): only for annotations


def _g(bitops: int) -> str:
    return f"{bitops / 1e9:,.4g}"


def plan_title(plan: BitPlan) -> str:
    rule = f"DPC (C- on {plan.factor.value})" if plan.preset else f"{plan.strategy.value} on {plan.factor.value}"
    budget = f", budget {plan.budget.kind.value} ≤ {plan.budget.value:g}" if plan.budget else ""
    if plan.objective is not None:
        return f"{plan.model}: {plan.objective} = {plan.objective_value:.6g} (exact), levels {plan.levels}{budget}"
    return f"{plan.model}: {rule}, levels {plan.levels}, {plan.mapping.value} mapping{budget}"


def layers_table(plan: BitPlan) -> Table:
    """One row per planned GEMM: its factor value and bits."""
    table = Table(title=plan_title(plan), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right", style="dim")
    table.add_column("GEMM")
    table.add_column("op", style="dim")
    table.add_column(plan.factor.value, justify="right")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("bits", justify="right", style="bold")
    for index, layer in enumerate(plan.layers):
        value = "kept" if layer.kept else f"{layer.factor_value:g}"
        shared = "" if layer.weight is None or layer.weight.startswith(layer.name) else f" ({layer.weight})"
        table.add_row(
            str(index), layer.name + shared, layer.op.value, value, f"{layer.params:,}", f"{layer.macs:,}", str(layer.bits)
        )
    return table


def summary_table(plan: BitPlan) -> Table:
    """Size and compute of the plan beside fp32 and the uniform plan (Table 2 style)."""
    e = plan.estimates
    table = Table(
        title=f"size and compute (activations {plan.activation_bits or 32}, gradients "
        f"{plan.gradient_bits or 32} {plan.gradient_quant}, batch {plan.batch})",
        title_justify="left",
        caption="G = 10^9 BitOPs; × fp32 = ratio to the fp32 model",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("plan", "avg bits", "MBit", "× fp32", "fwd G", "train G", "× fp32"):
        table.add_column(column, justify="left" if column == "plan" else "right", no_wrap=True)
    table.add_row("fp32", "32", f"{e.mbit_fp32:.4f}", "1", _g(e.bitops_forward_fp32), _g(e.bitops_training_fp32), "1")
    table.add_row(
        f"U ({plan.uniform_bits})",
        str(plan.uniform_bits),
        f"{e.mbit_uniform:.4f}",
        f"{e.mbit_uniform / e.mbit_fp32:.4f}",
        _g(e.bitops_forward_uniform),
        _g(e.bitops_training_uniform),
        f"{e.bitops_training_uniform / e.bitops_training_fp32:.4f}",
    )
    table.add_row(
        "this plan",
        f"{e.avg_bits:.3f}",
        f"{e.mbit:.4f}",
        f"{e.size_ratio_fp32:.4f}",
        _g(e.bitops_forward),
        _g(e.bitops_training),
        f"{e.bitops_training_ratio_fp32:.4f}",
        style="bold",
    )
    return table


def grid_table(grid: GridResult) -> Table:
    """Factor × strategy: avg bits, MBit and BitOPs of every plan of the grid (Tables 1–2 layout)."""
    budget = f", budget {grid.budget.kind.value} ≤ {grid.budget.value:g}" if grid.budget else ""
    table = Table(
        title=f"{grid.model}: levels {grid.levels}, U = {grid.uniform_bits}{budget}",
        title_justify="left",
        caption="G = 10^9 BitOPs at the profiled batch; × U = ratio to the uniform plan",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("factor", "strategy", "avg bits", "MBit", "× U", "fwd G", "train G", "× U"):
        table.add_column(column, justify="left" if column in ("factor", "strategy") else "right", no_wrap=True)
    for row in grid.rows:
        table.add_row(
            row.factor.value,
            row.strategy.value,
            f"{row.avg_bits:.3f}",
            f"{row.mbit:.4f}",
            f"{row.size_ratio_uniform:.3f}",
            _g(row.bitops_forward),
            _g(row.bitops_training),
            f"{row.bitops_training_ratio_uniform:.3f}",
        )
    return table


def check_table(report: CheckReport) -> Table:
    """Every violation of a check report, one per row."""
    table = Table(title=f"{report.plan}: {len(report.violations)} violation(s)", title_justify="left")
    table.add_column("check", style="bold red")
    table.add_column("layer")
    table.add_column("problem")
    for violation in report.violations:
        table.add_row(violation.code, violation.layer or "", violation.message)
    return table
