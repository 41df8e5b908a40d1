"""Files a study writes: a CSV, a JSON and a paper-style PNG per factor, plus one combined JSON.

matplotlib is imported only here, and only when a figure is drawn; figures are rendered with the Agg
canvas directly (no pyplot state), so drawing works headless and never changes the user's backend.
"""

from __future__ import annotations

from pathlib import Path

from bitplan.atomic import atomic_write_bytes, atomic_write_text
from bitplan.study.config import StudyConfig, StudyFactor
from bitplan.study.result import FactorResult, StudyResult, points_to_csv

# One colour per bit-width (matplotlib's default cycle, fixed here so figures are comparable).
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
_FIGURE_NAMES = {
    StudyFactor.accumulation: "Figure 4",
    StudyFactor.frequency: "Figure 5",
    StudyFactor.depth: "Figure 6",
}


def write_study(result: StudyResult, directory: Path, *, plots: bool = True) -> list[Path]:
    """Write the study's files into ``directory`` (created if needed), each atomically.

    Files: ``<factor>.csv`` (one row per sweep point and bit-width), ``<factor>.json`` (a
    ``FactorResult``), ``<factor>.png`` (when ``plots``), and ``study.json`` (the whole ``StudyResult``).

    Args:
        result: what ``run_study`` returned.
        directory: output folder.
        plots: draw the PNG figures.

    Returns:
        The paths written, in writing order.
    """
    written = []
    for factor_result in result.factors:
        stem = directory / factor_result.factor.value
        written.append(atomic_write_text(stem.with_suffix(".csv"), points_to_csv(factor_result.points)))
        written.append(atomic_write_text(stem.with_suffix(".json"), factor_result.model_dump_json(indent=2) + "\n"))
        if plots:
            png = render_factor_png(factor_result, result.config)
            written.append(atomic_write_bytes(stem.with_suffix(".png"), png))
    written.append(atomic_write_text(directory / "study.json", result.model_dump_json(indent=2) + "\n"))
    return written


def render_factor_png(factor_result: FactorResult, config: StudyConfig) -> bytes:
    """Draw one factor in the paper's style and return the PNG bytes.

    Two panels, absolute and relative distance. In each: distance as solid lines on the left axis,
    its variance over trials as dashed lines on a log-scale right axis, one colour per bit-width; the
    sweep runs on a log x-axis (frequency is drawn decreasing, 512 → 9, as in the paper).
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    factor = factor_result.factor
    from bitplan.figures import log_ticks, new_figure, png_bytes

    figure = new_figure(11, 4.6, constrained=False)
    # Fixed margins: constrained layout measures every label many times and triples the drawing time.
    margins = {"left": 0.07, "right": 0.9, "bottom": 0.2, "top": 0.86, "wspace": 0.45}
    panels = figure.subplots(1, 2, gridspec_kw=margins)
    metrics = [
        ("absolute distance", "distance", "distance_variance", "mean |Ŷ − Y| per element"),
        ("relative distance", "relative_distance", "relative_variance", "mean |Ŷ − Y| / mean |Y|"),
    ]
    for axis, (title, mean_field, variance_field, label) in zip(panels, metrics):
        axis.set_title(title)
        variance_axis = axis.twinx()
        for index, bits in enumerate(config.bits):
            series = factor_result.series(bits)
            values = [point.value for point in series]
            colour = _COLOURS[index % len(_COLOURS)]
            axis.plot(values, [getattr(p, mean_field) for p in series], "-o", color=colour, markersize=4)
            variance_axis.plot(values, [getattr(p, variance_field) for p in series], "--s", color=colour, markersize=3)
        axis.set_yscale("log")
        variance_axis.set_yscale("log")
        if factor is not StudyFactor.depth:
            axis.set_xscale("log")
        sweep = config.sweep_values(factor)
        axis.set_xticks(sweep, [str(value) for value in sweep])
        # Minor ticks on four log axes cost most of the drawing time; 1-2-5 major ticks label even a
        # range narrower than one decade.
        log_ticks(axis, "y")
        log_ticks(variance_axis, "y")
        axis.xaxis.set_minor_locator(NullLocator())
        if factor is StudyFactor.frequency:
            axis.invert_xaxis()
        axis.set_ylabel(f"distance: {label}")
        variance_axis.set_ylabel("variance over trials (dashed, log)")
        axis.set_xlabel(factor_result.sweep)
        axis.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=_COLOURS[i % len(_COLOURS)], label=f"{b}-bit") for i, b in enumerate(config.bits)]
    handles += [
        Line2D([], [], color="black", linestyle="-", label="distance"),
        Line2D([], [], color="black", linestyle="--", label="variance"),
    ]
    # below the panels, where it hides no line (inside, "best" still covers points of some sweeps)
    figure.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize="small", frameon=False)
    figure.suptitle(
        f"{_FIGURE_NAMES[factor]}-style {factor.value} study: {config.quantize.value} operand quantized, "
        f"{config.distribution.value} entries, {config.trials} trials, fixed size {config.size}"
    )
    return png_bytes(figure)
