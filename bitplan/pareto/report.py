"""A sweep's files: ``pareto.json/.csv/.md``, ``pareto.png``, the HTML section and ``report.html``.

The section (``sections/60-pareto.html``) is a self-contained fragment like every section of
``bitplan compare``'s report: copy it into a grid's ``sections/`` folder and ``bitplan report GRID``
shows it there too (bitplan.compare.html).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from bitplan.atomic import atomic_write_bytes, atomic_write_text
from bitplan.compare.html import SECTIONS_DIR, Picture, figure_html, page
from bitplan.pareto.result import ParetoResult
from bitplan.pareto.summary import Group, against_random, groups
from bitplan.train import MetricName

PARETO_JSON = "pareto.json"
PARETO_CSV = "pareto.csv"
PARETO_MD = "pareto.md"
PARETO_PNG = "pareto.png"
REPORT_HTML = "report.html"
SECTION_FILE = "60-pareto.html"

CSV_COLUMNS = (
    "method", "budget", "seed", "plan_seed", "avg_bits", "mbit", "bitops", "metric", "metric_name", "loss",
    "correct", "predictions", "status", "plan", "run",
)


def csv_text(result: ParetoResult) -> str:
    """One row per point."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for point in result.points:
        row = point.model_dump(mode="json")
        writer.writerow({column: "" if row[column] is None else row[column] for column in CSV_COLUMNS})
    return buffer.getvalue()


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(entry: Group) -> str:
    if entry.metric is None:
        return "–"
    if entry.low is None:
        return _number(entry.metric)
    return f"{entry.metric:.2f} [{entry.low:.2f}, {entry.high:.2f}]"


def summary_rows(result: ParetoResult) -> list[list[str]]:
    """Table rows: method, budget, n, mean bits, MBit, metric [95 % CI], loss, best / median / worst."""
    rows = []
    for entry in groups(result):
        spread = (
            f"{_number(entry.best)} / {_number(entry.median)} / {_number(entry.worst)}" if entry.n > 1 else ""
        )
        rows.append([
            entry.method, f"{entry.budget:g}", str(entry.n), f"{entry.avg_bits:.3f}", f"{entry.mbit:.4f}",
            _interval(entry), _number(entry.loss, 4), spread,
        ])
    return rows


def summary_header(result: ParetoResult) -> list[str]:
    short = "accuracy %" if result.metric_name is MetricName.accuracy else "perplexity"
    return ["method", "budget", "n", "mean bits", "MBit", f"{short} [95% CI]", "test loss", "best / median / worst"]


def _by_budget(entries: list, cell: Callable[[Any], str]) -> tuple[list[str], list[list[str]]]:
    """Methods × budgets: one row per method (in order), one column per budget, ``cell(entry)`` in each."""
    budgets = sorted({entry.budget for entry in entries})
    rows = []
    for method in dict.fromkeys(entry.method for entry in entries):
        cells = {entry.budget: entry for entry in entries if entry.method == method}
        rows.append([method, *(cell(cells[budget]) if budget in cells else "" for budget in budgets)])
    return ["method", *(f"{budget:g} bits" for budget in budgets)], rows


def random_table(result: ParetoResult) -> tuple[list[str], list[list[str]]]:
    """How many random plans of the budget each method beats, by the metric and by the loss."""
    return _by_budget(against_random(result), lambda row: (
        f"{row.beats_metric}/{row.randoms} · loss {row.beats_loss}/{row.randoms}"))


def pivot(result: ParetoResult) -> tuple[list[str], list[list[str]]]:
    """At a glance: each cell the mean metric [95 % CI] and, below it, the test loss."""
    return _by_budget(groups(result), lambda entry: f"{_interval(entry)}<br>loss {_number(entry.loss, 3)}")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def describe(result: ParetoResult) -> str:
    """One paragraph: what was swept and how it was scored."""
    config = result.config
    how = (
        "post-training quantization of the checkpoint (PTQ)" if config.eval.value == "ptq"
        else f"quantization-aware fine-tuning from the checkpoint ({config.train.epochs if config.train else 1} "
        f"epoch(s), seeds {', '.join(map(str, config.seeds))})"
    )
    baseline = result.baseline
    return (
        f"{result.model} on {config.data}; levels {','.join(map(str, config.levels))}"
        f"{', weight-only' if config.weight_only else ''}; scored by {how}; {config.random_plans} random plan(s) per "
        f"budget. Full precision: {result.metric_name.value} {baseline.metric:.3f}, test loss {baseline.loss:.4f}."
    )


