"""`bitplan study`: the default `all` run, option forwarding, and usage errors (exit 2)."""

from __future__ import annotations

import csv
import time

import pytest
import torch
from typer.testing import CliRunner

import bitplan.study
from bitplan.cli.app import app
from bitplan.choices import StudySweep
from bitplan.study import Distribution, FactorResult, QuantizedOperand, StudyConfig, StudyFactor, StudyResult
from bitplan.study.result import CSV_COLUMNS

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_all_with_defaults_is_fast_and_writes_every_file(tmp_path):
    started = time.perf_counter()
    outcome = runner.invoke(app, ["study", "all", "-o", str(tmp_path), "--json"])
    elapsed = time.perf_counter() - started
    assert outcome.exit_code == 0, outcome.output
    assert elapsed < 30.0
    result = StudyResult.model_validate_json(outcome.stdout)
    assert result.config == StudyConfig(out=tmp_path)
    expected_rows = {"accumulation": 9 * 2, "frequency": 7 * 2, "depth": 3 * 2}
    for factor, rows in expected_rows.items():
        with (tmp_path / f"{factor}.csv").open(newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == CSV_COLUMNS
            table = list(reader)
        assert len(table) == rows
        assert {int(row["bits"]) for row in table} == {4, 2}
        assert all(float(row["distance"]) > 0 and float(row["distance_variance"]) > 0 for row in table)
        on_disk = FactorResult.model_validate_json((tmp_path / f"{factor}.json").read_text())
        assert on_disk == result.factor(on_disk.factor)
        png = (tmp_path / f"{factor}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert StudyResult.model_validate_json((tmp_path / "study.json").read_text()) == result


def test_options_reach_the_library(monkeypatch):
    seen: list[StudyConfig] = []
    real_run = bitplan.study.run_study

    def recording_run(config, **kwargs):
        seen.append(config)
        return real_run(config, **kwargs)

    monkeypatch.setattr(bitplan.study, "run_study", recording_run)
    arguments = [
        "study", "frequency", "--bits", "8,3", "--trials", "3", "--dist", "relu", "--quantize", "both",
        "--seed", "7", "--size", "5", "--frequency", "16,4", "--device", "cpu", "--threads", "2",
    ]
    outcome = runner.invoke(app, arguments)
    assert outcome.exit_code == 0, outcome.output
    assert seen == [
        StudyConfig(
            factors=["frequency"], bits=[8, 3], trials=3, distribution="relu", quantize="both", seed=7,
            size=5, frequency=[16, 4], device="cpu", threads=2,
        )
    ]
    table_rows = [line.split() for line in outcome.stdout.splitlines() if line.count("│") >= 6]
    assert [(row[1], row[3]) for row in table_rows] == [("16", "8"), ("16", "3"), ("4", "8"), ("4", "3")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["study", "sideways"], "sideways"),
        (["study", "all", "--bits", "0"], "`bits` must be in 1..16"),
        (["study", "depth", "--bits", "4,17"], "`bits` must be in 1..16"),
        (["study", "depth", "--bits", "four"], "comma-separated integers"),
        (["study", "depth", "--trials", "1"], "--trials"),
        (["study", "depth", "--dist", "cauchy"], "cauchy"),
        (["study", "accumulation", "--accumulation", "9,0"], "`accumulation` values must be >= 1"),
    ],
)
def test_bad_options_exit_2(arguments, message):
    outcome = runner.invoke(app, arguments)
    assert outcome.exit_code == 2
    assert message in " ".join(outcome.output.split())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_error():
    outcome = runner.invoke(app, ["study", "depth", "--device", "cuda"])
    assert outcome.exit_code == 2
    assert "no CUDA device" in " ".join(outcome.output.split())


def test_study_sweeps_every_factor_of_the_library_and_all():
    """The CLI's sweep choice is the library's factors plus `all`, both from bitplan.choices."""
    assert [c.value for c in StudySweep] == [f.value for f in StudyFactor] + ["all"]
