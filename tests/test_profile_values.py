"""The real-tensor fallback (docs/concepts.md, "Tracers"): models whose tracing needs values are traced
once on real tensors, with a note; a model that fails even then exits 2 unless ``--allow-partial``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.errors import TraceError
from bitplan.frontends.torch import trace

runner = CliRunner()


class Proposals(nn.Module):
    """A detector's shape: a backbone, then a head on the positions whose score passes a threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # image: [1, 3, H, W]
        features = self.backbone(image).flatten(2).transpose(1, 2).reshape(-1, 4)  # [H·W, 4]
        score = features.mean(1)  # [H·W]
        keep = torch.nonzero(score > score.median()).squeeze(1)  # data-dependent count
        top = int(keep.numel() // 2)  # .item()-style: a Python int from values
        return self.head(features[keep[:top]])


def test_a_model_that_needs_values_is_traced_on_real_tensors() -> None:
    torch.manual_seed(0)
    model, image = Proposals(), torch.randn(1, 3, 6, 6)
    profile = trace(model, (image,))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    assert profile.total_macs == counter.get_total_flops() // 2
    assert [(layer.name, layer.m) for layer in profile.layers] == [("backbone", 36), ("head", 9)]  # 18 kept, half
    assert len(profile.notes) == 1 and "real tensors" in profile.notes[0] and "`nonzero`" in profile.notes[0]


def test_without_real_weights_the_refusal_names_the_op() -> None:
    with pytest.raises(TraceError) as caught:
        trace(Proposals().to("meta"), (torch.zeros(1, 3, 6, 6, device="meta"),), tracer="record")
    message = str(caught.value)
    assert "`nonzero`" in message and "--input-shape" in message and "--tracer" in message


BROKEN = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = self.fc(x)
            return torch.zeros(int(h.abs().sum().item()) - 10**6)  # a size that only values give, and wrong

    def build():
        return Broken(), (torch.ones(2, 4),)
    """
)


def test_a_model_failing_on_real_tensors_exits_2_and_partial_needs_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    refused = runner.invoke(app, ["profile", f"{path}:build", "--tracer", "record", "--format", "json"])
    assert refused.exit_code == 2
    assert "`zeros`" in refused.stderr and "--input-shape" in refused.stderr and "--allow-partial" in refused.stderr
    assert refused.stdout == ""  # nothing written
    partial = runner.invoke(app, ["profile", f"{path}:build", "--tracer", "record", "--allow-partial", "--format", "json"])
    assert partial.exit_code == 0, partial.output
    profile = json.loads(partial.stdout)
    assert [(layer["name"], layer["m"]) for layer in profile["layers"]] == [("fc", 2)]
    assert any(note.startswith("PARTIAL") and "`zeros`" in note for note in profile["notes"])
