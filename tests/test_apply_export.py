"""``bitplan apply``: codes in safetensors that dequantize exactly to the fake-quantized weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from bitplan import quant
from bitplan.apply.export import ApplyReport, export_quantized, load_quantized
from bitplan.cli.app import app
from bitplan.errors import PlanError
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


def test_codes_dequantize_to_the_fake_quantized_weights_exactly(trained):
    root, plan_path, plan = trained
    out = root / "q.safetensors"
    report = export_quantized(  # the test wrote the checkpoint, so its code spec is trusted
        plan_path, root / "run" / "checkpoint.pt", out, dequantized_out=root / "deq.pt", trust_model_spec=True
    )
    weights = torch.load(root / "run" / "checkpoint.pt", weights_only=True)["model"]
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
        layers = json.loads(metadata["layers"])
        for fqn, bits in plan.bits_by_weight().items():
            codes = handle.get_tensor(f"{fqn}.codes")
            assert codes.dtype == torch.uint8 and layers[fqn]["bits"] == bits
            decoded = quant.dequantize_codes(codes, handle.get_tensor(f"{fqn}.scale"), handle.get_tensor(f"{fqn}.zero_point"))
            assert torch.equal(decoded, quant.uniform_quantize(weights[fqn], bits, channel_dim=0))
            assert len(torch.unique(codes)) <= 2**bits
        assert torch.equal(handle.get_tensor("1.bias"), weights["1.bias"])  # unplanned tensors stored as is
    dequantized = torch.load(root / "deq.pt", weights_only=True)
    assert dequantized.keys() == weights.keys()
    assert all(torch.equal(dequantized[key], value) for key, value in load_quantized(out).items())
    planned = sum(weights[fqn].numel() for fqn in plan.bits_by_weight())
    bits = sum(weights[fqn].numel() * b for fqn, b in plan.bits_by_weight().items())
    others = sum(t.numel() for t in weights.values()) - planned
    assert report.params_quantized == planned and report.params_other == others
    assert report.mbit_quantized == pytest.approx((bits + 32 * others) / 1e6)
    assert report.bytes_file == out.stat().st_size


def test_cli_reports_metric_before_and_after(trained):
    root, plan_path, _ = trained
    out = root / "cli.safetensors"
    result = CliRunner().invoke(
        app,
        ["apply", str(plan_path), str(root / "run" / "checkpoint.pt"), "-o", str(out), "--data", DATA, "--json",
         "--model", str(root / "tiny_model.py") + ":build"],
    )
    assert result.exit_code == 0, result.output
    report = ApplyReport.model_validate_json(result.stdout)
    assert report.metric_name == "accuracy" and 0 <= report.metric_quantized <= 100
    assert report.metric_fp32 is not None and out.is_file()


def test_plan_for_another_model_is_refused(trained, tmp_path):
    from bitplan.plan import make_plan
    from bitplan.spec import profile_spec

    root, _, _ = trained
    other = save_plan(make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="U", bits=(8, 8)), tmp_path / "p.json")
    with pytest.raises(PlanError, match="fingerprint"):
        export_quantized(other, root / "run" / "checkpoint.pt", tmp_path / "x.safetensors", model=str(root / "tiny_model.py") + ":build")
    assert not (tmp_path / "x.safetensors").exists()
