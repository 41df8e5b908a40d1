"""What every bitplan figure shares: an Agg canvas, layout that never clips, integer and name ticks.

Figures are drawn on their own Agg canvas (no pyplot state), so they render headless and never
change the user's backend; matplotlib is imported only when a figure is drawn (``import bitplan``
stays lean). Layout is matplotlib's constrained layout and PNGs are saved with
``bbox_inches="tight"``, so titles and rotated tick labels are never cut off.

Layer axes use the row numbering of every table: the 0-based position of the GEMM in the file's
``layers`` list (``jq '.layers[3]'``). With at most ``MAX_NAMED_TICKS`` layers the ticks are the
layer names themselves; with more, integer indices.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bitplan.errors import BitplanError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
MAX_NAMED_TICKS = 60
# Horizontal room per layer on a layer axis (inches) and the range of figure widths (inches).
INCHES_PER_LAYER = 0.15
MIN_WIDTH, MAX_WIDTH = 6.0, 14.0
# Rotated names are set in at most this size; smaller when layers are dense, never below the floor.
NAME_FONT_POINTS, MIN_NAME_FONT_POINTS = 8.0, 5.0
LAYER_AXIS_LABEL = "GEMM (0-based index in profile order)"


def new_figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    """A ``width`` × ``height`` inch figure on its own Agg canvas, with constrained layout.

    Args:
        width, height: Size in inches (at ``DPI`` dots per inch).
        constrained: Lay out with matplotlib's constrained layout (titles and labels never clipped);
            off only for figures that fix their margins by hand.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(figure)
    return figure


FIGURE_FORMATS = ("png", "pdf", "svg")
"""File suffixes a figure is written as (the suffix picks the format; PNG bytes in a .pdf would not open)."""


def figure_format(path: str | Path) -> str:
    """The format ``path``'s suffix names, checked before any work so nothing is written for a bad name.

    Raises:
        BitplanError: The suffix is not one of ``FIGURE_FORMATS``.
    """
    suffix = Path(path).suffix.lower().removeprefix(".")
    if suffix not in FIGURE_FORMATS:
        raise BitplanError(
            f"cannot draw a figure to `{path}`: its suffix names no figure format; end the file name in "
            + ", ".join(f".{name}" for name in FIGURE_FORMATS)
            + "."
        )
    return suffix


def png_bytes(figure: Figure, format: str = "png") -> bytes:
    """Render ``figure`` to bytes of ``format`` (PNG by default), the bounding box grown to hold every label."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format, dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def save_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` atomically in the format its suffix names (PNG, PDF or SVG); returns ``path``.

    Raises:
        BitplanError: The suffix names no figure format.
    """
    from bitplan.atomic import atomic_write_bytes

    return atomic_write_bytes(Path(path), png_bytes(figure, figure_format(path)))


def layer_axis_width(layers: int) -> float:
    """Figure width (inches) that gives ``layers`` named ticks room without a strip-like aspect."""
    return min(MAX_WIDTH, max(MIN_WIDTH, 1.5 + INCHES_PER_LAYER * layers))


def integer_ticks(axis: Axes, which: str = "x") -> None:
    """Only whole numbers on ``axis``'s ``which`` ("x" or "y") axis: GEMM indices, epochs, counts."""
    from matplotlib.ticker import MaxNLocator

    target = axis.xaxis if which == "x" else axis.yaxis
    target.set_major_locator(MaxNLocator(integer=True))


def layer_ticks(axis: Axes, names: Sequence[str], width: float) -> None:
    """Label the x axis of a per-layer plot: layer names when there are few, integer indices otherwise.

    Args:
        axis: Axes whose x positions 0..len(names)-1 are the layers.
        names: Layer names in the order they are drawn.
        width: The figure's width in inches (sets the names' font size so they do not overlap).
    """
    axis.set_xlim(-0.6, len(names) - 0.4)
    if 0 < len(names) <= MAX_NAMED_TICKS:
        spacing_points = 72.0 * width * 0.85 / len(names)
        size = max(MIN_NAME_FONT_POINTS, min(NAME_FONT_POINTS, 0.75 * spacing_points))
        axis.set_xticks(range(len(names)), [f"{index} {name}" for index, name in enumerate(names)],
                        rotation=90, fontsize=size)
        axis.set_xlabel("GEMM (0-based index and name, profile order)")
    else:
        integer_ticks(axis, "x")
        axis.set_xlabel(LAYER_AXIS_LABEL)


def log_ticks(axis: Axes, which: str = "x") -> None:
    """Readable log-scale ticks: labelled 1-2-5 major ticks (``0.2``, ``5,000``), no minor labels.

    matplotlib labels minor ticks of a log axis spanning less than about a decade, and those labels
    (``2×10²  3×10²  4×10²``) collide; 1-2-5 major ticks label even a narrow range.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    target = axis.xaxis if which == "x" else axis.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.6g}"))
    target.set_minor_locator(NullLocator())
