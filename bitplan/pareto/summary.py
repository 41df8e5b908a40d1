"""A sweep's points summarised per (method, budget), with 95% confidence intervals, and against random plans.

Intervals (docs/pareto.md):

- several values (random plans of a budget, QAT seeds): the mean ± t₀.₉₇₅,ₙ₋₁ · s / √n (Student t),
  an accuracy's clipped to [0, 100] %, a perplexity's at 1 from below;
- one accuracy: the Wilson score interval of correct / predictions, i.e. the uncertainty of the test
  set itself (on 360 test images one image is 0.28 points);
- one perplexity: none (the test set holds tens of thousands of correlated tokens).

"Against random" is where a method's mean lands among the random plans of the same budget: how
many of them it beats (higher accuracy, or lower perplexity), and the same for the loss.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bitplan.pareto.result import ParetoPoint, ParetoResult
from bitplan.train import MetricName

WILSON_Z = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class Group:
    """The points of one method at one budget."""

    method: str
    budget: float
    n: int
    avg_bits: float
    mbit: float
    metric: float | None  # mean over ok points
    low: float | None  # 95 % interval of the mean
    high: float | None
    loss: float | None
    best: float | None
    median: float | None
    worst: float | None


def t_quantile(degrees: int) -> float:
    """Two-sided 95 % Student t quantile for ``degrees`` degrees of freedom.

    Example:
        >>> round(t_quantile(2), 3), round(t_quantile(8), 3)
        (4.303, 2.306)
    """
    from scipy.stats import t

    return float(t.ppf(0.975, degrees))


def wilson(correct: int, count: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion, in percent.

    Example:
        >>> [round(v, 2) for v in wilson(356, 360)]
        [97.18, 99.57]
    """
    if count <= 0:
        return (math.nan, math.nan)
    p = correct / count
    z2 = WILSON_Z**2
    centre = (p + z2 / (2 * count)) / (1 + z2 / count)
    half = WILSON_Z * math.sqrt(p * (1 - p) / count + z2 / (4 * count**2)) / (1 + z2 / count)
    return 100 * (centre - half), 100 * (centre + half)


def better(metric_name: MetricName, a: float, b: float) -> bool:
    """Whether metric ``a`` beats ``b`` (higher accuracy, lower perplexity)."""
    return a > b if metric_name is MetricName.accuracy else a < b


def group(points: list[ParetoPoint], metric_name: MetricName) -> Group:
    """Mean, 95 % interval, best, median and worst of one (method, budget)."""
    first = points[0]
    ok = [p for p in points if p.metric is not None]
    values = [p.metric for p in ok]
    mean = statistics.fmean(values) if values else None
    low = high = None
    if len(values) >= 2:
        half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        low, high = mean - half, mean + half
        if metric_name is MetricName.accuracy:  # an accuracy lies in [0, 100] %, and so does its mean
            low, high = max(low, 0.0), min(high, 100.0)
        else:  # a perplexity, exp(cross-entropy ≥ 0), is at least 1 (a wide spread would reach below)
            low = max(low, 1.0)
    elif len(values) == 1 and metric_name is MetricName.accuracy and ok[0].predictions:
        low, high = wilson(ok[0].correct or 0, ok[0].predictions)
    ordered = sorted(values, reverse=metric_name is MetricName.accuracy)  # best first
    return Group(
        method=first.method, budget=first.budget, n=len(points),
        avg_bits=statistics.fmean(p.avg_bits for p in points), mbit=statistics.fmean(p.mbit for p in points),
        metric=mean, low=low, high=high, loss=statistics.fmean(p.loss for p in ok) if ok else None,
        best=ordered[0] if ordered else None, median=statistics.median(values) if values else None,
        worst=ordered[-1] if ordered else None,
    )


def groups(result: ParetoResult) -> list[Group]:
    """One group per (method, budget) that has points, methods in sweep order, budgets ascending."""
    out = []
    for method in dict.fromkeys(p.method for p in result.points):
        by_budget: dict[float, list[ParetoPoint]] = {}
        for point in result.of(method):
            by_budget.setdefault(point.budget, []).append(point)
        out.extend(group(points, result.metric_name) for points in by_budget.values())
    return out


@dataclass(frozen=True)
class AgainstRandom:
    """How one method's mean at one budget ranks among that budget's random plans."""

    method: str
    budget: float
    beats_metric: int  # random plans it is strictly better than, by the metric
    beats_loss: int  # … by the test loss
    randoms: int


def against_random(result: ParetoResult) -> list[AgainstRandom]:
    """Every non-random group against the random plans of its budget (PTQ: the plan; QAT: seed means)."""
    random_points: dict[float, dict[int, list[ParetoPoint]]] = {}
    for point in result.points:
        if point.method == "random" and point.metric is not None:
            random_points.setdefault(point.budget, {}).setdefault(point.plan_seed or 0, []).append(point)
    rows = []
    for entry in groups(result):
        plans = random_points.get(entry.budget)
        if entry.method == "random" or not plans or entry.metric is None:
            continue
        mine = [p for p in result.points if p.method == entry.method and p.budget == entry.budget and p.loss is not None]
        loss = statistics.fmean(p.loss for p in mine)
        metrics = [statistics.fmean(p.metric for p in seeds) for seeds in plans.values()]
        losses = [statistics.fmean(p.loss for p in seeds) for seeds in plans.values()]
        rows.append(AgainstRandom(
            method=entry.method, budget=entry.budget,
            beats_metric=sum(better(result.metric_name, entry.metric, value) for value in metrics),
            beats_loss=sum(loss < value for value in losses), randoms=len(plans),
        ))
    return rows
