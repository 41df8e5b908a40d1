"""The profile command: formats, files, and errors as one paragraph with exit 2."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.profile.schema import ModelProfile

runner = CliRunner()


def test_json_output_is_a_model_profile() -> None:
    result = runner.invoke(app, ["profile", "zoo:resnet20", "--format", "json"])
    assert result.exit_code == 0, result.output
    profile = ModelProfile.model_validate_json(result.stdout)
    assert len(profile.layers) == 20 and profile.layers[0].accumulation == 27


def test_csv_and_markdown_and_file_output(tmp_path) -> None:
    result = runner.invoke(app, ["profile", "zoo:resnet20", "--batch", "2", "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["name"] == "conv1" and rows[0]["weight_frequency"] == "2048"
    target = tmp_path / "out" / "p.md"
    result = runner.invoke(app, ["profile", "zoo:resnet20", "-f", "md", "-o", str(target)])
    assert result.exit_code == 0
    assert target.read_text().startswith("| # | name | op | depth |")
    assert not list(target.parent.glob(".*.tmp"))  # atomic write left no temporary behind


def test_table_and_plot(tmp_path) -> None:
    png = tmp_path / "fig.png"
    result = runner.invoke(app, ["profile", "zoo:resnet20", "--plot", str(png)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "layer3.2.conv2" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_input_shape_override() -> None:
    result = runner.invoke(app, ["profile", "zoo:resnet20", "--input-shape", "1x3x64x64", "-f", "json"])
    assert json.loads(result.stdout)["layers"][0]["m"] == 64 * 64


def test_bad_inputs_exit_2_with_one_paragraph() -> None:
    for args, expected in [
        (["profile", "zoo:resnet2"], "Did you mean"),
        (["profile", "nothing-here"], "cannot resolve model spec"),
        (["profile", "zoo:resnet20", "--input-shape", "abc"], "not dimensions joined by `x`"),
        (["profile", "missing.py:make"], "does not exist"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output
        assert "Traceback" not in result.output


def test_written_files_get_ordinary_permissions(tmp_path) -> None:
    import os

    from bitplan.atomic import atomic_write_text

    path = atomic_write_text(tmp_path / "x.txt", "hi")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
