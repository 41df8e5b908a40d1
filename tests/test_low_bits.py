"""1-bit and other low widths outside planning: applied, trained, exported (or refused, with a reason)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from bitplan.errors import ExportError
from bitplan.export import ExportWarning
from bitplan.export.modelopt import to_modelopt
from bitplan.frontends.torch import trace
from bitplan.plan import make_plan
from bitplan.qat import apply
from bitplan.quant import uniform_quantize
from bitplan.train.config import TrainConfig


def _mlp() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), torch.randn(4, 6)


def test_apply_quantizes_a_weight_to_one_bit() -> None:
    model, x = _mlp()
    plan = make_plan(trace(model, (x,)), factor="A", strategy="C+", levels=[1, 8], weight_only=True)
    bits = plan.bits_by_weight()
    assert sorted(bits.values()) == [1, 8]
    expected = nn.Sequential(*[layer for layer in _mlp()[0]])
    with torch.no_grad():
        for name, parameter in expected.named_parameters():
            if name in bits:
                parameter.copy_(uniform_quantize(parameter, bits[name], channel_dim=0))
        one_bit = dict(expected.named_parameters())[min(bits, key=bits.get)]
        assert all(len(row.unique()) <= 2 for row in one_bit)  # two codes per output channel
        apply(model, plan, (x,))
        model.eval()
        assert torch.allclose(model(x), expected(x), atol=1e-6)


def test_modelopt_widens_one_bit_and_strict_refuses() -> None:
    model, x = _mlp()
    plan = make_plan(trace(model, (x,)), strategy="U", levels=[1, 2], uniform_bits=1, weight_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        config = to_modelopt(plan)
    assert {entry["cfg"]["num_bits"] for entry in config["quant_cfg"] if "cfg" in entry} == {2}
    assert any("ModelOpt has no 1-bit weights" in str(w.message) for w in caught)
    with pytest.raises(ExportError, match=r"widths \(2–8\)"):
        to_modelopt(plan, strict=True)


def test_training_takes_a_one_bit_range() -> None:
    assert TrainConfig(model="zoo:digits_cnn", factor="A", strategy="C-", bits=(1, 4)).bits == (1, 4)
