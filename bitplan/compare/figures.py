"""The grid's figures as PNG bytes: a Figure 7-style scatter and one bar chart per factor.

Figure 7 of the seed paper plots each strategy's test accuracy with a circle whose area shows the
variance over replicates. Here: x = strategy, y = mean final metric, one colour per factor (offset
side by side), circle area proportional to the variance (population, over ok seeds), every seed's
value as a small dot. Figures are drawn with ``bitplan.figures`` (Agg canvas, constrained layout,
matplotlib imported lazily).
"""

from __future__ import annotations

from bitplan.compare.result import GridResult
from bitplan.figures import integer_ticks, new_figure, png_bytes
from bitplan.train import MetricName

FACTOR_COLOURS = {"A": "#1f77b4", "F": "#d62728", "D": "#2ca02c", "capacity": "#9467bd", "macs": "#8c564b"}
MAX_CIRCLE_AREA = 1400.0  # points², the area of the largest variance in the figure


def metric_label(name: MetricName) -> str:
    return "test accuracy (%, higher is better)" if name is MetricName.accuracy else "test perplexity (lower is better)"


def variance_figure(result: GridResult) -> bytes:
    """Figure 7 style: mean metric per strategy, circle area ∝ variance over seeds, one colour per factor."""
    strategies = [strategy.value for strategy in result.config.strategies]
    factors = [factor.value for factor in result.config.factors]
    variances = [row.variance for row in result.rows if row.variance is not None]
    largest = max(variances, default=0.0) or 1.0
    figure = new_figure(max(4.5, 1.6 + 1.5 * len(strategies)), 4.2)
    axes = figure.subplots()
    width = 0.6 / max(len(factors), 1)
    for index, factor in enumerate(factors):
        offset = (index - (len(factors) - 1) / 2) * width
        colour = FACTOR_COLOURS.get(factor, "#555555")
        for row in (r for r in result.rows if r.factor.value == factor and r.mean is not None):
            x = strategies.index(row.strategy.value) + offset
            area = MAX_CIRCLE_AREA * (row.variance or 0.0) / largest
            axes.scatter([x], [row.mean], s=area, color=colour, alpha=0.35, edgecolors=colour, linewidths=1.2)
            axes.scatter([x], [row.mean], s=14, color=colour, marker="D")
            seeds = [run.metric for run in row.runs if run.status == "ok" and run.metric is not None]
            axes.scatter([x] * len(seeds), seeds, s=6, color="#333333", alpha=0.6, zorder=3)
        axes.scatter([], [], s=60, color=colour, alpha=0.5, label=f"factor {factor}")
    axes.set_xticks(range(len(strategies)), strategies)
    axes.set_xlim(-0.6, len(strategies) - 0.4)
    axes.set_xlabel("strategy")
    axes.set_ylabel(f"mean {metric_label(result.metric_name)}")
    axes.set_title(
        f"{result.model} on {result.data}: mean over {len(result.config.seeds)} seeds\n"
        f"circle area ∝ variance (largest = {largest:.3g}); dots = single seeds",
        fontsize=10,
    )
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="best", fontsize=8, markerscale=0.8)
    return png_bytes(figure)


def factor_bars(result: GridResult, factor: str) -> bytes:
    """One factor's strategies as bars of the mean metric, error bars ± one standard deviation, MBit below."""
    rows = [row for row in result.rows if row.factor.value == factor]
    figure = new_figure(max(4.0, 1.2 + 1.2 * max(len(rows), 1)), 3.8)
    axes = figure.subplots()
    colour = FACTOR_COLOURS.get(factor, "#555555")
    means = [row.mean if row.mean is not None else 0.0 for row in rows]
    errors = [row.std or 0.0 for row in rows]
    positions = list(range(len(rows)))
    axes.bar(positions, means, yerr=errors, color=colour, alpha=0.75, capsize=4)
    labels = [f"{row.strategy.value}\n{row.bits} bits\n{row.mbit:.3g} MBit" for row in rows]
    axes.set_xticks(positions, labels, fontsize=8)
    finished = [(m, e) for m, e, row in zip(means, errors, rows) if row.mean is not None]
    if finished:  # zoom to the data: differences between strategies are often a fraction of a point
        low = min(m - e for m, e in finished)
        high = max(m + e for m, e in finished)
        margin = max((high - low) * 0.5, abs(high) * 0.01, 1e-3)
        axes.set_ylim(low - margin, high + 1.5 * margin)  # headroom for the labels above the error bars
    for position, row, error in zip(positions, rows, errors):
        if row.mean is not None:  # above the error bar's cap, where neither the bar nor the bar's error hides it
            axes.annotate(f"{row.mean:.2f}", (position, row.mean + error), ha="center", va="bottom", fontsize=8,
                          xytext=(0, 3), textcoords="offset points", color="#222222", fontweight="bold")
    axes.set_ylabel(metric_label(result.metric_name))
    axes.set_title(f"factor {factor}: mean ± std over seeds", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    return png_bytes(figure)


def curves_figure(series: dict[str, list[dict]], metric: MetricName) -> bytes:
    """Training curves of one or more runs: losses (left) and test metric (right) per epoch.

    Args:
        series: Label -> the run's ``metrics.jsonl`` lines (dicts with epoch, train_loss, test_loss, metric).
        metric: What ``metric`` means.
    """
    figure = new_figure(9.5, 3.8)
    losses, metrics = figure.subplots(1, 2)
    for label, lines in series.items():
        epochs = [line["epoch"] for line in lines]
        drawn = losses.plot(epochs, [line["train_loss"] for line in lines], marker="o", ms=3, label=f"{label} train")
        losses.plot(epochs, [line["test_loss"] for line in lines], marker="s", ms=3, ls="--",
                    color=drawn[0].get_color(), label=f"{label} test")
        metrics.plot(epochs, [line["metric"] for line in lines], marker="o", ms=3, label=label)
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.set_title("loss (solid: train, dashed: test)", fontsize=10)
    metrics.set_xlabel("epoch")
    metrics.set_ylabel(metric_label(metric))
    metrics.set_title(metric_label(metric), fontsize=10)
    for axes in (losses, metrics):
        integer_ticks(axes, "x")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return png_bytes(figure)
