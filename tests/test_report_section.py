"""The sensitivity section of ``bitplan compare``'s report: numbers, marks, escaping, the hook."""

from __future__ import annotations

import base64
import re

import pytest

from bitplan.compare.html import extra_sections
from bitplan.errors import SpecError
from bitplan.sensitivity_analysis import FactorCorrelation, LayerSensitivity, SensitivityReport
from bitplan.sensitivity_analysis.report_section import (
    DESCRIPTION_COLUMNS,
    SECTION_FILE,
    load_report,
    render_section,
    write_section,
)


def make_report(*, model: str = "zoo:toy", validation: list[FactorCorrelation] | None = None) -> SensitivityReport:
    """Six layers: sensitivity falls as A grows (ρ_A = τ_A = −1), F is the same everywhere (no ranking)."""
    layers = [
        LayerSensitivity(
            name=f"layer{i}", weight=f"layer{i}.weight", sensitivity=1.0 / (i + 1), accumulation=9 * 2**i,
            weight_frequency=64, depth=i + 1, params=16 * 2**i, macs=1000 * (6 - i),
        )
        for i in range(6)
    ]
    return SensitivityReport(
        model=model, fingerprint="f" * 16, data="digits", method="fisher", bits=4, batches=2, batch_size=8,
        seed=0, initialization="random", seconds=0.1, layers=layers, validation=validation,
    )


def cells_of(html: str, caption: str) -> list[str]:
    """The factor cells (tags stripped) of the first row of the table with ``caption``: A, F, D, capacity, MACs."""
    table = html.split(f"<caption>{caption}")[1].split("</table>")[0]
    row = table.split("<tr>")[2]
    cells = [re.sub(r"<[^>]+>", "", cell.replace("<br>", " ")) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    return cells[len(DESCRIPTION_COLUMNS):]


def test_perfect_rankings_are_exact_and_marked():
    html = render_section([make_report()], plots=False, resamples=20)
    a, f, d, capacity, macs = cells_of(html, "Spearman ρ")
    assert a == "-1.00 [-1.00, -1.00]"  # sensitivity strictly falls as A rises
    assert f == "—"  # F constant: no rank correlation
    assert d == capacity == "-1.00 [-1.00, -1.00]"  # depth and size rise with A here
    assert macs == "+1.00 [+1.00, +1.00]"  # MACs fall as A rises
    assert cells_of(html, "Kendall τ-b")[0] == "-1.00 [-1.00, -1.00]"
    assert "<strong>-1.00</strong>" in html  # a CI that excludes zero is bold
    assert 'title="constant over the layers: no ranking to compare"' in html


def test_stored_validation_is_used_as_it_is():
    stored = [
        FactorCorrelation(factor="A", spearman=0.25, spearman_ci=(-0.5, 0.75), kendall=0.2, kendall_ci=None, layers=6),
        FactorCorrelation(factor="F", spearman=0.5, spearman_ci=(0.125, 0.875), kendall=0.4, kendall_ci=(0.1, 0.7), layers=6),
    ]
    html = render_section([make_report(validation=stored)], plots=False)
    spearman = cells_of(html, "Spearman ρ")
    assert spearman[:2] == ["+0.25 [-0.50, +0.75]", "+0.50 [+0.12, +0.88]"]
    assert spearman[2:] == ["—", "—", "—"]  # factors the stored validation lacks
    assert cells_of(html, "Kendall τ-b")[0] == "+0.20 [—]"
    assert "<strong>+0.25</strong>" not in html and "<strong>+0.50</strong>" in html


def test_paths_render_like_reports_and_names_are_escaped(tmp_path):
    report = make_report(model="zoo:<b>&co")
    path = tmp_path / "sens.json"
    path.write_text(report.model_dump_json())
    html = render_section([path], plots=False, resamples=20)
    assert html == render_section([report], plots=False, resamples=20)
    assert '<td class="left">zoo:&lt;b&gt;&amp;<wbr>co</td><td class="left">digits</td>' in html
    assert "<b>" not in html


def test_plots_are_embedded_pngs():
    html = render_section([make_report()], resamples=20)
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 1
    assert base64.b64decode(uris[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "zoo:toy on digits — fisher, 4 bits, random weights, 2×8 samples, 6 layers.</figcaption>" in html


def test_section_lands_where_compare_reads_it(tmp_path):
    written = write_section(tmp_path, [make_report()], plots=False, resamples=20)
    assert written == tmp_path / "sections" / SECTION_FILE
    assert extra_sections(tmp_path) == [written.read_text(encoding="utf-8")]
    assert extra_sections(tmp_path)[0].startswith('<section class="sensitivity">')
    second = write_section(tmp_path, [make_report(model="zoo:other")], name="60-other.html", plots=False, resamples=20)
    assert extra_sections(tmp_path) == [written.read_text(encoding="utf-8"), second.read_text(encoding="utf-8")]
    with pytest.raises(ValueError, match="must be a plain file name ending in .html"):
        write_section(tmp_path, [make_report()], name="../escape.html")


def test_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="`reports` is empty"):
        render_section([])
    with pytest.raises(SpecError, match="does not exist; write one with `bitplan sensitivity"):
        load_report(tmp_path / "missing.json")
    wrong = tmp_path / "plan.json"
    wrong.write_text('{"model": "zoo:toy"}')
    with pytest.raises(SpecError, match="is not a sensitivity report"):
        load_report(wrong)
