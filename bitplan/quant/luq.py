"""LUQ (Chmiel et al., "Accurate neural training with 4-bit matrix multiplications at standard formats").

Two quantizers that LUQ pairs:

- ``luq_quantize`` — the backward pass's neural-gradient format, radix-2 FP4: 1 sign bit and 3
  exponent bits, magnitudes α·2^k (k = 0..7) and 0. α = max|x|/2^7, as in the reference code, so
  the largest magnitude is exactly max|x| and nothing clips. When max|x|/2^7 is subnormal it is not
  exact; α is then rounded up to the next representable value, so α·2^7 ≥ max|x| still holds (no
  magnitude lands above the top level) and the top level exceeds max|x| by less than 2^7 subnormal steps. Below α, stochastic underflow: |x|
  becomes α with probability |x|/α, else 0. Between 2^n·α and 2^(n+1)·α, logarithmic stochastic
  rounding: up with probability (|x| − 2^n·α)/(2^n·α). Both are unbiased, E[q(x)] = x. SMP
  averages ``samples`` independent quantizations (variance / samples).
- ``sawb_quantize`` — the forward pass's INT4 weights/activations: SAWB's clip
  12.1·√mean(x²) − 12.2·mean|x| per tensor, symmetric levels, round to nearest, STE.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from bitplan.quant import kernels
from bitplan.quant.kept import KeepCodes, KeptCodes, code_dtype, kept_ste, make_codes, per_byte
from bitplan.quant.kernels import compute_dtype
from bitplan.quant.options import FULL_PRECISION_BITS, check_bits, check_samples
from bitplan.quant.uniform import SCALE_FLOOR, check_float


SAWB_COEFFICIENTS: dict[int, tuple[float, float]] = {4: (12.1, 12.2)}
"""(c1, c2) of clip = c1·√mean(x²) − c2·mean|x| by bit-width: LUQ's 4-bit values."""


def luq_quantize(x: Tensor, *, generator: torch.Generator | None = None, samples: int = 1) -> Tensor:
    """Quantize ``x`` to LUQ's radix-2 FP4 levels {0, ±α·2^k : k = 0..7}, α = max|x|/2^7, unbiased.

    Not differentiable (it is applied to gradients in the backward pass).

    Args:
        x: Floating-point tensor of any shape.
        generator: Source of the rounding seeds (default: the global generator of ``x``'s device).
        samples: SMP: average this many independent quantizations (1 = plain LUQ; the paper uses 2).

    Returns:
        Tensor with ``x``'s shape and dtype. With ``samples=1`` every element is 0 or ±α·2^k; with
        more, the mean of that many such draws.

    Raises:
        ValueError: Non-float ``x`` or ``samples`` < 1.

    Example:
        >>> luq_quantize(torch.tensor([-128.0, 64.0, 1.0, 0.0]))
        tensor([-128.,   64.,    1.,    0.])
    """
    check_float(x)
    samples = check_samples(samples)
    if x.numel() == 0:
        return x.clone()
    with torch.no_grad():
        view = kernels.flat_view(x)
        seeds = kernels.lane_seeds(kernels.draw_seeds(samples, generator, x.device), view)
        out = kernels.run(kernels.luq, view, seeds)
    return out.view(x.shape)


def sawb_clip(x: Tensor, bits: int = 4, *, coefficients: tuple[float, float] | None = None) -> Tensor:
    """SAWB's clipping value c1·√mean(x²) − c2·mean|x| (float32/float64 scalar tensor).

    The fit assumes bell-shaped data; where it is not positive (e.g. a constant tensor gives
    −0.1·|c|) or no coefficients exist for ``bits``, the clip is max|x| (no clipping). It is never
    below 1e−8.

    Args:
        x: Floating-point tensor.
        bits: Width the coefficients belong to (``SAWB_COEFFICIENTS``).
        coefficients: ``(c1, c2)`` overriding the table.

    Returns:
        Scalar tensor on ``x``'s device.
    """
    coefficients = coefficients if coefficients is not None else SAWB_COEFFICIENTS.get(bits)
    view = kernels.flat_view(x)
    peak, square_sum, abs_sum = kernels.run(kernels.abs_moments, view)  # one fused pass when compiled
    if coefficients is None:
        return peak.clamp_min(SCALE_FLOOR)
    c1, c2 = coefficients
    clip = c1 * (square_sum / x.numel()).sqrt() - c2 * abs_sum / x.numel()
    return torch.where(clip > 0, clip, peak).clamp_min(SCALE_FLOOR)


