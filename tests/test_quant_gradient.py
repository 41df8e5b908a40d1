"""Gradient quantization: identity forward, quantized dL/dY in backward (SR, LUQ, none)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitplan.quant import GradQuant, kernel_policy, quantize_gradient


@pytest.fixture(autouse=True)
def eager_kernels():
    """These tests check the quantizers' math on the eager kernels (test_quant_kernels compares compiled ones)."""
    with kernel_policy(compile=False):
        yield


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gradient_through(method: GradQuant | str, bits: int | None, upstream: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """dL/dx for y = quantize_gradient(x), L = Σ upstream·y: the quantized upstream gradient itself."""
    x = torch.zeros_like(upstream, requires_grad=True)
    y = quantize_gradient(x * 1.0, bits, method, generator=generator(seed))
    y.backward(upstream)
    return x.grad


def test_forward_is_identity_without_a_copy() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    h = x * 2.0
    y = quantize_gradient(h, 8, GradQuant.sr)
    assert torch.equal(y, h) and y.data_ptr() == h.data_ptr() and y.requires_grad


def test_sr_gradient_has_at_most_two_to_the_bits_levels() -> None:
    upstream = torch.randn(5000, generator=generator())
    for bits in (2, 4):
        grad = gradient_through("sr", bits, upstream)
        assert torch.unique(grad).numel() <= 2**bits
        scale = float(upstream.max() - upstream.min()) / (2**bits - 1)
        assert float((grad - upstream).abs().max()) <= scale * (1 + 1e-5)  # one of the two neighbours
    default = gradient_through("sr", None, upstream)  # None = 8 bits
    assert 16 < torch.unique(default).numel() <= 256


def test_sr_gradient_is_unbiased() -> None:
    # 100k copies of each value get independent noise; the mean of the copies is within 5 standard
    # errors (a draw's std is at most scale/2) of the value.
    n = 100_000
    values = torch.tensor([-1.0, -0.3, 0.2, 0.77, 1.0])
    grad = gradient_through("sr", 2, values.repeat_interleave(n), seed=4).view(len(values), n)
    scale = 2.0 / 3
    assert torch.allclose(grad.double().mean(1), values.double(), atol=5 * scale / 2 / n**0.5, rtol=0)


def test_luq_gradient_levels() -> None:
    upstream = torch.randn(2000, generator=generator())
    grad = gradient_through(GradQuant.luq, None, upstream)
    alpha = float(upstream.abs().max()) / 128
    levels = torch.tensor([0.0] + [alpha * 2.0**k for k in range(8)])
    assert bool((grad.abs().unsqueeze(-1) == levels).any(-1).all())
    assert torch.unique(grad.abs()).numel() <= 9


def test_none_and_full_precision_keep_the_gradient() -> None:
    upstream = torch.randn(100, generator=generator())
    assert torch.equal(gradient_through("none", 8, upstream), upstream)
    assert torch.equal(gradient_through("sr", 32, upstream), upstream)
    plain = torch.randn(4)
    assert quantize_gradient(plain, 8, "sr") is plain  # nothing to quantize without grad


def test_feeds_both_backward_gemms_and_survives_inplace_relu() -> None:
    # conv -> quantize_gradient -> ReLU(inplace): dL/dY (before the ReLU) is quantized once and
    # both dX and dW are computed from it.
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    upstream = torch.randn(2, 3, 5, 5)
    seen = {}
    y = conv(x)
    y.register_hook(lambda grad: seen.setdefault("dy", grad))
    out = nn.ReLU(inplace=True)(quantize_gradient(y, 2, "sr", generator=generator()))
    out.backward(upstream)
    masked = upstream * (y.detach() > 0)
    assert torch.unique(seen["dy"]).numel() <= 4  # 2-bit gradient at the conv output
    assert float((seen["dy"] - masked).abs().max()) <= float(masked.max() - masked.min()) / 3 * (1 + 1e-5)
    expected_dx = torch.nn.grad.conv2d_input(x.shape, conv.weight.detach(), seen["dy"], padding=1)
    assert torch.allclose(x.grad, expected_dx, atol=1e-5)


def test_reproducible_with_generator() -> None:
    upstream = torch.randn(300, generator=generator())
    assert torch.equal(gradient_through("sr", 4, upstream, 3), gradient_through("sr", 4, upstream, 3))
    assert torch.equal(gradient_through("luq", None, upstream, 3), gradient_through("luq", None, upstream, 3))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="`method` must be one of sr, luq, none"):
        quantize_gradient(torch.zeros(2, requires_grad=True), 8, "fp8")
