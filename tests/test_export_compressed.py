"""compressed-tensors: its own config parser and decompressor give back bitplan's integer-grid weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bitplan.errors import ExportError
from bitplan.export import to_compressed_tensors
from bitplan.export.weights import planned_weights, weight_codes
from bitplan.plan import make_plan
from bitplan import profile_model

pytest.importorskip("compressed_tensors")


def test_round_trip_through_the_compressed_tensors_decompressor(tmp_path):
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 47), nn.ReLU(), nn.Linear(47, 10))
    x = torch.randn(4, 30)
    plan = make_plan(profile_model(model, (x,)), factor="A", strategy="C-", bits=(3, 8), activation_bits=None,
                     gradient_bits=None, zero_point="integer")
    out = tmp_path / "ct"
    to_compressed_tensors(model, plan, out)
    config = QuantizationConfig.model_validate(json.loads((out / "config.json").read_text())["quantization_config"])
    assert config.format == "pack-quantized" and len(config.config_groups) == 3  # one group per width
    state = load_file(str(out / "model.safetensors"))
    expected = {weight.fqn: weight_codes(weight, "integer").dequantize(weight) for weight in planned_weights(model, plan)}
    seen = set()
    for scheme in config.config_groups.values():
        assert scheme.weights.symmetric is False and scheme.weights.strategy == "channel"
        for module in scheme.targets:
            local = {key.removeprefix(module + "."): value for key, value in state.items() if key.startswith(module + ".")}
            decompressed = PackedQuantizationCompressor.decompress(local, scheme)["weight"]
            assert scheme.weights.num_bits == plan.bits_by_weight()[f"{module}.weight"]
            assert torch.equal(decompressed, expected[f"{module}.weight"])
            seen.add(f"{module}.weight")
    assert seen == set(expected)
    assert torch.equal(state["0.bias"], model[0].bias.detach())
    with pytest.raises(ExportError, match="already exists"):
        to_compressed_tensors(model, plan, out)  # nothing overwritten
