"""How well do the structural factors (A, F, D, capacity, MACs) rank layers like measured sensitivity?"""

from __future__ import annotations

import math

import numpy as np

from bitplan.sensitivity_analysis.schema import FactorCorrelation, SensitivityReport

FACTORS = {
    "A": "accumulation",
    "F": "weight_frequency",
    "D": "depth",
    "capacity": "params",
    "macs": "macs",
}
UNDEFINED_FOR_LOOKUPS = ("accumulation", "weight_frequency")
"""A lookup (an embedding table read by ids) has no reduction and no reuse: A and F skip it."""


def applicable(report: SensitivityReport, field: str) -> list:
    """The report's layers a factor ranks: all of them, but A and F only the GEMMs (K ≥ 1)."""
    if field in UNDEFINED_FOR_LOOKUPS:
        return [layer for layer in report.layers if layer.accumulation > 0]
    return list(report.layers)


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def correlate(
    factor: np.ndarray, sensitivity: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float | None, tuple | None, float | None, tuple | None, str]:
    """Spearman ρ and Kendall τ-b (scipy.stats) with paired percentile bootstrap CIs over layers.

    Resamples in which either vector is constant have no rank correlation and are dropped (with a
    handful of layers that happens often; scipy's own bootstrap would return NaN bounds then).
    Returns (rho, rho_ci, tau, tau_ci, note); a constant vector has no rank correlation (None).
    """
    from scipy import stats

    factor, sensitivity = np.asarray(factor, dtype=float), np.asarray(sensitivity, dtype=float)
    if len(factor) < 3:
        return None, None, None, None, "fewer than 3 layers"
    if np.ptp(factor) == 0 or np.ptp(sensitivity) == 0:
        return None, None, None, None, "constant over the layers: no ranking to compare"
    rho = _finite(stats.spearmanr(factor, sensitivity).statistic)
    tau = _finite(stats.kendalltau(factor, sensitivity).statistic)
    rng = np.random.default_rng(seed)
    rhos, taus = [], []
    for _ in range(resamples):
        pick = rng.integers(0, len(factor), len(factor))
        x, y = factor[pick], sensitivity[pick]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        rhos.append(stats.spearmanr(x, y).statistic)
        taus.append(stats.kendalltau(x, y).statistic)
    tail = 100 * (1 - level) / 2
    cis = [
        (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if len(values) >= 10 else None
        for values in (rhos, taus)
    ]
    kept = f"{len(rhos)} of {resamples} resamples usable" if len(rhos) < resamples else ""
    return rho, cis[0], tau, cis[1], kept


def validate(report: SensitivityReport, *, resamples: int = 1000, seed: int = 0) -> list[FactorCorrelation]:
    """One correlation record per structural factor, over the report's layers."""
    results = []
    for factor, field in FACTORS.items():
        layers = applicable(report, field)
        values = np.array([getattr(layer, field) for layer in layers], dtype=float)
        sensitivity = np.array([layer.sensitivity for layer in layers], dtype=float)
        rho, rho_ci, tau, tau_ci, note = correlate(values, sensitivity, resamples=resamples, seed=seed)
        results.append(
            FactorCorrelation(
                factor=factor, spearman=rho, spearman_ci=rho_ci, kendall=tau, kendall_ci=tau_ci,
                layers=len(values), note=note,
            )
        )
    return results


SCATTER_COLUMNS = 3  # panels per row: five factors in a 3 + 2 grid, not a 20-inch strip


def scatter(report: SensitivityReport, path) -> None:
    """One panel per factor: factor value (log) against measured sensitivity, ρ in the title."""
    from bitplan.figures import integer_ticks, log_ticks, new_figure, save_png

    correlations = {c.factor: c for c in (report.validation or validate(report))}
    rows = -(-len(FACTORS) // SCATTER_COLUMNS)
    figure = new_figure(3.6 * SCATTER_COLUMNS, 3.1 * rows)
    panels = figure.subplots(rows, SCATTER_COLUMNS, squeeze=False).ravel()
    for axis, (factor, field) in zip(panels, FACTORS.items()):
        layers = applicable(report, field)
        values = [getattr(layer, field) for layer in layers]
        sensitivity = [layer.sensitivity for layer in layers]
        axis.scatter(values, sensitivity, s=18)
        if field == "depth":  # a small whole number: linear, integer ticks
            integer_ticks(axis, "x")
        else:
            axis.set_xscale("log")
            log_ticks(axis, "x")
        if sensitivity and min(sensitivity) > 0:
            axis.set_yscale("log")
            log_ticks(axis, "y")
        row = correlations.get(factor)
        rho = row.spearman if row is not None else None
        axis.set_title(f"{factor}: ρ = {rho:.2f}" if rho is not None else f"{factor}: ρ undefined", fontsize=10)
        axis.set_xlabel(field)
        axis.set_ylabel("sensitivity")
    for unused in panels[len(FACTORS):]:
        unused.set_axis_off()
    figure.suptitle(
        f"{report.model} on {report.data} ({report.initialization.value}): "
        f"{report.method.value} sensitivity at {report.bits} bits"
    )
    save_png(figure, path)