def sawb_quantize(x: Tensor, bits: int = 4, *, coefficients: tuple[float, float] | None = None) -> Tensor:
    """Symmetric per-tensor fake quantization with SAWB's clip, round to nearest.

    Levels are k·Δ, Δ = clip/(2^(bits−1) − 1), k = −(2^(bits−1) − 1) .. 2^(bits−1) − 1 (15 levels
    at 4 bits, zero included); values beyond ±clip saturate. SAWB's coefficients are published for
    4 bits (LUQ); at other widths the clip is max|x| unless ``coefficients`` are given.

    Args:
        x: Floating-point tensor.
        bits: 2–32; 32 returns ``x`` itself.
        coefficients: ``(c1, c2)`` for the clip, overriding ``SAWB_COEFFICIENTS``.

    Returns:
        Tensor with ``x``'s shape and dtype.

    Raises:
        ValueError: Non-float ``x`` or bits outside 2–32.

    Example:
        >>> sawb_quantize(torch.tensor([-1.0, 0.5, 1.0]), 4, coefficients=(1.0, 0.0))
        tensor([-0.8660,  0.4949,  0.8660])
    """
    check_float(x)
    if check_bits(bits) == FULL_PRECISION_BITS:
        return x
    if bits < 2:
        raise ValueError("`bits` must be at least 2 for symmetric SAWB levels (1 bit leaves only zero).")
    if x.numel() == 0:
        return x.clone()
    with torch.no_grad():
        view, step, qlim = _sawb_step(x, bits, coefficients)
        out = kernels.run(kernels.symmetric_nearest, view, step, qlim)
    return out.view(x.shape)


def _sawb_step(x: Tensor, bits: int, coefficients: tuple[float, float] | None) -> tuple[Tensor, Tensor, Tensor]:
    """The view SAWB quantizes, its step clip/qlim and qlim = 2^(bits−1) − 1."""
    view = kernels.flat_view(x)
    qlim = torch.full((), 2 ** (bits - 1) - 1, dtype=compute_dtype(x), device=x.device)
    return view, sawb_clip(view, bits, coefficients=coefficients) / qlim, qlim


def sawb_kept(x: Tensor, bits: int, keep: KeepCodes) -> Tensor:
    """``sawb_ste`` whose result ``keep`` stores as codes (q + qlim, ``bits`` wide) when a GEMM saves it.

    Call ``kept.keeps_codes(bits, x)`` first; ``bits`` is 2–15.
    """

    def quantize() -> tuple[Tensor, KeptCodes]:
        view, step, qlim = _sawb_step(x, bits, None)
        count, dtype = per_byte(bits, view), code_dtype(bits)
        out, codes = kernels.run(kernels.symmetric_nearest_kept, view, step, qlim, count, dtype)
        out = out.view(x.shape)
        return out, make_codes(out, codes, count, step, qlim, integer=True)

    return kept_ste(x, quantize, keep)


class _SawbSTE(torch.autograd.Function):
    """sawb_quantize forward; straight-through backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, bits: int, coefficients: tuple[float, float] | None) -> Tensor:
        return sawb_quantize(x, bits, coefficients=coefficients)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return grad, None, None


def sawb_ste(x: Tensor, bits: int = 4, *, coefficients: tuple[float, float] | None = None) -> Tensor:
    """``sawb_quantize`` with a straight-through gradient (dL/dx = dL/dx̂); 32 bits returns ``x``.

    Example:
        >>> w = torch.randn(16, requires_grad=True)
        >>> sawb_ste(w).sum().backward()
        >>> bool((w.grad == 1).all())
        True
    """
    check_float(x)
    if check_bits(bits) == FULL_PRECISION_BITS:
        return x
    return _SawbSTE.apply(x, bits, coefficients)
