"""The same quantizer code on every device: CPU always, CUDA when present (skipped otherwise).

Each case checks a property against an oracle computed on the CPU in float64, so a device that
quantized differently (another noise stream, a skipped level, a wrong scale) fails; eager and
compiled kernels must agree bit for bit on each device.
"""

from __future__ import annotations

import pytest
import torch

from bitplan import quant
from bitplan.quant import kernels

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_nearest_matches_the_float64_formula(device: str) -> None:
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    low, high = float(x.min()), float(x.max())
    scale = (high - low) / 15
    expected = torch.clamp(torch.round((x.double() - low) / scale), 0, 15) * scale + low
    out = quant.uniform_quantize(x.to(device), 4).cpu()
    assert out.device.type == "cpu" and out.dtype == torch.float32
    assert torch.allclose(out.double(), expected, rtol=0, atol=1e-6 * scale * 16)


@pytest.mark.parametrize("device", DEVICES)
def test_noise_is_the_same_stream_on_every_device(device: str) -> None:
    seed = torch.tensor(987, dtype=torch.int32)
    on_cpu = kernels.counter_uniform(torch.empty(10_000), seed)
    on_device = kernels.counter_uniform(torch.empty(10_000, device=device), seed.to(device))
    assert torch.equal(on_cpu, on_device.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_stochastic_rounding_is_unbiased(device: str) -> None:
    # every element sits 0.3 of a step above a level: the mean rounding must be 0.3 (±5σ)
    n = 1 << 16
    x = torch.full((n,), 0.3, device=device)
    x[0], x[1] = 0.0, 1.0  # range [0, 1] at 1 bit: levels 0 and 1
    out = quant.uniform_quantize(x, 1, stochastic=True, generator=None).double().cpu()
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert float(out[2:].mean()) == pytest.approx(0.3, abs=5 * (0.3 * 0.7 / n) ** 0.5)


@pytest.mark.parametrize("device", DEVICES)
def test_luq_levels_and_unbiasedness(device: str) -> None:
    x = torch.randn(1 << 15, generator=torch.Generator().manual_seed(2)).to(device)
    draws = torch.stack([quant.luq_quantize(x).cpu().double() for _ in range(8)])
    alpha = float(x.abs().max()) / 2**7
    magnitudes = (draws.abs() / alpha).unique()
    allowed = torch.tensor([0.0] + [2.0**k for k in range(8)], dtype=torch.float64)
    assert torch.isclose(magnitudes[:, None], allowed[None, :], rtol=1e-6, atol=0).any(dim=1).all()
    bias = (draws.mean(0) - x.cpu().double()).mean()
    assert abs(float(bias)) < 5 * float(draws.std(0).mean()) / (8 * x.numel()) ** 0.5 + 1e-7


@pytest.mark.slow  # compiles a kernel (~10 s); CI runs it
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_equals_eager_on_the_device(device: str) -> None:
    pytest.importorskip("torch._inductor")
    x = torch.randn(1 << 12, generator=torch.Generator().manual_seed(3)).to(device)

    def stochastic() -> torch.Tensor:
        generator = torch.Generator(device=device).manual_seed(1)
        return quant.uniform_quantize(x, 8, stochastic=True, generator=generator)

    with quant.kernel_policy(compile=False):
        eager = stochastic()
    with quant.kernel_policy(compile=True, min_numel=0):
        compiled = stochastic()
    assert torch.equal(eager, compiled)
