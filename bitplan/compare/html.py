"""``report.html``: one self-contained page — inline CSS, figures as base64 PNG, no external URL.

It opens from disk in any browser with no network. Extra sections are a hook for other parts of
bitplan (e.g. sensitivity validation): every ``<grid>/sections/*.html`` fragment is inserted, in
file-name order, after the grid's own sections. A fragment is plain HTML (no ``<html>``/``<body>``)
and must itself be self-contained (images as ``data:`` URIs).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from bitplan.compare.result import GridResult
from bitplan.compare.tables import LayerBits, best_rows, metric_short, twin_notes
from bitplan.train import MetricName

SECTIONS_DIR = "sections"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f5f8; } td.left, th.left { text-align: left; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
td.best { font-weight: bold; background: #e8f4e8 !important; }
.var { color: #666; font-size: 0.85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
"""


@dataclass(frozen=True)
class Picture:
    """A figure to embed: PNG bytes and a caption."""

    png: bytes
    caption: str


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_html(picture: Picture) -> str:
    return (
        f'<figure><img alt="{escape(picture.caption)}" src="{data_uri(picture.png)}">'
        f"<figcaption>{escape(picture.caption)}</figcaption></figure>"
    )


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body`` with the inline style sheet."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def extra_sections(directory: Path) -> list[str]:
    """The HTML fragments in ``directory/sections/*.html``, in file-name order (the extension hook)."""
    folder = directory / SECTIONS_DIR
    if not folder.is_dir():
        return []
    return [path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.html"))]


def _outcome_cell(mean: float | None, variance: float | None, pending: int, best: bool) -> str:
    if mean is None:
        return f"<td>{'pending' if pending else 'failed'}</td>"
    css = ' class="best"' if best else ""
    return f'<td{css}>{mean:.2f} <span class="var">({variance:.3f})</span></td>'


def grid_tables(result: GridResult) -> str:
    """Table 1 (metric per strategy × factor), Table 2 (MBit) and every cell's numbers, as HTML."""
    short = metric_short(result.metric_name)
    factors = [factor.value for factor in result.config.factors]
    best = best_rows(result)
    by_cell = {(row.factor.value, row.strategy.value): row for row in result.rows}
    head = "".join(f"<th>{short}-{escape(f)}</th>" for f in factors)
    size_head = "".join(f"<th>Size-{escape(f)}</th>" for f in factors)
    outcome_rows, size_rows = [], []
    for strategy in (s.value for s in result.config.strategies):
        cells = [by_cell.get((f, strategy)) for f in factors]
        bits = next((row.bits for row in cells if row is not None), "")
        lead = f'<td class="left">{escape(bits)}</td><td class="left">{escape(strategy)}</td>'
        outcome = "".join(
            _outcome_cell(row.mean, row.variance, row.pending, (f, strategy) in best) if row else "<td></td>"
            for f, row in zip(factors, cells)
        )
        sizes = "".join(f"<td>{row.mbit:.4g}</td>" if row else "<td></td>" for row in cells)
        outcome_rows.append(f"<tr>{lead}{outcome}</tr>")
        size_rows.append(f"<tr>{lead}{sizes}</tr>")
    detail_rows = []
    for row in result.rows:
        mean = "" if row.mean is None else f"{row.mean:.3f}"
        variance = "" if row.variance is None else f"{row.variance:.4f}"
        detail_rows.append(
            f'<tr><td class="left">{row.factor.value}</td><td class="left">{escape(row.strategy.value)}'
            f"{' (shared)' if row.shared else ''}</td><td class=\"left\">{escape(row.bits)}</td><td>{mean}</td>"
            f"<td>{variance}</td><td>{row.ok}/{row.failed}/{row.pending}</td><td>{row.avg_bits:.3f}</td>"
            f"<td>{row.mbit:.4f}</td><td>{row.size_ratio_uniform:.3f}</td>"
            f"<td>{row.bitops_training_ratio_fp32:.4f}</td><td>{row.bitops_training_ratio_uniform:.3f}</td></tr>"
        )
    return (
        f"<h2>{short} per strategy and factor (Table 1)</h2>"
        f'<table><tr><th class="left">#Bit</th><th class="left">Strategy</th>{head}</tr>{"".join(outcome_rows)}</table>'
        f"<p class=\"meta\">Mean over ok seeds; in parentheses the {escape(result.variance)}. "
        "Highlighted: best mean of each factor.</p>"
        "<h2>Model size in MBit (Table 2)</h2>"
        f'<table><tr><th class="left">#Bit</th><th class="left">Strategy</th>{size_head}</tr>{"".join(size_rows)}</table>'
        + "".join(f'<p class="meta">Note: {escape(note)}</p>' for note in twin_notes(result))
        + "<h2>Every cell</h2>"
        '<table><tr><th class="left">Factor</th><th class="left">Strategy</th><th class="left">#Bit</th><th>mean</th>'
        "<th>variance</th><th>ok/failed/pending</th><th>avg bits</th><th>MBit</th><th>size ×U</th>"
        f"<th>train BitOPs ×fp32</th><th>train BitOPs ×U</th></tr>{''.join(detail_rows)}</table>"
    )


def layer_bits_html(table: LayerBits) -> str:
    """Each plan's bits per layer: one row per GEMM (``#`` = 0-based position in the plan), one column per cell."""
    head = "".join(f"<th>{escape(label)}</th>" for label in table.labels)
    rows = "".join(
        f'<tr><td>{index}</td><td class="left">{escape(name)}</td>'
        + "".join(f"<td>{'' if b is None else b}</td>" for b in bits) + "</tr>"
        for index, (name, bits) in enumerate(zip(table.names, table.bits))
    )
    return (
        "<h2>Bits per layer of each cell's plan</h2>"
        f'<table><tr><th>#</th><th class="left">GEMM</th>{head}</tr>{rows}</table>'
    )


def grid_page(
    result: GridResult, pictures: Sequence[Picture], sections: Sequence[str], bits: LayerBits | None = None
) -> str:
    """The whole ``report.html`` of a grid (with each plan's bits per layer when ``bits`` is given)."""
    config = result.config
    title = f"bitplan compare: {result.model} on {result.data}"
    direction = "higher" if result.metric_name is MetricName.accuracy else "lower"
    meta = (
        f"Seeds {', '.join(map(str, config.seeds))}; {config.train.epochs} epoch(s), batch {config.train.batch_size}, "
        f"lr {config.train.lr:g}, {config.train.optimizer.value}, {config.train.schedule.value} schedule"
        f"{'; strategies size-matched to U (--match-size)' if config.match_size else ''}. "
        f"Metric: test {result.metric_name.value} ({direction} is better). "
        f"Runs finished: {result.runs_finished} of {result.runs_total}. bitplan {result.bitplan_version}."
    )
    figures = "".join(figure_html(picture) for picture in pictures)
    body = (
        f"<h1>{escape(title)}</h1><p class=\"meta\">{escape(meta)}</p>"
        f"{grid_tables(result)}{layer_bits_html(bits) if bits is not None else ''}<h2>Figures</h2><div class=\"figures\">{figures}</div>"
        + "".join(sections)
    )
    return page(title, body)
