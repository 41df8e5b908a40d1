"""``bitplan report RUN_DIR`` for a training run: its curves as a PNG and a small self-contained HTML.

Works on a single run directory (``metrics.jsonl``, ``final.json``) and on a multi-seed one
(``summary.json`` and ``seed-<s>/`` folders, as ``bitplan train --seeds`` writes), drawing one curve
per seed.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bitplan.atomic import atomic_write_bytes, atomic_write_text
from bitplan.compare.figures import curves_figure
from bitplan.compare.html import Picture, figure_html, page
from bitplan.errors import TrainingError
from bitplan.train import MetricName, RunResult
from bitplan.train.loop import read_metrics, read_result

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
REPORT_FILE = "report.html"


class RunReport(BaseModel):
    """What ``bitplan report`` wrote for a training run directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    directory: str
    runs: list[str] = Field(description="Run directories drawn (one per seed).")
    metric_name: MetricName
    final: dict[str, float | None] = Field(description="Run directory -> final test metric (null if unfinished).")
    files: list[str] = Field(description="Files written.")


def is_run_directory(directory: Path) -> bool:
    """A single run (``metrics.jsonl``) or a multi-seed run (``summary.json``)."""
    return (directory / METRICS_FILE).is_file() or (directory / SUMMARY_FILE).is_file()


def run_directories(directory: Path) -> list[Path]:
    """The single runs under ``directory``: itself, or its ``seed-<s>/`` folders in seed order."""
    if (directory / METRICS_FILE).is_file():
        return [directory]
    seeds = [path for path in directory.glob("seed-*") if (path / METRICS_FILE).is_file()]
    return sorted(seeds, key=lambda path: (len(path.name), path.name))  # seed-2 before seed-10


def render_run_report(directory: str | Path) -> RunReport:
    """Draw ``curves.png`` and write ``report.html`` for a training run directory.

    Args:
        directory: A run directory of ``bitplan train`` (single seed or several).

    Returns:
        What was drawn and written.

    Raises:
        TrainingError: No ``metrics.jsonl`` in the directory or its ``seed-*`` folders.
    """
    folder = Path(directory)
    runs = run_directories(folder)
    if not runs:
        raise TrainingError(
            f"`{folder}` holds no metrics.jsonl (nor seed-*/metrics.jsonl); pass a run directory written by "
            "`bitplan train --out DIR` or a grid written by `bitplan compare --out DIR`"
        )
    series = {run.name: read_metrics(run) for run in runs}
    results = {run.name: read_result(run) for run in runs}
    metric = next((result.metric_name for result in results.values() if result is not None), MetricName.accuracy)
    png = curves_figure(series, metric)
    written = [atomic_write_bytes(folder / CURVES_FILE, png)]
    html = _page(folder, series, results, metric, png)
    written.append(atomic_write_text(folder / REPORT_FILE, html))
    return RunReport(
        directory=str(folder),
        runs=[str(run) for run in runs],
        metric_name=metric,
        final={label: (result.metric if result else None) for label, result in results.items()},
        files=[str(path) for path in written],
    )


def _page(folder: Path, series: dict[str, list[dict]], results: dict[str, RunResult | None], metric: MetricName, png: bytes) -> str:
    rows = []
    for label, lines in series.items():
        result = results[label]
        status = result.status if result else "unfinished"
        final = "" if result is None or result.metric is None else f"{result.metric:.3f}"
        rows.append(
            f'<tr><td class="left">{escape(label)}</td><td class="left">{status}</td><td>{len(lines)}</td>'
            f"<td>{final}</td><td>{'' if result is None else f'{result.seconds:.1f}'}</td></tr>"
        )
    epochs = []
    for label, lines in series.items():
        for line in lines:
            epochs.append(
                f'<tr><td class="left">{escape(label)}</td><td>{line["epoch"]}</td><td>{line["train_loss"]:.4f}</td>'
                f'<td>{line["test_loss"]:.4f}</td><td>{line["metric"]:.3f}</td><td>{line["lr"]:.4g}</td></tr>'
            )
    body = (
        f"<h1>bitplan run: {escape(str(folder))}</h1>"
        '<table><tr><th class="left">run</th><th class="left">status</th><th>epochs</th>'
        f"<th>final {metric.value}</th><th>seconds</th></tr>{''.join(rows)}</table>"
        f"{figure_html(Picture(png, 'Loss and test metric per epoch'))}"
        '<h2>Per epoch</h2><table><tr><th class="left">run</th><th>epoch</th><th>train loss</th><th>test loss</th>'
        f"<th>{metric.value}</th><th>lr</th></tr>{''.join(epochs)}</table>"
    )
    return page(f"bitplan run {folder.name}", body)
