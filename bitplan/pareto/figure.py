"""``pareto.png``: test metric (left) and test loss (right) against mean bits, one line per method.

Uniform plans are points (a plan per level, no line between them: they are the baseline each
mixed plan must beat); random plans are a band from the worst to the best plan of each budget with
their median dashed; every other method is a line through its mean per budget, with the 95 %
interval as error bars. Perplexity and loss use a log axis: 1-bit plans can be orders of magnitude off.
"""

from __future__ import annotations

from bitplan.figures import new_figure, png_bytes
from bitplan.pareto.result import ParetoResult
from bitplan.pareto.summary import groups
from bitplan.train import MetricName

UNIFORM = "uniform"
RANDOM = "random"
RECOMMENDED = "recommended"
RANDOM_COLOUR = "#8c8c8c"
RECOMMENDED_COLOUR = "#d62728"  # drawn thick, on top: the plan `bitplan plan --data` gives
LINE_COLOURS = (  # tab10 without its grey and red, then darker companions: 15 distinct lines
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#393b79", "#e6550d", "#637939", "#7b4173", "#843c39", "#3182bd", "#31a354",
)


def pareto_figure(result: ParetoResult) -> bytes:
    """The figure as PNG bytes (Agg canvas, matplotlib imported lazily by ``bitplan.figures``)."""
    figure = new_figure(11.0, 4.4)
    metric_axes, loss_axes = figure.subplots(1, 2)
    entries = groups(result)
    methods = list(dict.fromkeys(entry.method for entry in entries))
    lines = [method for method in methods if method not in (UNIFORM, RANDOM, RECOMMENDED)]
    colours = {method: LINE_COLOURS[index % len(LINE_COLOURS)] for index, method in enumerate(lines)}
    colours.update({RANDOM: RANDOM_COLOUR, RECOMMENDED: RECOMMENDED_COLOUR})
    for method in methods:
        mine = [entry for entry in entries if entry.method == method and entry.metric is not None]
        if not mine:
            continue
        x = [entry.avg_bits for entry in mine]
        colour = colours.get(method, "black")
        points = [p for p in result.points if p.method == method and p.metric is not None]
        if method == RANDOM:
            for axes, values in ((metric_axes, "metric"), (loss_axes, "loss")):
                by_budget = [[getattr(p, values) for p in points if p.budget == entry.budget] for entry in mine]
                axes.fill_between(x, [min(v) for v in by_budget], [max(v) for v in by_budget], color=colour,
                                  alpha=0.18, label=f"random ({result.config.random_plans}/budget, min–max)")
                axes.scatter([p.avg_bits for p in points], [getattr(p, values) for p in points], s=6, color=colour, alpha=0.5)
                medians = [sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
                           for v in by_budget]
                axes.plot(x, medians, ls="--", color=colour, lw=1, label="random median")
            continue
        if method == UNIFORM:
            metric_axes.scatter(x, [e.metric for e in mine], s=60, marker="s", color="black", zorder=4, label=UNIFORM)
            loss_axes.scatter(x, [e.loss for e in mine], s=60, marker="s", color="black", zorder=4, label=UNIFORM)
            continue
        errors = [
            [e.metric - e.low if e.low is not None else 0 for e in mine],
            [e.high - e.metric if e.high is not None else 0 for e in mine],
        ]
        style = {"lw": 2.6, "zorder": 5} if method == RECOMMENDED else {"lw": 1.3}
        metric_axes.errorbar(x, [e.metric for e in mine], yerr=errors, marker="o", ms=4, capsize=3, color=colour,
                             label=method, **style)
        loss_axes.plot(x, [e.loss for e in mine], marker="o", ms=4, color=colour, label=method, **style)
    baseline = result.baseline
    metric_axes.axhline(baseline.metric, color="grey", ls=":", lw=1, label="full precision")
    loss_axes.axhline(baseline.loss, color="grey", ls=":", lw=1, label="full precision")
    accuracy = result.metric_name is MetricName.accuracy
    metric_axes.set_ylabel("test accuracy (%, higher is better)" if accuracy else "test perplexity (log, lower is better)")
    if not accuracy:
        metric_axes.set_yscale("log")
    loss_axes.set_yscale("log")
    loss_axes.set_ylabel("test loss (log, lower is better)")
    for axes in (metric_axes, loss_axes):
        axes.set_xlabel("mean bits per weight")
        axes.grid(alpha=0.3)
    metric_axes.legend(fontsize=7, loc="best")
    figure.suptitle(f"{result.model} on {result.config.data}: {result.config.eval.value.upper()}", fontsize=10)
    return png_bytes(figure)
