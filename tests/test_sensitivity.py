"""Sensitivity measures: each method finds an outlier layer, Hutchinson matches the exact trace,
loss-delta matches a hand-written loop, and correlations match scipy."""

from __future__ import annotations

import copy
import itertools
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.sensitivity_analysis import measure_sensitivity, validate
from bitplan.sensitivity_analysis.methods import Target, hutchinson_traces, loss_delta

OUTLIER_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
        with torch.no_grad():
            # one large outlier per output channel of the middle layer: its 4-bit step becomes coarse
            rows = torch.arange(32)
            model[2].weight[rows, rows] = 40.0 * model[2].weight.abs().max()
        return model, torch.zeros(1, 16)
    """
)


@pytest.fixture(scope="module")
def outlier_checkpoint(tmp_path_factory) -> tuple[str, str]:
    """The outlier model trained briefly on the synthetic data, so every layer matters to the loss."""
    from bitplan.data import load_data

    directory = tmp_path_factory.mktemp("outlier")
    source = directory / "outlier.py"
    source.write_text(OUTLIER_MODEL)
    namespace: dict = {}
    exec(OUTLIER_MODEL, namespace)
    model, example = namespace["build"]()
    data = load_data("synthetic?n=256&classes=10", seed=0, example_inputs=(example,))
    x = torch.stack([data.train[i][0] for i in range(len(data.train))])
    y = torch.stack([torch.as_tensor(data.train[i][1]) for i in range(len(data.train))])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    checkpoint = directory / "trained.pt"
    torch.save(model.state_dict(), checkpoint)
    return str(source), str(checkpoint)


@pytest.mark.parametrize("method", ["fisher", "loss-delta", "sqnr", "hessian"])
def test_every_method_ranks_the_outlier_layer_first(outlier_checkpoint, method: str) -> None:
    source, checkpoint = outlier_checkpoint
    report = measure_sensitivity(
        f"{source}:build", "synthetic?n=256&classes=10", method=method, bits=4, batches=2, batch_size=64,
        probes=4, checkpoint=checkpoint,
    )
    ranked = sorted(report.layers, key=lambda layer: -layer.sensitivity)
    assert ranked[0].name == "2", [(l.name, l.sensitivity) for l in report.layers]
    assert report.initialization.value == "checkpoint" and report.method.value == method


def _mlp_batches() -> tuple[nn.Module, list]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    return model, [((x,), y)]


def _loss(model: nn.Module, inputs: tuple, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(*inputs), target)


def test_hutchinson_trace_matches_exact_hessian() -> None:
    model, batches = _mlp_batches()
    (inputs, target), = batches
    names = ["0.weight", "2.weight"]
    params = dict(model.named_parameters())
    estimates = hutchinson_traces(model, names, batches, _loss, probes=3000, generator=torch.Generator().manual_seed(0))
    for name in names:
        weight = params[name]

        def loss_of(w: torch.Tensor, name: str = name) -> torch.Tensor:
            return _loss_with(model, name, w, inputs, target)

        exact = torch.autograd.functional.hessian(loss_of, weight.detach()).reshape(weight.numel(), weight.numel())
        trace = float(exact.diagonal().sum())
        # Rademacher probes: Var[vᵀHv] = 2 Σ_{i≠j} H_ij², so the mean of N probes has this standard error
        off = exact - torch.diag(exact.diagonal())
        standard_error = float((2 * off.pow(2).sum() / 3000).sqrt())
        assert abs(estimates[name] - trace) <= 4 * standard_error + 1e-9, (name, estimates[name], trace)


def _loss_with(model: nn.Module, name: str, weight: torch.Tensor, inputs: tuple, target: torch.Tensor) -> torch.Tensor:
    return _loss(_Swap(model, name, weight), inputs, target)


class _Swap(nn.Module):
    def __init__(self, model: nn.Module, name: str, weight: torch.Tensor) -> None:
        super().__init__()
        self.model, self.name, self.weight = model, name, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, {self.name: self.weight}, (x,))


def _gemmlowp_by_hand(w: torch.Tensor, bits: int) -> torch.Tensor:
    """docs/quantizers.md's quantizer, per output channel, written out independently of bitplan.quant."""
    low = w.min(dim=1, keepdim=True).values
    high = w.max(dim=1, keepdim=True).values
    scale = torch.clamp((high - low) / (2**bits - 1), min=1e-8)
    return torch.clamp(torch.round((w - low) / scale), 0, 2**bits - 1) * scale + low


def test_loss_delta_matches_an_independent_loop() -> None:
    model, batches = _mlp_batches()
    targets = [Target("0", "0.weight", "0", "weight"), Target("2", "2.weight", "2", "weight")]
    scores = loss_delta(model, targets, batches, _loss, bits=3, per_channel=True)
    (inputs, target), = batches
    baseline = float(_loss(model, inputs, target))
    for index in ("0", "2"):
        clone = copy.deepcopy(model)
        with torch.no_grad():
            clone[int(index)].weight.copy_(_gemmlowp_by_hand(clone[int(index)].weight, 3))
        expected = float(_loss(clone, inputs, target)) - baseline
        assert scores[index] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # the model itself is left exactly as it was
    assert float(_loss(model, inputs, target)) == baseline


def test_correlations_equal_scipy(tmp_path) -> None:
    report = measure_sensitivity("zoo:resnet20?in_channels=1&input_size=8", "digits", method="sqnr", batches=1, batch_size=32)
    sensitivity = [l.sensitivity for l in report.layers]
    rows = {row.factor: row for row in validate(report, resamples=50)}
    for factor, field in [("A", "accumulation"), ("F", "weight_frequency"), ("D", "depth"), ("macs", "macs")]:
        values = [getattr(l, field) for l in report.layers]
        assert rows[factor].spearman == pytest.approx(stats.spearmanr(values, sensitivity).statistic)
        assert rows[factor].kendall == pytest.approx(stats.kendalltau(values, sensitivity).statistic)
        low, high = rows[factor].spearman_ci
        assert -1 <= low <= high <= 1


def test_cli_writes_report_and_rejects_bad_method(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "sens.json"
    result = runner.invoke(
        app, ["sensitivity", "zoo:digits_cnn", "--data", "digits", "--method", "sqnr", "--batches", "1", "--batch-size", "16", "--validate", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    from bitplan.sensitivity_analysis import SensitivityReport

    report = SensitivityReport.model_validate_json(out.read_text())
    assert [l.name for l in report.layers][0] == "conv1" and report.validation is not None
    assert all(l.sqnr_db is not None for l in report.layers)
    result = runner.invoke(app, ["sensitivity", "zoo:digits_cnn", "--method", "magic"])
    assert result.exit_code == 2
