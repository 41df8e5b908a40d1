"""The sensitivity-validation section of ``bitplan compare``'s ``report.html``.

``bitplan compare`` inserts every ``<grid>/sections/*.html`` fragment into its report
(``bitplan.compare.html``). ``write_section`` renders one or more sensitivity reports into such a
fragment: the rank correlations of A, F, D, capacity and MACs with the measured sensitivity
(Spearman ρ and Kendall τ with 95% bootstrap CIs), the paper's expected signs, and one scatter
plot per report embedded as a ``data:`` URI, so the fragment is self-contained like the page.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path

from pydantic import ValidationError

from bitplan.atomic import atomic_write_text
from bitplan.errors import SpecError
from bitplan.sensitivity_analysis.schema import FactorCorrelation, SensitivityReport
from bitplan.sensitivity_analysis.validate import FACTORS, scatter, validate

SECTION_FILE = "50-sensitivity.html"

# The seed paper's rules, as the sign a factor's rank correlation with sensitivity should have:
# C− on A (more accumulation → fewer bits) says a large-A layer is LESS sensitive; C+ on F says a
# frequently used weight is MORE sensitive; depth has no clear effect; capacity and MACs no rule.
EXPECTED = {"A": "ρ < 0 (C−)", "F": "ρ > 0 (C+)", "D": "no clear effect", "capacity": "—", "macs": "—"}


def load_report(path: str | Path) -> SensitivityReport:
    """Read a ``bitplan sensitivity -o sens.json`` file.

    Raises:
        SpecError: the file is missing or is not a sensitivity report.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sensitivity report `{path}` does not exist; write one with `bitplan sensitivity MODEL -o {path}`")
    try:
        return SensitivityReport.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        raise SpecError(
            f"`{path}` is not a sensitivity report ({error.error_count()} problem(s), first: "
            f"{error.errors()[0]['msg']}); pass a file written by `bitplan sensitivity ... -o FILE`"
        ) from None


def render_section(
    reports: Sequence[SensitivityReport | str | Path], *, plots: bool = True, resamples: int = 1000, seed: int = 0
) -> str:
    """An HTML fragment (no ``<html>``/``<body>``) validating the structural factors against the reports.

    Reports that carry no ``validation`` yet (measured without ``--validate``) are validated here.

    Args:
        reports: sensitivity reports, or paths of ``sens.json`` files; one table row (and plot) each.
        plots: embed one scatter plot (factor against sensitivity) per report.
        resamples, seed: bootstrap of the confidence intervals, for reports validated here.

    Returns:
        The fragment: a heading, two tables (Spearman, Kendall) and the plots.

    Raises:
        ValueError: ``reports`` is empty.
        SpecError: a path is missing or not a sensitivity report.

    Example:
        >>> html = render_section(["runs/sens/trained-fisher.json"])  # doctest: +SKIP
        >>> html.startswith('<section class="sensitivity">')  # doctest: +SKIP
        True
    """
    if not reports:
        raise ValueError("`reports` is empty; give at least one sensitivity report or sens.json path")
    loaded = [report if isinstance(report, SensitivityReport) else load_report(report) for report in reports]
    validated = [
        report if report.validation else report.model_copy(
            update={"validation": validate(report, resamples=resamples, seed=seed)})
        for report in loaded
    ]
    parts = [
        '<section class="sensitivity">',
        "<h2>Do the structural factors rank layers like measured sensitivity?</h2>",
        "<p class=\"meta\">Rank correlation over each model's weight GEMMs between a structural factor and "
        "the measured sensitivity (larger = more sensitive, whatever the method), with 95% paired bootstrap "
        "confidence intervals over layers. Bold: the interval excludes zero. Expected under the paper's rules: "
        + "; ".join(f"{escape(factor)}: {escape(rule)}" for factor, rule in EXPECTED.items() if rule != "—")
        + ". Few layers give wide intervals.</p>",
        _table(validated, "spearman", "Spearman ρ"),
        _table(validated, "kendall", "Kendall τ-b"),
    ]
    if plots:
        parts.append('<div class="figures">' + "".join(_figure(report) for report in validated) + "</div>")
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def write_section(
    grid: str | Path, reports: Sequence[SensitivityReport | str | Path], *, name: str = SECTION_FILE, **options
) -> Path:
    """Write ``render_section(reports)`` where ``bitplan compare``'s report picks it up.

    The next ``bitplan report GRID`` (or a finishing ``bitplan compare``) includes it; sections are
    inserted in file-name order, so several files (one ``name`` each) sit side by side.

    Args:
        grid: a ``bitplan compare --out`` directory.
        reports, options: as ``render_section``.
        name: the fragment's file name in ``GRID/sections/`` (``.html``).

    Returns:
        The fragment's path, ``GRID/sections/50-sensitivity.html`` by default.

    Raises:
        ValueError: ``name`` is not a plain ``.html`` file name.
    """
    from bitplan.compare.html import SECTIONS_DIR

    if Path(name).name != name or not name.endswith(".html"):
        raise ValueError(f"`name` {name!r} must be a plain file name ending in .html, e.g. {SECTION_FILE!r}")
    return atomic_write_text(Path(grid) / SECTIONS_DIR / name, render_section(reports, **options))


