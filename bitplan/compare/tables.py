"""``results.md`` and ``results.csv``: the grid as the paper's Tables 1 and 2, and one long table.

Markdown shows (1) the outcome per strategy with one column per factor (Table 1: mean, variance),
(2) the model size per strategy and factor (Table 2: MBit), (3) every number of every cell, and
(4) the bits each cell's plan gives each layer (``#`` = 0-based position in the plan's ``layers``).
The best mean of each factor column is bold (highest accuracy, lowest perplexity).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from bitplan.compare.result import CellRow, GridResult
from bitplan.plan import Strategy, load_plan
from bitplan.train import MetricName

CSV_COLUMNS = (
    "factor", "strategy", "bits", "metric", "mean", "variance", "std", "ok", "failed", "pending", "avg_bits",
    "mbit", "size_ratio_fp32", "size_ratio_uniform", "bitops_forward_ratio_fp32", "bitops_training_ratio_fp32",
    "bitops_training_ratio_uniform", "seeds", "plan_file",
)


@dataclass(frozen=True)
class LayerBits:
    """The bits every distinct plan of a grid gives each layer: ``bits[i][j]`` is layer ``names[i]`` in ``labels[j]``.

    U is one plan shown under every factor, so it is one column; a layer a plan does not cover is None.
    """

    labels: list[str]
    names: list[str]
    bits: list[list[int | None]]


def cell_label(row: CellRow) -> str:
    """``U`` for the shared uniform cell, else ``FACTOR STRATEGY`` (e.g. ``A C-``)."""
    return row.strategy.value if row.shared else f"{row.factor.value} {row.strategy.value}"


def layer_bits(result: GridResult, directory: Path) -> LayerBits:
    """Read every distinct plan of the grid (``directory / row.plan_file``) and tabulate bits per layer.

    Raises:
        PlanError: A plan file is missing or invalid.
    """
    plans: dict[str, dict[str, int]] = {}
    names: dict[str, None] = {}  # insertion-ordered union of layer names, first plan's order first
    for row in result.rows:
        label = cell_label(row)
        if label not in plans:
            plan = load_plan(directory / row.plan_file)
            plans[label] = plan.bits_by_name()
            names.update(dict.fromkeys(plans[label]))
    labels = list(plans)
    return LayerBits(labels, list(names), [[plans[label].get(name) for label in labels] for name in names])


def layer_bits_markdown(table: LayerBits) -> list[str]:
    """The per-layer bits as Markdown lines (a heading and one row per layer)."""
    lines = [
        "## Bits per layer of each cell's plan",
        "",
        "| # | GEMM | " + " | ".join(table.labels) + " |",
        "|---|---|" + "---|" * len(table.labels),
    ]
    for index, (name, bits) in enumerate(zip(table.names, table.bits)):
        lines.append(f"| {index} | {name} | " + " | ".join("" if b is None else str(b) for b in bits) + " |")
    return lines


def metric_short(name: MetricName) -> str:
    """``Acc`` or ``PPL``: the column prefix the paper uses (Acc-A, Acc-F, ...)."""
    return "Acc" if name is MetricName.accuracy else "PPL"


def best_rows(result: GridResult) -> set[tuple[str, str]]:
    """(factor, strategy) of the best mean in each factor (ties all count): highest accuracy, lowest perplexity."""
    sign = 1.0 if result.metric_name is MetricName.accuracy else -1.0
    best: dict[str, float] = {}
    for row in result.rows:
        if row.mean is not None:
            best[row.factor.value] = max(best.get(row.factor.value, -float("inf")), sign * row.mean)
    return {
        (row.factor.value, row.strategy.value)
        for row in result.rows
        if row.mean is not None and sign * row.mean >= best[row.factor.value] - 1e-9
    }


def twin_notes(result: GridResult) -> list[str]:
    """One sentence per cell whose plan assigns the same bits as another cell's (listed once per pair)."""
    notes, seen = [], set()
    for row in result.rows:
        label = row.strategy.value if row.shared else f"{row.factor.value} {row.strategy.value}"
        if row.same_bits_as and label not in seen:
            seen.update([label, *row.same_bits_as])
            notes.append(f"{label} assigns every layer the same bits as {', '.join(row.same_bits_as)}, so their "
                         "runs train the same plan (up to its name) and their results coincide.")
    return notes


def _outcome(row: CellRow | None, bold: bool) -> str:
    if row is None:
        return ""
    if row.mean is None:
        return "pending" if row.pending else "failed"
    text = f"{row.mean:.2f}"
    text = f"**{text}**" if bold else text
    return f"{text} ({row.variance:.3f})"


