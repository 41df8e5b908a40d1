"""``bitplan plan ... --plot FILE``: a plan's bits per layer along depth, beside each layer's K and M.

Bars are the bits of each planned GEMM in profile order (hatched when pinned by ``--keep``; a
32-bit, unquantized layer is drawn one level above the top and labelled 32); on a
log-scale twin axis, lines show the accumulation K and the weight usage frequency M that the
paper's factors A and F rank by, so one can see which structure the bits follow.
"""

from __future__ import annotations

import textwrap

from pathlib import Path

from bitplan.errors import PlanError
from bitplan.plan.schema import BitPlan
from bitplan.profile.schema import ModelProfile

BAR_COLOUR, KEPT_COLOUR = "#4c72b0", "#999999"
K_COLOUR, M_COLOUR = "#d62728", "#2ca02c"


def plot_plan(plan: BitPlan, profile: ModelProfile, path: str | Path) -> Path:
    """Draw the plan's bits per layer with K and M on a log twin axis and write it (PNG, PDF or SVG by suffix).

    Args:
        plan: The plan to draw.
        profile: The profile the plan was made from (K and M of each layer, matched by name).
        path: Where to write the figure (atomically); its suffix picks the format.

    Returns:
        ``path``.

    Raises:
        PlanError: A planned layer is not in the profile (the plan is for another model).

    Example:
        >>> from bitplan.plan import make_plan
        >>> from bitplan.plan.synthetic import resnet20_profile
        >>> profile = resnet20_profile()
        >>> plot_plan(make_plan(profile, factor="A", strategy="C-", bits=(4, 8)), profile, "/tmp/plan.png")
        PosixPath('/tmp/plan.png')
    """
    from matplotlib.patches import Patch

    from bitplan.figures import integer_ticks, layer_axis_width, log_ticks, layer_ticks, new_figure, save_png
    from bitplan.plan.render import plan_title

    by_name = {layer.name: layer for layer in profile.layers}
    missing = [layer.name for layer in plan.layers if layer.name not in by_name]
    if missing:
        raise PlanError(
            f"plan layer `{missing[0]}` is not in the profile of {profile.model} ({len(missing)} missing); "
            "plot a plan with the profile of the model it was made for"
        )
    layers = plan.layers
    positions = list(range(len(layers)))
    width = layer_axis_width(len(layers))
    figure = new_figure(width, 5.0 if len(layers) <= 60 else 4.2)
    bits_axis = figure.subplots()
    shown_bits = [min(layer.bits, max(plan.levels) + 1) if layer.bits >= 32 else layer.bits for layer in layers]
    bars = bits_axis.bar(positions, shown_bits, color=[KEPT_COLOUR if layer.kept else BAR_COLOUR for layer in layers],
                         width=0.75, alpha=0.85, zorder=2)
    for bar, layer in zip(bars, layers):
        if layer.kept:
            bar.set_hatch("//")
        if layer.bits >= 32:  # drawn one above the top level; the label says what it is
            bits_axis.annotate("32", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                               fontsize=7, xytext=(0, 1), textcoords="offset points")
    bits_axis.set_ylim(0, max(max(shown_bits), max(plan.levels)) + 1.5)
    integer_ticks(bits_axis, "y")
    bits_axis.set_ylabel("bits (bars)")
    shape_axis = bits_axis.twinx()
    def statistic(layer: object, field: str) -> float:  # a lookup has no K or M: a gap in the line
        return float("nan") if layer.op.lookup else getattr(by_name[layer.name], field)

    shape_axis.plot(positions, [statistic(layer, "accumulation") for layer in layers], "o-", color=K_COLOUR,
                    markersize=3, label="accumulation K")
    shape_axis.plot(positions, [statistic(layer, "weight_frequency") for layer in layers], "s--", color=M_COLOUR,
                    markersize=3, label="usage frequency M")
    shape_axis.set_yscale("log")
    log_ticks(shape_axis, "y")
    shape_axis.set_ylabel("K and M (lines, log scale)")
    layer_ticks(bits_axis, [layer.name for layer in layers], width)
    handles = [Patch(color=BAR_COLOUR, label="bits"), *shape_axis.get_lines()]
    if any(layer.kept for layer in layers):
        handles.insert(1, Patch(facecolor=KEPT_COLOUR, hatch="//", label=f"kept (--keep, {plan.keep_bits} bits)"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small", frameon=False)
    # a long title (budget, rule, kept layers) wraps to the figure's width instead of running off it
    figure.suptitle("\n".join(textwrap.wrap(plan_title(plan), width=int(width * 14))), fontsize=10)
    bits_axis.grid(axis="y", alpha=0.3, zorder=0)
    return save_png(figure, Path(path))
