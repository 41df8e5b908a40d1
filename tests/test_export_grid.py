"""The integer-zero-point grid: hand-computed values, codes that decode exactly, plans that carry it."""

from __future__ import annotations

import torch

from bitplan import quant
from bitplan.qat import apply
from bitplan.choices import ZeroPoint
from bitplan.plan import BitPlan, make_plan
from bitplan import profile_model


def test_integer_grid_widens_the_range_to_zero():
    # range [0.5, 2] -> [0, 2]; scale 2/3, zero point 0; 0.5/scale = 0.75 -> code 1
    out = quant.uniform_quantize(torch.tensor([0.5, 1.0, 2.0]), 2, grid="integer")
    assert torch.allclose(out, torch.tensor([2 / 3, 4 / 3, 2.0]))
    # the float grid keeps the minimum instead: [0.5, 1.0, 1.5, 2.0]
    assert torch.allclose(quant.uniform_quantize(torch.tensor([0.5, 1.0, 2.0]), 2), torch.tensor([0.5, 1.0, 2.0]))


def test_integer_grid_zero_point_and_codes_by_hand():
    # range [-1, 2], 2 bits: scale 1, zero point round(1/1) = 1, codes round(x) + 1
    codes, scale, zero_point = quant.uniform_codes(torch.tensor([-1.0, 0.2, 0.6, 2.0]), 2, grid="integer")
    assert codes.tolist() == [0, 1, 2, 3] and float(scale) == 1.0 and float(zero_point) == 1.0
    decoded = quant.dequantize_codes(codes, scale, zero_point, grid="integer")
    assert decoded.tolist() == [-1.0, 0.0, 1.0, 2.0]


def test_codes_decode_to_the_fake_quantized_tensor_per_channel():
    torch.manual_seed(0)
    w = torch.randn(16, 40) + torch.linspace(-2, 2, 16)[:, None]
    for bits in (2, 3, 5, 8, 12):
        fake = quant.uniform_quantize(w, bits, channel_dim=0, grid="integer")
        codes, scale, zero_point = quant.uniform_codes(w, bits, channel_dim=0, grid="integer")
        assert torch.equal(quant.dequantize_codes(codes, scale, zero_point, grid="integer"), fake)
        # zero is exactly on every channel's grid
        assert torch.equal(quant.uniform_quantize(torch.zeros(16, 1), bits, channel_dim=0, x_min=w.amin(1), x_max=w.amax(1), grid="integer"), torch.zeros(16, 1))
        assert all(len(row.unique()) <= 2**bits for row in fake)


def test_plans_default_to_the_float_grid_and_apply_honours_integer():
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x = torch.randn(4, 6)
    profile = profile_model(model, (x,))
    plan = make_plan(profile, factor="A", strategy="U", bits=(3, 3), activation_bits=None, gradient_bits=None, zero_point="integer")
    assert plan.zero_point is ZeroPoint.integer
    old = plan.model_dump(mode="json")
    del old["zero_point"]  # a plan written before the field existed
    assert BitPlan.model_validate(old).zero_point is ZeroPoint.float
    weight = model[0].weight.detach().clone()
    apply(model, plan, (x,))
    used = model[0].bitplan_quant.weight(model[0], "weight")
    assert torch.equal(used, quant.uniform_quantize(weight, 3, channel_dim=0, grid="integer"))


def test_activation_quantizer_module_takes_the_grid():
    # batch range [0.5, 2] widened to [0, 2]: levels 0, 2/3, 4/3, 2
    quantizer = quant.ActivationQuantizer(2, grid="integer")
    assert torch.allclose(quantizer(torch.tensor([0.5, 1.0, 2.0])), torch.tensor([2 / 3, 4 / 3, 2.0]))
