"""Gradient quantization: identity forward, the gradient at a GEMM output quantized in backward.

CPT and Banner et al. quantize the neural gradient dL/dY (Y the GEMM output) once, in the backward
pass, and feed the quantized value to both backward GEMMs (dX and dW). ``quantize_gradient(y)``
marks ``y`` for that: its forward value is ``y`` itself (no copy), its backward replaces dL/dy by
a quantized version, with

- ``sr``: per-tensor min/max uniform quantization at ``bits`` with stochastic rounding
  (unbiased; CPT's 8-bit default);
- ``luq``: LUQ's radix-2 FP4 (``luq_quantize``); ``bits`` is ignored, the format is 4 bits;
- ``none``: no quantization.

The forward output shares ``y``'s storage but is not an autograd view, so a following in-place
op (``ReLU(inplace=True)``) works; the quantized gradient is the one at ``y``, before that op.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from bitplan.quant.luq import luq_quantize
from bitplan.quant.options import FULL_PRECISION_BITS, GradQuant, check_bits, check_samples
from bitplan.quant.uniform import check_float, uniform_quantize

DEFAULT_GRADIENT_BITS = 8
"""Stochastic-rounding width when ``bits`` is None (CPT and Banner et al. use 8-bit gradients)."""


class _QuantizeGradient(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, y: Tensor, method: GradQuant, bits: int, generator: torch.Generator | None, samples: int
    ) -> Tensor:
        ctx.settings = (method, bits, generator, samples)
        return y.detach()  # same storage, a fresh autograd output (not a view of the input)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        method, bits, generator, samples = ctx.settings
        if method is GradQuant.luq:
            quantized = luq_quantize(grad, generator=generator, samples=samples)
        else:
            quantized = uniform_quantize(grad, bits, stochastic=True, generator=generator, samples=samples)
        return quantized, None, None, None, None


def quantize_gradient(
    y: Tensor,
    bits: int | None = DEFAULT_GRADIENT_BITS,
    method: GradQuant | str = GradQuant.sr,
    generator: torch.Generator | None = None,
    samples: int = 1,
) -> Tensor:
    """Return ``y`` unchanged; in backward, quantize the gradient arriving at it.

    Args:
        y: A GEMM output (floating point). If it does not require grad it is returned as is.
        bits: Stochastic-rounding width for ``sr`` (1–32; None = 8; 32 = no quantization);
            ignored by ``luq``.
        method: ``sr``, ``luq`` or ``none`` (``GradQuant`` or its string value).
        generator: Source of the rounding seeds, read during backward (default: the global
            generator of the gradient's device). Give each distributed rank its own.
        samples: Average this many independent quantizations of the gradient (SMP).

    Returns:
        A tensor equal to ``y`` (same storage) whose gradient will be quantized.

    Raises:
        ValueError: Unknown ``method``, bad ``bits`` or ``samples``, non-float ``y``.

    Example:
        >>> x = torch.ones(4, requires_grad=True)
        >>> y = quantize_gradient(x * 1.0, 8, "sr")
        >>> (y * torch.tensor([0.0, 1.0, 2.0, 3.0])).sum().backward()
        >>> x.grad
        tensor([0., 1., 2., 3.])
    """
    method = _check_method(method)
    check_float(y, "y")
    samples = check_samples(samples)
    bits = DEFAULT_GRADIENT_BITS if bits is None else check_bits(bits)
    if method is GradQuant.none or not y.requires_grad:
        return y
    if method is GradQuant.sr and bits == FULL_PRECISION_BITS:
        return y
    return _QuantizeGradient.apply(y, method, bits, generator, samples)


def _check_method(method: GradQuant | str) -> GradQuant:
    try:
        return GradQuant(method)
    except ValueError:
        choices = ", ".join(choice.value for choice in GradQuant)
        raise ValueError(f"`method` must be one of {choices}, got {method!r}.") from None
