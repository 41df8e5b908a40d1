"""``bitplan report`` and ``bitplan compare`` CLI: re-rendering from disk, the self-contained HTML, run curves.

The grids here are trained by ``FakeTrainer`` (tests/test_compare.py), which writes run directories
the way the train engine does; the real engine is exercised in test_compare.py.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.compare import GridResult, render_report, report, run_grid
from bitplan.train import RunResult
from test_compare import TINY_FACTORY, FakeTrainer, grid_config

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory) -> Path:
    """A finished fake grid, made once: factors A and F, strategies U, C+, C-, two seeds."""
    folder = tmp_path_factory.mktemp("fake_grid")
    (folder / "tiny_model.py").write_text(TINY_FACTORY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bitplan.compare.executor.train_run", FakeTrainer())
        config = grid_config(f"{folder / 'tiny_model.py'}:build", folder / "grid", factors=["A", "F"],
                             strategies=["U", "C+", "C-"])
        run_grid(config, progress=False)
    return folder / "grid"


@pytest.fixture
def grid(finished_grid, tmp_path) -> Path:
    """A private copy of the finished grid (grids are relocatable: every path inside is relative)."""
    return Path(shutil.copytree(finished_grid, tmp_path / "grid"))


def test_report_rereads_every_number_from_the_run_files(grid):
    before = GridResult.model_validate_json((grid / "results.json").read_text())
    row = before.row("F", "C-")
    edited = grid / row.runs[0].run_dir / "final.json"
    final = RunResult.model_validate_json(edited.read_text())
    edited.write_text(final.model_copy(update={"metric": 10.0}).model_dump_json())
    for name in ("results.md", "results.csv", "report.html", "figure7.png"):
        (grid / name).unlink()

    result = render_report(grid)
    metrics = np.array([10.0, row.runs[1].metric])
    assert result.row("F", "C-").mean == pytest.approx(metrics.mean())
    assert result.row("F", "C-").variance == pytest.approx(metrics.var())
    assert result.row("A", "C-") == before.row("A", "C-")
    assert GridResult.model_validate_json((grid / "results.json").read_text()) == result
    for name in ("results.md", "results.csv", "report.html", "figure7.png", "bars_A.png", "bars_F.png"):
        assert (grid / name).is_file()


def test_report_of_an_unfinished_grid_counts_pending_runs(grid):
    shutil.rmtree(grid / GridResult.model_validate_json((grid / "results.json").read_text()).rows[0].runs[1].run_dir)
    result = render_report(grid)
    uniform = result.row("A", "U")
    assert (uniform.ok, uniform.pending, result.runs_finished, result.runs_total) == (1, 1, 9, 10)
    assert uniform.variance == 0.0 and uniform.mean == uniform.runs[0].metric
    assert "Runs finished: 9 of 10" in (grid / "results.md").read_text()


def test_html_report_is_self_contained_and_embeds_png_figures(grid):
    html = (grid / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3  # Figure 7 style plus one bar chart per factor
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in images)
    assert html.count("<table>") == 4 and "Acc-A" in html and "Size-F" in html  # Tables 1, 2, every cell, bits per layer


def test_extra_sections_are_rendered_in_file_name_order(grid):
    (grid / "sections").mkdir()
    (grid / "sections" / "20-second.html").write_text("<h2>Second section</h2>")
    (grid / "sections" / "10-first.html").write_text("<h2>First section</h2>")
    render_report(grid)
    html = (grid / "report.html").read_text()
    assert html.index("Figures") < html.index("First section") < html.index("Second section")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium); "
                    "the headless-browser check of report.html is documented in docs/compare.md")
def test_report_opens_in_headless_chromium_with_table_and_plots(grid, tmp_path):
    page = (grid / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page], capture_output=True, text=True, timeout=60)
    assert "Acc per strategy and factor" in dom.stdout and dom.stdout.count("<img") == 3
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), *flags, "--window-size=1200,2400", f"--screenshot={shot}", page],
                   capture_output=True, timeout=60, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]  # [H, W, 3] in 0..1
    red, blue = pixels[..., 0], pixels[..., 2]
    plotted = ((blue - red > 0.25) & (blue > 0.5)).sum()  # factor A's blue circles and bars
    assert plotted > 2000, "the figures did not render"
    assert (pixels.mean(axis=2) < 0.5).sum() > 5000, "no text or table lines rendered"


def test_report_of_a_training_run_draws_its_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": e, "train_loss": 2.0 / e, "train_metric": 50.0 + e, "test_loss": 2.1 / e, "metric": 60.0 + e,
              "lr": 0.1, "seconds": 1.0} for e in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    outcome = report(run)
    assert outcome.final == {"run": None} and outcome.metric_name.value == "accuracy"
    assert (run / "curves.png").read_bytes().startswith(PNG_MAGIC)
    html = (run / "report.html").read_text()
    assert "unfinished" in html and "63.000" in html and "data:image/png;base64," in html


def test_report_of_a_multi_seed_run_draws_one_curve_per_seed(tmp_path):
    for seed in (0, 1, 10):
        folder = tmp_path / "seeds" / f"seed-{seed}"
        folder.mkdir(parents=True)
        line = {"epoch": 1, "train_loss": 1.0, "train_metric": 5.0, "test_loss": 1.0, "metric": 7.0 + seed,
                "lr": 0.0, "seconds": 1.0}
        (folder / "metrics.jsonl").write_text(json.dumps(line) + "\n")
        result = RunResult(status="ok", seed=seed, metric_name="perplexity", metric=7.0 + seed, train_loss=1.0,
                           test_loss=1.0, epochs_done=1, epochs=1, seconds=1.0, out=str(folder))
        (folder / "final.json").write_text(result.model_dump_json())
    (tmp_path / "seeds" / "summary.json").write_text("{}")
    outcome = report(tmp_path / "seeds")
    assert outcome.final == {"seed-0": 7.0, "seed-1": 8.0, "seed-10": 17.0}
    assert outcome.metric_name.value == "perplexity"


def test_report_refuses_a_directory_that_is_neither(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "neither a grid" in result.output


def test_report_command_prints_the_grid_table(grid):
    result = CliRunner().invoke(app, ["report", str(grid)])
    assert result.exit_code == 0, result.output
    assert "Acc-A (var)" in result.output and "MBit-F" in result.output
    as_json = CliRunner().invoke(app, ["report", str(grid), "--json"])
    assert GridResult.model_validate_json(as_json.stdout).runs_total == 10


def test_compare_command_forwards_its_options(monkeypatch, tmp_path, grid):
    calls = []
    stored = GridResult.model_validate_json((grid / "results.json").read_text())

    def fake_run_grid(config, *, jobs, progress):
        calls.append((config, jobs, progress))
        return stored

    monkeypatch.setattr("bitplan.compare.run_grid", fake_run_grid)
    arguments = [
        "compare", "zoo:digits_cnn", "--data", "digits", "--factors", "A,F", "--strategies", "U,C+,C−",
        "--bits", "4-8", "--seeds", "0,1,2", "--epochs", "3", "--lr", "0.1", "--batch-size", "64",
        "--grad-bits", "6", "--match-size", "--jobs", "2", "--out", str(tmp_path / "g"), "--no-progress",
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    config, jobs, progress = calls[0]
    assert (jobs, progress) == (2, False)
    assert [f.value for f in config.factors] == ["A", "F"] and [s.value for s in config.strategies] == ["U", "C+", "C-"]
    assert config.bits == (4, 8) and config.seeds == [0, 1, 2] and config.match_size and config.out == tmp_path / "g"
    train = config.train
    assert (train.model, train.data, train.epochs, train.lr, train.batch_size) == ("zoo:digits_cnn", "digits", 3, 0.1, 64)
    assert train.gradient_bits == 6 and train.weight_decay == 5e-4  # untouched options keep TrainConfig's defaults


def test_compare_command_rejects_unknown_strategies(tmp_path):
    result = CliRunner().invoke(app, ["compare", "zoo:digits_cnn", "--strategies", "U,X", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "U,C+,C-,R" in result.output


def test_a_moved_grid_reports_from_its_new_place(grid, tmp_path):
    moved = Path(shutil.move(grid, tmp_path / "elsewhere"))
    result = render_report(moved)
    assert result.config.out == moved and result.runs_finished == 10
