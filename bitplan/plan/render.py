"""Rich tables for plans, grids, check reports and plan diffs (the CLI prints these).

``#`` is always the 0-based position of a layer in its file's ``layers`` list.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from bitplan.plan.check import CheckReport
from bitplan.plan.diff import LayerBitsDiff, PlanDiff
from bitplan.plan.schema import BitPlan, LayerPlan

if TYPE_CHECKING:
    from bitplan.plan.grid import GridResult  # imports the planner (and torch): only for annotations


def _g(bitops: int) -> str:
    return f"{bitops / 1e9:,.4g}"


def _accumulator_cell(layer: LayerPlan) -> str:
    """``fwd/dX/dW`` integer accumulator bits, ``fp32`` for a float product, ``–`` for a lookup (it sums
    nothing), blank in older plans."""
    if layer.op.lookup:
        return "–"
    return "" if layer.accumulator_bits is None else layer.accumulator_bits.label()


def plan_title(plan: BitPlan) -> str:
    """One line in the CLI's words: how the bits were chosen, the levels, the budget and what it reached."""
    if plan.source is not None and plan.objective is None and plan.strategy.value == "opt":
        rule = f"{plan.source.method} ({plan.source.measure})"
    elif plan.objective is not None:
        rule = f"{plan.objective.value} = {plan.objective_value:.6g} (exact)"
        if plan.source is not None:
            rule = f"{plan.source.method}: {rule}"
    elif plan.preset:
        rule = f"DPC (C- on {plan.factor.value})"
    elif plan.strategy.value == "U":
        rule = f"U ({plan.uniform_bits} bits)"
    else:
        rule = f"{plan.strategy.value} on {plan.factor.value}, {plan.mapping.value} mapping"
    return f"{plan.model}: {rule}, levels {plan.levels}{budget_words(plan)}{kept_words(plan)}"


def budget_words(plan: BitPlan) -> str:
    """``, budget avg bits ≤ 1.5 (reached 1.4997, fill rule)``, or nothing without a budget."""
    if plan.budget is None:
        return ""
    kind = plan.budget.kind.value.replace("_", " ")
    reached = "" if plan.budget_reached is None else f"reached {plan.budget_reached:.6g}"
    rule = "" if plan.budget_rule is None else f"{plan.budget_rule.value} rule"
    details = ", ".join(part for part in (reached, rule) if part)
    return f", budget {kind} ≤ {plan.budget.value:g}" + (f" ({details})" if details else "")


def kept_words(plan: BitPlan) -> str:
    """``, 2 kept at 32 bits outside the budget`` when --keep pinned layers (without a budget: ``, 2 kept at 32 bits``)."""
    kept = sum(1 for layer in plan.layers if layer.kept)
    if not kept:
        return ""
    return f", {kept} kept at {plan.keep_bits} bits" + (" outside the budget" if plan.budget is not None else "")


def precision_words(plan: BitPlan) -> str:
    """``activations 8, gradients 8 sr`` (``fp32`` where not quantized; weight-only: both fp32)."""
    activations = "fp32" if plan.activation_bits is None else str(plan.activation_bits)
    if plan.gradient_quant.value == "luq":
        gradients = "4 luq"
    elif plan.gradient_bits is None or plan.gradient_quant.value == "none":
        gradients = "fp32"
    else:
        gradients = f"{plan.gradient_bits} {plan.gradient_quant.value}"
    return f"activations {activations}, gradients {gradients}"


