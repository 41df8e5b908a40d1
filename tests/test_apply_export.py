"""Export from a training run: the packed file holds the trained weights; `bitplan apply` is a hidden alias."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from bitplan import quant
from bitplan.cli.app import app
from bitplan.export import ExportReport, load_packed
from bitplan.plan import save_plan
from bitplan.train import RunConfigFile, TrainConfig, train_run

TINY_FACTORY = '''
import torch
from torch import nn


def build(num_classes: int = 4, hidden: int = 16):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return model, (torch.zeros(1, 3, 2, 2),)
'''
DATA = "synthetic?classes=4&n=128&test_n=64"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch run of a tiny MLP with a 4–8 plan, and its plan saved as a file."""
    root = tmp_path_factory.mktemp("export")
    spec_file = root / "tiny_model.py"
    spec_file.write_text(TINY_FACTORY)
    config = TrainConfig(
        model=f"{spec_file}:build", data=DATA, factor="A", strategy="C+", bits=(4, 8), epochs=1,
        batch_size=16, threads=1, out=root / "run",
    )
    train_run(config, progress=False)
    plan = RunConfigFile.model_validate_json((root / "run" / "config.json").read_text()).config.plan
    return root, save_plan(plan, root / "plan.json"), plan


def test_export_from_a_run_directory_decodes_to_the_trained_fake_quantized_weights(trained):
    root, plan_path, plan = trained
    out = root / "q.safetensors"
    result = CliRunner().invoke(app, ["export", str(root / "tiny_model.py") + ":build", "--plan", str(plan_path),
                                      "--format", "packed", "--checkpoint", str(root / "run"), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = ExportReport.model_validate_json(result.stdout)
    assert report.bytes == out.stat().st_size and report.layers_quantized == len(plan.bits_by_weight())
    weights = torch.load(root / "run" / "checkpoint.pt", weights_only=True)["model"]
    state = load_packed(out)
    assert state.keys() == weights.keys()
    for fqn, bits in plan.bits_by_weight().items():
        assert torch.equal(state[fqn], quant.uniform_quantize(weights[fqn], bits, channel_dim=0))
    assert torch.equal(state["1.bias"], weights["1.bias"])  # unplanned tensors stored as is


def test_apply_is_a_hidden_alias_of_export_packed(trained):
    root, plan_path, _ = trained
    out = root / "alias.safetensors"
    runner = CliRunner()
    result = runner.invoke(app, ["apply", str(plan_path), str(root / "run" / "checkpoint.pt"), "-o", str(out),
                                 "--model", str(root / "tiny_model.py") + ":build"])
    assert result.exit_code == 0, result.output
    assert "deprecated" in result.output and out.is_file()
    assert torch.equal(load_packed(out)["1.weight"], load_packed(root / "q.safetensors")["1.weight"])
    assert " apply " not in runner.invoke(app, ["--help"]).output
