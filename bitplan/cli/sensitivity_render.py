"""Rich tables for a sensitivity report and its factor validation."""

from __future__ import annotations

from rich.table import Table

from bitplan.sensitivity_analysis.schema import SensitivityReport


def tables(report: SensitivityReport) -> list[Table]:
    """The ranked layer table, and the factor-validation table when the report has one.

    ``#`` is the layer's 0-based position in the report's ``layers`` (as in every bitplan table);
    ``rank`` 1 is the most sensitive layer.
    """
    table = Table(
        title=f"{report.model} on {report.data}: {report.method.value} sensitivity at {report.bits} bits",
        caption=f"{report.initialization.value} weights, {report.batches}×{report.batch_size} samples, {report.seconds:.1f} s",
    )
    for column in ("#", "rank", "layer", "sensitivity", "SQNR dB", "A (K)", "F (M)", "D"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    order = sorted(range(len(report.layers)), key=lambda i: -report.layers[i].sensitivity)
    rank = {index: position + 1 for position, index in enumerate(order)}
    for index, layer in enumerate(report.layers):
        table.add_row(
            str(index), str(rank[index]), layer.name, f"{layer.sensitivity:.4g}",
            "" if layer.sqnr_db is None else f"{layer.sqnr_db:.1f}",
            *(f"{value:,}" if layer.accumulation else "–" for value in (layer.accumulation, layer.weight_frequency)),
            str(layer.depth),
        )
    shown = [table]
    if report.validation:
        check = Table(title="Do the structural factors rank layers like the measure? (95% bootstrap CI)")
        for column in ("factor", "Spearman ρ", "CI", "Kendall τ", "CI", "note"):
            check.add_column(column)
        for row in report.validation:
            check.add_row(
                row.factor, _number(row.spearman), _interval(row.spearman_ci), _number(row.kendall),
                _interval(row.kendall_ci), row.note,
            )
        shown.append(check)
    return shown


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _interval(bounds: tuple[float, float] | None) -> str:
    return "—" if bounds is None else f"[{bounds[0]:+.2f}, {bounds[1]:+.2f}]"
