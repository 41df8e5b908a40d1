"""The bits-per-layer table of ``bitplan compare``'s results.md and report.html, read back against the plans."""

from __future__ import annotations

import re

from bitplan.compare.config import GridConfig
from bitplan.compare.html import grid_page
from bitplan.compare.result import CellRow, GridResult
from bitplan.compare.tables import layer_bits, markdown
from bitplan.plan import make_plan, save_plan
from bitplan.plan.synthetic import resnet20_profile
from bitplan.train import MetricName, TrainConfig


def grid_on_disk(directory) -> tuple[GridResult, dict[str, object]]:
    """Plans U (6 bits), A C- and F C+ at 4-8 saved under ``directory/plans``, and a pending grid naming them."""
    profile = resnet20_profile()
    plans = {
        "U": make_plan(profile, factor="A", strategy="U", levels=[4, 5, 6, 7, 8], uniform_bits=6),
        "A C-": make_plan(profile, factor="A", strategy="C-", bits=(4, 8)),
        "F C+": make_plan(profile, factor="F", strategy="C+", bits=(4, 8)),
    }
    files = {"U": "plans/U.json", "A C-": "plans/A_C-.json", "F C+": "plans/F_C+.json"}
    for label, plan in plans.items():
        save_plan(plan, directory / files[label])
    cells = [("A", "U"), ("A", "C-"), ("F", "U"), ("F", "C+")]
    rows = []
    for factor, strategy in cells:
        label = "U" if strategy == "U" else f"{factor} {strategy}"
        estimates = plans[label].estimates
        rows.append(CellRow(
            factor=factor, strategy=strategy, shared=strategy == "U", plan_file=files[label], bits="4 to 8",
            mean=None, variance=None, std=None, ok=0, failed=0, pending=1, avg_bits=estimates.avg_bits,
            mbit=estimates.mbit, size_ratio_fp32=estimates.size_ratio_fp32,
            size_ratio_uniform=estimates.size_ratio_uniform,
            bitops_forward_ratio_fp32=estimates.bitops_forward_ratio_fp32,
            bitops_training_ratio_fp32=estimates.bitops_training_ratio_fp32,
            bitops_training_ratio_uniform=estimates.bitops_training_ratio_uniform, histogram=estimates.histogram,
            runs=[]))
    config = GridConfig(train=TrainConfig(model="zoo:resnet20", data="digits", epochs=1), factors=["A", "F"],
                        strategies=["U", "C+", "C-"], seeds=[0], out=directory)
    result = GridResult(bitplan_version="test", config=config, model="zoo:resnet20", data="digits",
                        metric_name=MetricName.accuracy, runs_total=4, runs_finished=0, rows=rows)
    return result, plans


def test_markdown_lists_each_distinct_plans_bits_per_layer(tmp_path):
    result, plans = grid_on_disk(tmp_path)
    table = layer_bits(result, tmp_path)
    assert table.labels == ["U", "A C-", "F C+"]  # U is shown once although it is a cell of both factors
    text = markdown(result, table)
    section = text.split("## Bits per layer of each cell's plan")[1]
    lines = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(lines) == 20
    for index, (line, layer) in enumerate(zip(lines, plans["U"].layers)):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:2] == [str(index), layer.name]
        assert [int(cell) for cell in cells[2:]] == [plans[label].bits_by_name()[layer.name] for label in table.labels]
    assert "| # | GEMM | U | A C- | F C+ |" in section


def test_report_html_has_the_same_table(tmp_path):
    result, plans = grid_on_disk(tmp_path)
    html = grid_page(result, [], [], layer_bits(result, tmp_path))
    section = html.split("<h2>Bits per layer of each cell's plan</h2>")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(\d+)</td><td class=\"left\">([^<]+)</td>((?:<td>\d*</td>)+)</tr>", section)
    assert [(int(index), name) for index, name, _ in rows] == [(i, layer.name) for i, layer in enumerate(plans["U"].layers)]
    fc = re.findall(r"<td>(\d+)</td>", rows[19][2])
    assert [int(bits) for bits in fc] == [plans[label].bits_by_name()["fc"] for label in ("U", "A C-", "F C+")]
