"""The packed format: size bound, exact round trip to what ``bitplan.apply`` trains with, tied weights."""

from __future__ import annotations

import struct

import pytest
import torch
from torch import nn

from bitplan.qat import apply
from bitplan.errors import ExportError
from bitplan.export import load_packed, save_packed
from bitplan.export.packed import MAX_HEADER_BYTES
from bitplan.plan import make_plan
from bitplan import profile_model
from bitplan.spec import load_model, profile_spec


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory):
    """zoo:resnet20 (its own weights) with the 4–8 C− A plan, saved packed."""
    torch.manual_seed(0)
    loaded = load_model("zoo:resnet20")
    plan = make_plan(profile_spec("zoo:resnet20"), factor="A", strategy="C-", bits=(4, 8))
    path = tmp_path_factory.mktemp("packed") / "r20.safetensors"
    save_packed(loaded.model, plan, path)
    return loaded, plan, path


def test_file_is_the_plans_bits_plus_scales_and_header(resnet20):
    loaded, plan, path = resnet20
    state = loaded.model.state_dict()
    planned = plan.bits_by_weight()
    assert len(set(planned.values())) > 2  # a mixed plan, not one width
    channels = sum(state[fqn].shape[0] for fqn in planned)
    scales_and_zero_points = 2 * 4 * channels  # float32 each, one per output channel
    buffers = sum(t.numel() * t.element_size() for key, t in state.items() if key not in dict(loaded.model.named_parameters()))
    raw = path.read_bytes()
    header = struct.unpack("<Q", raw[:8])[0]
    assert header <= MAX_HEADER_BYTES
    packed = sum((state[fqn].numel() * bits + 7) // 8 for fqn, bits in planned.items())
    others = sum(t.numel() * t.element_size() for key, t in state.items() if key not in planned)
    assert len(raw) - 8 - header == packed + scales_and_zero_points + others  # nothing else is stored
    bound = plan.estimates.size_bits / 8 + len(planned) + scales_and_zero_points + buffers + 8 + header
    assert len(raw) <= bound  # (+1 byte per layer: the last byte of a tensor's bit stream)
    uint8_codes = sum(state[fqn].numel() for fqn in planned)
    assert len(raw) - packed + uint8_codes > bound  # one byte per code would not fit


def test_round_trip_is_exactly_what_apply_trains_with(resnet20):
    loaded, plan, path = resnet20
    state = load_packed(path)
    model = load_model("zoo:resnet20").model
    model.load_state_dict(loaded.model.state_dict())
    assert state.keys() == model.state_dict().keys()
    apply(model, plan, loaded.example_inputs)
    modules = dict(model.named_modules())
    for fqn, bits in plan.bits_by_weight().items():
        module = modules[fqn.rsplit(".", 1)[0]]
        trained_with = module.bitplan_quant.weight(module, "weight").detach()
        assert torch.equal(state[fqn], trained_with), fqn
        per_channel = state[fqn].reshape(state[fqn].shape[0], -1)
        assert max(len(row.unique()) for row in per_channel) <= 2**bits
    assert torch.equal(state["bn1.running_mean"], loaded.model.state_dict()["bn1.running_mean"])


def test_load_into_a_model_and_integer_grid_tied_weights(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(8, 8, bias=False)
            self.head = nn.Linear(8, 8, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, x):
            return self.head(torch.relu(self.embed(x)))

    torch.manual_seed(1)
    model, x = Tied(), torch.randn(3, 8)
    plan = make_plan(profile_model(model, (x,)), factor="A", strategy="U", bits=(5, 5), zero_point="integer",
                     activation_bits=None, gradient_bits=None)
    header = save_packed(model, plan, tmp_path / "t.safetensors")
    assert header.aliases == {"head.weight": "embed.weight"} and header.zero_point.value == "integer"
    fresh = Tied()
    state = load_packed(tmp_path / "t.safetensors", model=fresh)
    expected = apply(model, plan, (x,)).embed.bitplan_quant.weight(model.embed, "weight").detach()
    assert torch.equal(fresh.embed.weight.detach(), expected) and torch.equal(state["head.weight"], expected)
    assert fresh.head.weight is fresh.embed.weight


def test_a_foreign_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ExportError, match="not written by"):
        load_packed(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ExportError, match="not a safetensors file"):
        load_packed(tmp_path / "junk.safetensors")


def test_export_quantizes_eagerly_even_where_training_would_compile(tmp_path, compiled_calls):
    """One pass per weight: a compiled kernel (seconds to build) never pays off, and the codes are the same."""
    from bitplan import quant

    model = nn.Sequential(nn.Linear(64, 32))
    plan = make_plan(profile_model(model, torch.zeros(1, 64)), factor="A", strategy="U", bits=(4, 4))
    with quant.kernel_policy(compile=False):
        save_packed(model, plan, tmp_path / "eager.safetensors")
        eager_state = load_packed(tmp_path / "eager.safetensors")
    with quant.kernel_policy(compile=True, min_numel=1):  # training's policy would compile every tensor
        save_packed(model, plan, tmp_path / "default.safetensors")
    assert compiled_calls == []
    assert all(torch.equal(eager_state[k], v) for k, v in load_packed(tmp_path / "default.safetensors").items())
