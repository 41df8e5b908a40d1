"""A grid's files: ``results.json/.md/.csv``, the figures and ``report.html``; and re-rendering them.

``render_report(DIR)`` re-reads a grid from disk (``results.json`` names every plan file and run
directory; every number is read again from the plans and the runs' ``final.json``) and rewrites
all of it, so a grid that is still running, was interrupted, or was copied elsewhere can be
reported at any time. ``report(DIR)`` does that for a grid, or draws a training run's curves.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bitplan.atomic import atomic_write_bytes, atomic_write_text
from bitplan.compare.html import Picture, extra_sections, grid_page
from bitplan.compare.result import GridResult
from bitplan.compare.run_report import RunReport, is_run_directory, render_run_report
from bitplan.compare.summarize import cells_of, summarize_grid
from bitplan.compare.tables import csv_text, layer_bits, markdown
from bitplan.errors import TrainingError

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
REPORT_HTML = "report.html"
VARIANCE_PNG = "figure7.png"


def bars_png(factor: str) -> str:
    """File name of one factor's bar chart."""
    return f"bars_{factor}.png"


def write_tables(result: GridResult, directory: Path) -> list[Path]:
    """``results.json``, ``results.md`` and ``results.csv`` (cheap: written after every finished run)."""
    return [
        atomic_write_text(directory / RESULTS_JSON, result.model_dump_json(indent=2) + "\n"),
        atomic_write_text(directory / RESULTS_MD, markdown(result, layer_bits(result, directory))),
        atomic_write_text(directory / RESULTS_CSV, csv_text(result)),
    ]


def write_report(result: GridResult, directory: Path) -> list[Path]:
    """The tables, the figures (Figure 7 style and one bar chart per factor) and ``report.html``.

    Returns:
        Every path written.
    """
    from bitplan.compare.figures import factor_bars, variance_figure

    written = write_tables(result, directory)
    pictures = [
        Picture(
            variance_figure(result),
            "Mean final metric per strategy; circle area ∝ variance over seeds (Figure 7 style).",
        )
    ]
    written.append(atomic_write_bytes(directory / VARIANCE_PNG, pictures[0].png))
    for factor in (factor.value for factor in result.config.factors):
        png = factor_bars(result, factor)
        pictures.append(Picture(png, f"Factor {factor}: mean ± one standard deviation over seeds, with plan size."))
        written.append(atomic_write_bytes(directory / bars_png(factor), png))
    html = grid_page(result, pictures, extra_sections(directory), layer_bits(result, directory))
    written.append(atomic_write_text(directory / REPORT_HTML, html))
    return written


def load_grid(directory: str | Path) -> GridResult:
    """Read a grid's ``results.json``.

    Raises:
        TrainingError: The file is missing or not a grid result.
    """
    path = Path(directory) / RESULTS_JSON
    if not path.is_file():
        raise TrainingError(f"`{path}` does not exist; `bitplan report` needs a grid written by `bitplan compare --out DIR`")
    try:
        return GridResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        raise TrainingError(
            f"`{path}` is not a bitplan compare result ({error.error_count()} problem(s), first: "
            f"{error.errors()[0]['msg']}); re-run `bitplan compare` to rewrite it"
        ) from None


def render_report(directory: str | Path) -> GridResult:
    """Re-read a grid from its directory and rewrite its tables, figures and ``report.html``.

    Args:
        directory: A grid directory written by ``run_grid`` / ``bitplan compare``.

    Returns:
        The grid's result, recomputed from the plan files and the runs' ``final.json``.

    Raises:
        TrainingError: ``results.json`` is missing or malformed.

    Example:
        >>> result = render_report("runs/compare")  # doctest: +SKIP
        >>> result.row("A", "C-").mean  # doctest: +SKIP
        96.8
    """
    folder = Path(directory)
    stored = load_grid(folder)
    config = stored.config.model_copy(update={"out": folder})  # the grid may have been moved or copied
    result = summarize_grid(config, cells_of(stored), folder, metric_name=stored.metric_name)
    write_report(result, folder)
    return result


def report(directory: str | Path) -> GridResult | RunReport:
    """``bitplan report DIR``: re-render a grid, or draw a training run's (or seeds') curves.

    Raises:
        TrainingError: ``directory`` is neither a grid nor a run directory.
    """
    folder = Path(directory)
    if (folder / RESULTS_JSON).is_file():
        return render_report(folder)
    if is_run_directory(folder):
        return render_run_report(folder)
    raise TrainingError(
        f"`{folder}` is neither a grid (results.json) nor a training run (metrics.jsonl or summary.json); "
        "pass a directory written by `bitplan compare --out DIR` or `bitplan train --out DIR`"
    )