def _strategy_rows(result: GridResult) -> list[tuple[Strategy, dict[str, CellRow]]]:
    """Rows of the wide tables: each strategy with its cell per factor."""
    table = []
    for strategy in result.config.strategies:
        cells = {row.factor.value: row for row in result.rows if row.strategy is strategy}
        table.append((strategy, cells))
    return table


def markdown(result: GridResult, bits: LayerBits | None = None) -> str:
    """The tables of ``results.md`` with a header saying what was run and how variance is defined.

    Args:
        result: The grid.
        bits: Each plan's bits per layer (``layer_bits``), appended as a fourth table when given.
    """
    config = result.config
    short = metric_short(result.metric_name)
    direction = "higher" if result.metric_name is MetricName.accuracy else "lower"
    factors = [factor.value for factor in config.factors]
    best = best_rows(result)
    lines = [
        f"# {result.model} on {result.data}",
        "",
        f"Seeds {', '.join(map(str, config.seeds))}; {config.train.epochs} epoch(s), batch {config.train.batch_size}, "
        f"lr {config.train.lr:g}, {config.train.optimizer.value}, {config.train.schedule.value} schedule"
        f"{'; strategies matched to U’s average bits (`--match-size`)' if config.match_size else ''}.",
        f"Runs finished: {result.runs_finished} of {result.runs_total}.",
        f"Metric: test {result.metric_name.value} ({direction} is better); in parentheses the {result.variance}. "
        "Bold: best mean of each factor.",
        "",
        f"## {short} per strategy and factor (Table 1)",
        "",
        "| #Bit | Strategy | " + " | ".join(f"{short}-{f}" for f in factors) + " |",
        "|---|---|" + "---|" * len(factors),
    ]
    for strategy, cells in _strategy_rows(result):
        any_row = next(iter(cells.values()), None)
        outcomes = [_outcome(cells.get(f), (f, strategy.value) in best) for f in factors]
        lines.append(f"| {any_row.bits if any_row else ''} | {strategy.value} | " + " | ".join(outcomes) + " |")
    lines += [
        "",
        "## Model size in MBit per strategy and factor (Table 2)",
        "",
        "| #Bit | Strategy | " + " | ".join(f"Size-{f}" for f in factors) + " |",
        "|---|---|" + "---|" * len(factors),
    ]
    for strategy, cells in _strategy_rows(result):
        any_row = next(iter(cells.values()), None)
        sizes = [f"{cells[f].mbit:.4g}" if f in cells else "" for f in factors]
        lines.append(f"| {any_row.bits if any_row else ''} | {strategy.value} | " + " | ".join(sizes) + " |")
    notes = twin_notes(result)
    if notes:
        lines += ["", "Note: " + " ".join(notes)]
    lines += [
        "",
        "## Every cell",
        "",
        "| Factor | Strategy | #Bit | mean | variance | std | ok/failed/pending | avg bits | MBit | size ×U "
        "| train BitOPs ×fp32 | train BitOPs ×U |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result.rows:
        mean = "" if row.mean is None else f"{row.mean:.3f}"
        variance = "" if row.variance is None else f"{row.variance:.4f}"
        std = "" if row.std is None else f"{row.std:.4f}"
        lines.append(
            f"| {row.factor.value} | {row.strategy.value}{' (shared)' if row.shared else ''} | {row.bits} | {mean} "
            f"| {variance} | {std} | {row.ok}/{row.failed}/{row.pending} | {row.avg_bits:.3f} | {row.mbit:.4f} "
            f"| {row.size_ratio_uniform:.3f} | {row.bitops_training_ratio_fp32:.4f} "
            f"| {row.bitops_training_ratio_uniform:.3f} |"
        )
    if bits is not None:
        lines += ["", *layer_bits_markdown(bits)]
    return "\n".join(lines) + "\n"


def csv_text(result: GridResult) -> str:
    """One CSV line per factor × strategy (U repeated per factor); ``seeds`` lists seed:metric pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.rows:
        seeds = " ".join(f"{run.seed}:{'' if run.metric is None else repr(run.metric)}:{run.status}" for run in row.runs)
        writer.writerow(
            [
                row.factor.value, row.strategy.value, row.bits, result.metric_name.value,
                _number(row.mean), _number(row.variance), _number(row.std), row.ok, row.failed, row.pending,
                repr(row.avg_bits), repr(row.mbit), repr(row.size_ratio_fp32), repr(row.size_ratio_uniform),
                repr(row.bitops_forward_ratio_fp32), repr(row.bitops_training_ratio_fp32),
                repr(row.bitops_training_ratio_uniform), seeds, row.plan_file,
            ]
        )
    return buffer.getvalue()


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)