def describe(report: SensitivityReport) -> str:
    """One line naming what was measured, e.g. ``zoo:resnet20 on digits — fisher, 4 bits, checkpoint``."""
    weights = report.initialization.value
    return (
        f"{report.model} on {report.data} — {report.method.value}, {report.bits} bits, {weights} weights, "
        f"{report.batches}×{report.batch_size} samples, {len(report.layers)} layers"
    )


DESCRIPTION_COLUMNS = ("model", "data", "method", "bits", "weights", "layers")


def _table(reports: Sequence[SensitivityReport], statistic: str, label: str) -> str:
    head = "".join(f'<th class="left">{name}</th>' for name in DESCRIPTION_COLUMNS)
    head += "".join(f"<th>{escape(factor)}</th>" for factor in FACTORS)
    rows = []
    for report in reports:
        described = (report.model, report.data, report.method.value, str(report.bits),
                     report.initialization.value, str(len(report.layers)))
        lead = "".join(f'<td class="left">{_breakable(text)}</td>' for text in described)
        by_factor = {record.factor: record for record in report.validation}
        cells = "".join(_cell(by_factor.get(factor), statistic) for factor in FACTORS)
        rows.append(f"<tr>{lead}{cells}</tr>")
    return f"<table><caption>{escape(label)} [95% CI]</caption><tr>{head}</tr>" + "".join(rows) + "</table>"


def _breakable(text: str) -> str:
    """Escaped ``text`` that may wrap after ``?`` and ``&`` (long model specs have no spaces)."""
    return escape(text).replace("?", "?<wbr>").replace("&amp;", "&amp;<wbr>")


def _cell(record: FactorCorrelation | None, statistic: str) -> str:
    if record is None or getattr(record, statistic) is None:
        note = "" if record is None else record.note
        return f'<td title="{escape(note)}">—</td>'
    value: float = getattr(record, statistic)
    interval: tuple[float, float] | None = getattr(record, f"{statistic}_ci")
    if interval is None:
        return f'<td style="white-space: nowrap">{value:+.2f}<br><span class="var">[—]</span></td>'
    text = f"{value:+.2f}"
    if interval[0] > 0 or interval[1] < 0:
        text = f"<strong>{text}</strong>"
    # the interval on its own unbroken line under the value keeps five factor columns within a page
    return f'<td style="white-space: nowrap">{text}<br><span class="var">[{interval[0]:+.2f}, {interval[1]:+.2f}]</span></td>'


def _figure(report: SensitivityReport) -> str:
    from bitplan.compare.html import Picture, figure_html

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scatter.png"
        scatter(report, path)
        png = path.read_bytes()
    return figure_html(Picture(png, f"Structural factors against sensitivity: {describe(report)}."))
