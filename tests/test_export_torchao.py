"""torchao: the plan's QAT config reproduces ``bitplan.apply``'s forward; convert gives integer weights."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from bitplan.qat import apply
from bitplan.errors import ExportError
from bitplan.export import ExportWarning, to_torchao
from bitplan.plan import make_plan
from bitplan import profile_model

torchao = pytest.importorskip("torchao")
from torchao.quantization import quantize_  # noqa: E402


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def _plan(model, x, **options):
    options = {"activation_bits": None, "gradient_bits": None, "zero_point": "integer", **options}
    return make_plan(profile_model(model, (x,)), factor="A", strategy="C-", bits=(3, 8), **options)


def test_prepared_model_matches_bitplan_apply_and_convert_runs():
    model, x = _mlp(), torch.randn(64, 32)
    plan = _plan(model, x)
    assert len(set(plan.bits_by_weight().values())) == 3
    reference = apply(copy.deepcopy(model), plan, (x,)).eval()(x).detach()
    prepared = copy.deepcopy(model)
    quantize_(prepared, to_torchao(plan, prepared), filter_fn=None)
    assert [type(m).__name__ for m in prepared if isinstance(m, nn.Linear)] == ["FakeQuantizedLinear"] * 3
    out = prepared(x).detach()
    assert torch.allclose(out, reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))
    assert not torch.allclose(out, model(x), rtol=1e-3)  # quantization did something
    quantize_(prepared, to_torchao(plan, prepared, stage="convert"), filter_fn=None)
    converted = prepared(x).detach()
    assert type(prepared[0]) is nn.Linear and torch.isfinite(converted).all()
    assert torch.allclose(converted, reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


def test_convolutions_are_named_and_left_out():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    x = torch.randn(2, 3, 6, 6)
    plan = _plan(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        config = to_torchao(plan, model)
    messages = [str(w.message) for w in caught if issubclass(w.category, ExportWarning)]
    assert any("`0.weight`" in message and "nn.Linear and nn.Embedding only" in message for message in messages)
    assert list(config.fqn_to_config) == ["2"]
    with pytest.raises(ExportError, match="--strict"):
        to_torchao(plan, model, strict=True)