def markdown(result: ParetoResult) -> str:
    """``pareto.md``: the summary table, the table against random plans, and what was skipped."""
    text = f"# Pareto sweep\n\n{describe(result)}\n\n" + _markdown_table(*pivot(result))
    text += "\n## Every method and budget\n\n" + _markdown_table(summary_header(result), summary_rows(result))
    header, rows = random_table(result)
    if rows:
        text += (
            "\n## Against random plans of the same budget\n\nRandom plans each method is strictly better than, "
            "by the metric and by the test loss.\n\n" + _markdown_table(header, rows)
        )
    if result.skipped:
        text += "\n## No plan\n\n" + "".join(f"- {s.method} at {s.budget:g}: {s.reason}\n" for s in result.skipped)
    return text


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="left">{escape(cell)}</td>' if index == 0 else f"<td>{escape(cell)}</td>"
            for index, cell in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def section(result: ParetoResult, png: bytes) -> str:
    """The report section: the figure, the summary table and the table against random plans."""
    header, rows = random_table(result)
    return (
        '<section class="pareto"><h2>Pareto sweep: metric against mean bits</h2>'
        f'<p class="meta">{escape(describe(result))}</p>'
        + figure_html(Picture(png, "Test metric and loss against mean bits: a line per method, uniform as points, "
                                   "random plans as a band (min–max) with their median."))
        + _html_table(summary_header(result), summary_rows(result))
        + (("<h3>Against random plans of the same budget (beaten by metric · by loss)</h3>" + _html_table(header, rows))
           if rows else "")
        + "".join(f'<p class="meta">No {escape(s.method)} plan at {s.budget:g}: {escape(s.reason)}</p>' for s in result.skipped)
        + "</section>"
    )


def is_sweep(directory: Path) -> bool:
    """A ``bitplan pareto`` folder (it holds ``pareto.json``)."""
    return (Path(directory) / PARETO_JSON).is_file()


def render_pareto(directory: str | Path) -> ParetoResult:
    """Re-read ``pareto.json`` and rewrite the tables, the figure, the section and ``report.html``.

    Raises:
        TrainingError: ``pareto.json`` is missing or not a sweep result.
    """
    from pydantic import ValidationError

    from bitplan.errors import TrainingError

    path = Path(directory) / PARETO_JSON
    if not path.is_file():
        raise TrainingError(f"`{path}` does not exist; pass a folder written by `bitplan pareto -o DIR`")
    try:
        result = ParetoResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        raise TrainingError(
            f"`{path}` is not a bitplan pareto result ({error.errors()[0]['msg']}); run `bitplan pareto` again to rewrite it"
        ) from None
    write_outputs(result, Path(directory))
    return result


def write_outputs(result: ParetoResult, directory: Path) -> list[Path]:
    """Every file of the sweep's summary, each written atomically."""
    from bitplan.pareto.figure import pareto_figure

    png = pareto_figure(result)
    fragment = section(result, png)
    return [
        atomic_write_text(directory / PARETO_JSON, result.model_dump_json(indent=2) + "\n"),
        atomic_write_text(directory / PARETO_CSV, csv_text(result)),
        atomic_write_text(directory / PARETO_MD, markdown(result)),
        atomic_write_bytes(directory / PARETO_PNG, png),
        atomic_write_text(directory / SECTIONS_DIR / SECTION_FILE, fragment),
        atomic_write_text(directory / REPORT_HTML, page(f"bitplan pareto: {result.model}", fragment)),
    ]
