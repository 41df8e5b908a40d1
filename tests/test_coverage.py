"""The coverage ledger (docs/concepts.md, "Coverage") and computed weights ("Computed weights")."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from typer.testing import CliRunner

from bitplan import zoo
from bitplan.qat import apply
from bitplan.cli.app import app
from bitplan.frontends.torch import trace
from bitplan.plan import make_plan
from bitplan.profile.schema import UncoveredKind
from bitplan.spec import profile_spec

TRACERS = ["record", "export"]
runner = CliRunner()


class Mixed(nn.Module):
    """One parameter per ledger kind next to one covered linear layer and one lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)  # covered: a lookup layer
        self.pos = nn.Parameter(torch.zeros(3, 4))  # elementwise
        self.fc = nn.Linear(4, 5)  # covered
        self.centres = nn.Parameter(torch.randn(6, 5))  # unsupported: cdist is no GEMM bitplan counts
        self.spare = nn.Parameter(torch.randn(2, 2))  # unused

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # ids: [B, 3]
        h = self.fc(self.embed(ids) + self.pos)  # [B, 3, 5]
        return torch.cdist(h.flatten(0, 1), self.centres)


@pytest.mark.parametrize("tracer", TRACERS)
def test_every_matrix_parameter_is_covered_or_listed_with_its_reason(tracer: str) -> None:
    profile = trace(Mixed(), (torch.zeros(2, 3, dtype=torch.int64),), tracer=tracer)
    listed = {entry.parameter: (entry.op, entry.kind, entry.shape) for entry in profile.uncovered}
    assert listed == {
        "pos": (listed["pos"][0], UncoveredKind.elementwise, [3, 4]),
        "centres": ("cdist" if tracer == "record" else listed["centres"][0], UncoveredKind.unsupported, [6, 5]),
        "spare": (None, UncoveredKind.unused, [2, 2]),
    }
    assert listed["pos"][0] in ("add", "__add__")
    coverage = profile.coverage
    assert coverage.gemm_params == 40 + 20  # the lookup's table and fc.weight
    assert coverage.matrix_params == 40 + 12 + 20 + 30 + 4
    assert coverage.uncovered_params == 12 + 30 + 4
    assert coverage.total_params == coverage.matrix_params + 5  # plus fc.bias
    assert [entry.parameter for entry in profile.suspect_uncovered] == ["centres", "spare"]


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_has_no_silent_drops(name: str) -> None:
    """Only what docs/concepts.md says is neither a GEMM nor a lookup is uncovered: added positions."""
    profile = profile_spec(f"zoo:{name}", tracer="record")
    expected = {"transformer_lm": {"pos_emb.weight": UncoveredKind.elementwise}}.get(name, {})
    assert {entry.parameter: entry.kind for entry in profile.uncovered} == expected
    coverage = profile.coverage
    assert coverage.gemm_params + coverage.uncovered_params == coverage.matrix_params
    assert profile.gemm_params <= profile.total_params  # each weight once, never a copy per use


class Computed(nn.Module):
    """Weights computed in forward: parametrizations, a scale, a reshape and a cast."""

    def __init__(self) -> None:
        super().__init__()
        self.wn = parametrizations.weight_norm(nn.Linear(4, 6))
        self.sn = parametrizations.spectral_norm(nn.Linear(6, 5))
        self.W = nn.Parameter(torch.randn(3, 5))
        self.V = nn.Parameter(torch.randn(12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 4]
        h = self.sn(self.wn(x))  # [B, 5]
        h = F.linear(h, self.W * 0.5)  # [B, 3]
        return h @ self.V.reshape(3, 4).double().float()  # [B, 4]


@pytest.mark.parametrize("tracer", TRACERS)
def test_computed_weights_are_attributed_to_their_parameters(tracer: str) -> None:
    profile = trace(Computed(), (torch.randn(2, 4),), tracer=tracer)
    got = [(layer.name, layer.weight, layer.m, layer.k, layer.n, layer.params) for layer in profile.layers]
    assert got == [
        ("wn", "wn.parametrizations.weight.original1", 2, 4, 6, 24),
        ("sn", "sn.parametrizations.weight.original", 2, 6, 5, 30),
        ("W", "W", 2, 5, 3, 15),
        ("V", "V", 2, 3, 4, 12),
    ]
    assert not any(layer.shared for layer in profile.layers)
    # weight-norm's magnitude g ([6, 1]) is a source of the computed weight: covered, not listed
    assert profile.uncovered == []


def fake_quant(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel asymmetric fake quantization written out (bitplan's weight quantizer)."""
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scale = torch.clamp((high - low) / (2**bits - 1), min=1e-8)
    return torch.clamp(torch.round((w - low) / scale), 0, 2**bits - 1) * scale + low


def test_apply_quantizes_the_computed_weight() -> None:
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wn = parametrizations.weight_norm(nn.Linear(4, 6))
            self.W = nn.Parameter(torch.randn(5, 6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(self.wn(x), self.W * 0.5)

    model, x = Net(), torch.randn(3, 4)
    plan = make_plan(trace(model, (x,)), factor="A", strategy="U", bits=(2, 2), uniform_bits=2, activation_bits=None)
    assert [(entry.weight, entry.bits) for entry in plan.layers] == [("wn.parametrizations.weight.original1", 2), ("W", 2)]
    plain = model(x)
    apply(model, plan, example_inputs=(x,))
    hidden = F.linear(x, fake_quant(model.wn.weight, 2), model.wn.bias)
    expected = F.linear(hidden, fake_quant(model.W * 0.5, 2))
    torch.testing.assert_close(model(x), expected)
    assert (model(x) - plain).abs().max() > 1e-3  # 2 bits visibly changed the output


MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Prototypes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 5)
            self.centres = nn.Parameter(torch.randn(6, 5))

        def forward(self, x):
            return torch.cdist(self.fc(x), self.centres)

    def build():
        return Prototypes(), (torch.zeros(2, 4),)
    """
)


def test_strict_exits_1_on_a_weight_read_by_an_unsupported_op(tmp_path: Path) -> None:
    path = tmp_path / "prototypes.py"
    path.write_text(MODEL_FILE)
    lenient = runner.invoke(app, ["profile", f"{path}:build", "--format", "json"])
    assert lenient.exit_code == 0, lenient.output
    assert lenient.stderr.count("warning:") == 1 and "`centres`" in lenient.stderr and "cdist" in lenient.stderr
    assert runner.invoke(app, ["profile", f"{path}:build", "--strict"]).exit_code == 1  # the table too
    clean = runner.invoke(app, ["profile", "zoo:lstm2", "--strict", "--format", "json"])
    assert clean.exit_code == 0 and "warning" not in clean.stderr  # an embedding is no reason to fail
    strict = subprocess.run(
        [sys.executable, "-m", "bitplan", "profile", f"{path}:build", "--strict", "--format", "json"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    assert strict.returncode == 1, strict.stderr
    assert '"parameter": "centres"' in strict.stdout  # the profile is still printed