def layers_table(plan: BitPlan) -> Table:
    """One row per planned GEMM and lookup: its factor value (``–`` when the factor cannot rank it) and bits."""
    table = Table(title=plan_title(plan), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("op", style="dim")
    table.add_column(plan.factor.value, justify="right")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("bits", justify="right", style="bold")
    table.add_column("acc bits", justify="right", no_wrap=True)  # forward/dX/dW integer accumulators
    for index, layer in enumerate(plan.layers):
        value = "kept" if layer.kept else "–" if layer.factor_value is None else f"{layer.factor_value:g}"
        shared = "" if layer.weight is None or layer.weight.startswith(layer.name) else f" ({layer.weight})"
        table.add_row(
            str(index),
            layer.name + shared,
            layer.op.value,
            value,
            f"{layer.params:,}",
            f"{layer.macs:,}",
            str(layer.bits),
            _accumulator_cell(layer),
        )
    return table


def summary_table(plan: BitPlan) -> Table:
    """Size and compute of the plan beside fp32 and the uniform plan (Table 2 style)."""
    e = plan.estimates
    table = Table(
        title=f"size and compute ({precision_words(plan)}, batch {plan.batch})",
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


def _bits(value: int | None) -> str:
    return "—" if value is None else str(value)


def _delta_bits(row: LayerBitsDiff) -> str:
    if row.bits_a is None or row.bits_b is None:
        return "only A" if row.bits_b is None else "only B"
    return "" if row.bits_a == row.bits_b else f"{row.bits_b - row.bits_a:+d}"


def _index(value: int | None) -> str:
    return "" if value is None else str(value)


def diff_totals(diff: PlanDiff) -> list[tuple[str, str, str, str, str]]:
    """(quantity, A, B, B − A, B / A) for avg bits, MBit and BitOPs (G = 10^9)."""
    a, b = diff.totals_a, diff.totals_b

    def ratio(new: float, old: float) -> str:
        return f"{new / old:.4f}" if old else "—"

    return [
        ("avg bits", f"{a.avg_bits:.3f}", f"{b.avg_bits:.3f}", f"{diff.avg_bits_delta:+.3f}", ratio(b.avg_bits, a.avg_bits)),
        ("MBit", f"{a.mbit:.6g}", f"{b.mbit:.6g}", f"{diff.mbit_delta:+.6g}", ratio(b.size_bits, a.size_bits)),
        ("fwd G BitOPs", _g(a.bitops_forward), _g(b.bitops_forward), f"{diff.bitops_forward_delta / 1e9:+,.4g}",
         ratio(b.bitops_forward, a.bitops_forward)),
        ("train G BitOPs", _g(a.bitops_training), _g(b.bitops_training), f"{diff.bitops_training_delta / 1e9:+,.4g}",
         ratio(b.bitops_training, a.bitops_training)),
    ]


def diff_tables(diff: PlanDiff) -> tuple[Table, Table]:
    """Per-layer bits of A and B side by side, and the totals with their deltas (B − A)."""
    layers = Table(title=f"A = {diff.a}   B = {diff.b}: {diff.changed} of {len(diff.layers)} layers differ",
                   title_justify="left", caption="# = 0-based position in each plan's `layers`",
                   caption_justify="left", box=box.SIMPLE_HEAD)
    for column in ("# A", "# B", "GEMM", "params", "MACs", "bits A", "bits B", "Δ"):
        layers.add_column(column, justify="left" if column == "GEMM" else "right")
    for row in diff.layers:
        layers.add_row(_index(row.index_a), _index(row.index_b), row.name, f"{row.params:,}", f"{row.macs:,}",
                       _bits(row.bits_a), _bits(row.bits_b), _delta_bits(row), style="bold" if row.changed else None)
    totals = Table(title="size and compute (Δ = B − A)", title_justify="left", box=box.SIMPLE_HEAD,
                   caption="\n".join(f"note: {note}" for note in diff.notes) or None, caption_justify="left")
    for column in ("", "A", "B", "Δ", "B / A"):
        totals.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for row in diff_totals(diff):
        totals.add_row(*row)
    return layers, totals


DIFF_CSV_COLUMNS = ("index_a", "index_b", "name", "params", "macs", "bits_a", "bits_b", "delta")


def diff_csv(diff: PlanDiff) -> str:
    """One CSV line per layer (totals are in the JSON and the table)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(DIFF_CSV_COLUMNS)
    for row in diff.layers:
        delta = "" if row.bits_a is None or row.bits_b is None else row.bits_b - row.bits_a
        writer.writerow([_index(row.index_a), _index(row.index_b), row.name, row.params, row.macs,
                         _index(row.bits_a), _index(row.bits_b), delta])
    return buffer.getvalue()


def diff_markdown(diff: PlanDiff) -> str:
    """The two tables of ``diff_tables`` as Markdown."""
    lines = [f"A = {diff.a}, B = {diff.b}: {diff.changed} of {len(diff.layers)} layers differ.", "",
             "| # A | # B | GEMM | params | MACs | bits A | bits B | Δ |", "|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {_index(row.index_a)} | {_index(row.index_b)} | {row.name} | {row.params:,} | {row.macs:,} "
        f"| {_bits(row.bits_a)} | {_bits(row.bits_b)} | {_delta_bits(row)} |"
        for row in diff.layers
    ]
    lines += ["", "| | A | B | Δ (B − A) | B / A |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in diff_totals(diff)]
    lines += [f"\nNote: {note}." for note in diff.notes]
    return "\n".join(lines) + "\n"
