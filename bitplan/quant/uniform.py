"""GEMMLOWP-style uniform affine quantization (Banner et al. 2018; CPT, Fu et al. 2021).

With b bits and a range [min, max] (of the tensor, of each channel, or given):

    scale = max((max − min)/(2^b − 1), 1e−8)
    q     = clamp(round((x − min)/scale), 0, 2^b − 1)        round to nearest (ties to even), or
    q     = clamp(floor(v) + [r < v − floor(v)], 0, 2^b − 1)   stochastic, v = (x − min)/scale, r ~ U[0, 1)
    x̂     = q·scale + min

The zero point is min itself (a float, not rounded to an integer), so min is always exactly
representable. With ``grid="integer"`` (the integer-zero-point grid of torchao, ONNX QDQ and
compressed-tensors) the range is first widened to include 0, min' = min(min, 0), max' = max(max, 0):

    scale = max((max' − min')/(2^b − 1), 1e−8)
    zp    = clamp(round(−min'/scale), 0, 2^b − 1)
    q     = clamp(round(x·(1/scale)) + zp, 0, 2^b − 1)
    x̂     = (q − zp)·scale

(multiplying by the reciprocal, as torchao does, so both agree bit for bit; docs/quantizers.md). Stochastic rounding goes up with probability frac(v): the same law as
round(v + u), u ~ U(−½, ½), and unbiased, E[q] = v. Arithmetic is in float32 (float64 for float64
inputs); the result has the input's dtype. 32 bits means full precision: the input is returned.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from bitplan.choices import ZeroPoint
from bitplan.quant import kernels
from bitplan.quant.kernels import compute_dtype
from bitplan.quant.kept import KeepCodes, KeptCodes, code_dtype, kept_ste, make_codes, per_byte
from bitplan.quant.options import FULL_PRECISION_BITS, check_bits, check_samples

SCALE_FLOOR = 1e-8
"""Smallest scale (docs/quantizers.md): a constant tensor quantizes to itself instead of dividing by zero."""

Bound = float | Tensor | None


@dataclass(frozen=True)
class _Affine:
    """A tensor's canonical view and the quantizer parameters that broadcast against it."""

    view: Tensor  # [N] per tensor (contiguous input), [outer, C, inner] per channel, else the input
    low: Tensor  # [] or [1, C, 1], compute dtype
    scale: Tensor  # like low
    qmax: Tensor  # [], compute dtype
    zero_point: Tensor | None = None  # integer grid only: the zero point's code, like low


def check_float(x: Tensor, name: str = "x") -> None:
    """Raise ValueError unless ``x`` is a floating-point tensor."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        found = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a floating-point tensor, got {found}; convert it with `.float()`.")


def uniform_quantize(
    x: Tensor,
    bits: int,
    *,
    channel_dim: int | None = None,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    x_min: Bound = None,
    x_max: Bound = None,
    samples: int = 1,
    grid: ZeroPoint | str = ZeroPoint.float,
) -> Tensor:
    """Fake-quantize ``x`` to ``bits`` with the GEMMLOWP affine quantizer (dequantized values).

    Not differentiable; ``fake_quant_ste`` is the autograd version.

    Args:
        x: Floating-point tensor of any shape (float32, float64, bfloat16, float16; CPU or CUDA).
        bits: 1–32; 32 returns ``x`` itself.
        channel_dim: Dimension whose slices get their own range (e.g. 0 for conv/linear output
            channels); None for one range over the whole tensor.
        stochastic: Stochastic rounding instead of round-to-nearest.
        generator: Source of the stochastic-rounding seeds (default: the global generator of
            ``x``'s device).
        x_min: Lower end of the range instead of the data's minimum: a float, a scalar tensor, or
            with ``channel_dim`` a tensor of one value per channel.
        x_max: Upper end of the range, like ``x_min``.
        samples: With ``stochastic``, average this many independent roundings (SMP).
        grid: ``float`` (zero point = the range minimum) or ``integer`` (range widened to
            include 0, integer zero point; see the module docstring).

    Returns:
        Tensor with ``x``'s shape and dtype holding at most 2^bits distinct values per range.

    Raises:
        ValueError: Non-float ``x``, bits outside 1–32, a bad ``channel_dim`` or bound shape.

    Example:
        >>> uniform_quantize(torch.tensor([0.0, 0.3, 1.0]), 2)
        tensor([0.0000, 0.3333, 1.0000])
    """
    check_float(x)
    check_bits(bits)
    samples = check_samples(samples)
    if bits == FULL_PRECISION_BITS:
        return x
    if x.numel() == 0:
        return x.clone()
    with torch.no_grad():
        p = _affine(x, bits, channel_dim, x_min, x_max, grid)
        seeds = kernels.lane_seeds(kernels.draw_seeds(samples, generator, x.device), p.view) if stochastic else None
        if p.zero_point is not None:
            out = _integer_grid(p, seeds)
        elif stochastic:
            out = kernels.run(kernels.affine_stochastic, p.view, p.low, p.scale, p.qmax, seeds)
        else:
            out = kernels.run(kernels.affine_nearest, p.view, p.low, p.scale, p.qmax)
    return out.view(x.shape)


def _integer_grid(p: _Affine, seeds: Tensor | None) -> Tensor:
    inverse = torch.reciprocal(p.scale)
    if seeds is None:
        return kernels.run(kernels.integer_nearest, p.view, p.scale, inverse, p.zero_point, p.qmax)
    return kernels.run(kernels.integer_stochastic, p.view, p.scale, inverse, p.zero_point, p.qmax, seeds)


def uniform_codes(
    x: Tensor, bits: int, *, channel_dim: int | None = None, grid: ZeroPoint | str = ZeroPoint.float
) -> tuple[Tensor, Tensor, Tensor]:
    """Integer codes of ``x`` (round to nearest) with the scale and zero point that decode them.

    ``dequantize_codes(*uniform_codes(x, b))`` equals ``uniform_quantize(x, b)`` bit for bit
    (for bfloat16/float16 ``x`` after casting back to its dtype).

    Args:
        x: Floating-point tensor.
        bits: 1–31 (codes must fit an integer type).
        channel_dim: As in ``uniform_quantize``.
        grid: As in ``uniform_quantize``; decode with the same ``grid`` in ``dequantize_codes``.

    Returns:
        ``(codes, scale, zero_point)``: codes shaped like ``x`` in the smallest integer type that
        holds 0..2^bits−1 (uint8 up to 8 bits, int16 up to 15, else int32); scale and zero point
        (the range minimum on the float grid, the zero point's code on the integer grid) in
        float32 (float64 for float64 ``x``), shaped to broadcast against ``x``: ``[]`` per tensor,
        ``[1, .., C, .., 1]`` per channel.

    Raises:
        ValueError: As ``uniform_quantize``, or ``bits`` = 32.

    Example:
        >>> codes, scale, zero_point = uniform_codes(torch.tensor([0.0, 0.25, 1.0]), 8)
        >>> codes
        tensor([  0,  64, 255], dtype=torch.uint8)
    """
    check_float(x)
    if check_bits(bits) == FULL_PRECISION_BITS:
        raise ValueError("`bits` must be below 32 for integer codes; 32-bit weights are stored as floats.")
    code_dtype = torch.uint8 if bits <= 8 else torch.int16 if bits <= 15 else torch.int32
    broadcast = _broadcast_shape(x, channel_dim)
    if x.numel() == 0:
        dtype = compute_dtype(x)
        scale = torch.full(broadcast, SCALE_FLOOR, dtype=dtype, device=x.device)
        return torch.empty(x.shape, dtype=code_dtype, device=x.device), scale, torch.zeros_like(scale)
    eager_cpu = x.device.type == "cpu" and not kernels.compiles(kernels.affine_codes, x)
    with torch.no_grad(), kernels.one_thread() if eager_cpu else nullcontext():
        chunked = eager_cpu and x.numel() >= 4 * kernels.CHUNK_NUMEL
        p = _affine(x, bits, channel_dim, None, None, grid, chunked=chunked)
        if p.zero_point is None:
            recipe, args, zero_point = kernels.affine_codes, (p.low, p.scale, p.qmax), p.low
        else:
            recipe, args, zero_point = kernels.integer_codes, (torch.reciprocal(p.scale), p.zero_point, p.qmax), p.zero_point
        # eagerly on the CPU (export: each weight once), one thread, and large tensors in cache-sized
        # slices whose codes are made as they go: no float copy of the whole tensor
        if chunked:
            codes = kernels.run_in_chunks(_as_codes, p.view, recipe, code_dtype, *args, dim=1 if channel_dim is not None else 0)
        else:
            codes = kernels.run(recipe, p.view, *args).to(code_dtype)
    return codes.view(x.shape), p.scale.reshape(broadcast), zero_point.reshape(broadcast)


def _as_codes(view: Tensor, recipe, code_dtype: torch.dtype, *args: Tensor) -> Tensor:
    return recipe(view, *args).to(code_dtype)



def dequantize_codes(codes: Tensor, scale: Tensor, zero_point: Tensor, *, grid: ZeroPoint | str = ZeroPoint.float) -> Tensor:
    """Decode integer codes: codes·scale + zero_point (float grid) or (codes − zero_point)·scale (integer grid).

    Args:
        codes: Integer tensor from ``uniform_codes``.
        scale: Scale broadcastable against ``codes``.
        zero_point: Range minimum (float grid) or zero point code (integer grid), broadcastable
            against ``codes``.
        grid: The grid ``uniform_codes`` used.

    Returns:
        Float tensor (``scale``'s dtype) shaped like ``codes``.
    """
    if ZeroPoint(grid) is ZeroPoint.integer:
        return codes.to(scale.dtype).sub_(zero_point).mul_(scale)
    return codes.to(scale.dtype).mul_(scale).add_(zero_point)


class _FakeQuantSTE(torch.autograd.Function):
    """uniform_quantize forward; straight-through estimator backward (gradient passes unchanged)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        bits: int,
        channel_dim: int | None,
        stochastic: bool,
        generator: torch.Generator | None,
        x_min: Bound,
        x_max: Bound,
        samples: int,
        grid: ZeroPoint,
    ) -> Tensor:
        return uniform_quantize(
            x,
            bits,
            channel_dim=channel_dim,
            stochastic=stochastic,
            generator=generator,
            x_min=x_min,
            x_max=x_max,
            samples=samples,
            grid=grid,
        )

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return grad, None, None, None, None, None, None, None, None


def fake_quant_ste(
    x: Tensor,
    bits: int,
    *,
    channel_dim: int | None = None,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    x_min: Bound = None,
    x_max: Bound = None,
    samples: int = 1,
    grid: ZeroPoint | str = ZeroPoint.float,
) -> Tensor:
    """``uniform_quantize`` with a straight-through gradient: dL/dx = dL/dx̂, unchanged.

    Takes the same arguments as ``uniform_quantize``; at 32 bits returns ``x`` itself. Bounds
    given as tensors are treated as constants (no gradient flows to them).

    Example:
        >>> w = torch.randn(8, 4, requires_grad=True)
        >>> fake_quant_ste(w, 4, channel_dim=0).sum().backward()
        >>> bool((w.grad == 1).all())
        True
    """
    check_float(x)
    if check_bits(bits) == FULL_PRECISION_BITS:
        return x
    x_min = x_min.detach() if isinstance(x_min, Tensor) else x_min
    x_max = x_max.detach() if isinstance(x_max, Tensor) else x_max
    return _FakeQuantSTE.apply(x, bits, channel_dim, stochastic, generator, x_min, x_max, samples, ZeroPoint(grid))


def fake_quant_kept(
    x: Tensor,
    bits: int,
    keep: KeepCodes,
    *,
    channel_dim: int | None = None,
    x_min: Bound = None,
    x_max: Bound = None,
    grid: ZeroPoint | str = ZeroPoint.float,
) -> Tensor:
    """``fake_quant_ste`` (round to nearest) whose result ``keep`` stores as codes when a GEMM saves it.

    Same values and gradient as ``fake_quant_ste``; call ``kept.keeps_codes(bits, x)`` first (this
    function assumes codes fit: 1–15 bits, a float ``x``).
    """
    x_min = x_min.detach() if isinstance(x_min, Tensor) else x_min
    x_max = x_max.detach() if isinstance(x_max, Tensor) else x_max

    def quantize() -> tuple[Tensor, KeptCodes]:
        p = _affine(x, bits, channel_dim, x_min, x_max, grid)
        count, dtype = per_byte(bits, p.view), code_dtype(bits)
        if p.zero_point is None:
            out, codes = kernels.run(kernels.affine_nearest_kept, p.view, p.low, p.scale, p.qmax, count, dtype)
            offset = p.low
        else:
            inverse = torch.reciprocal(p.scale)
            out, codes = kernels.run(
                kernels.integer_nearest_kept, p.view, p.scale, inverse, p.zero_point, p.qmax, count, dtype
            )
            offset = p.zero_point
        out = out.view(x.shape)
        return out, make_codes(out, codes, count, p.scale, offset, integer=p.zero_point is not None)

    return kept_ste(x, quantize, keep)


# --- parameters ----------------------------------------------------------------------------


def _affine(
    x: Tensor,
    bits: int,
    channel_dim: int | None,
    x_min: Bound,
    x_max: Bound,
    grid: ZeroPoint | str = ZeroPoint.float,
    *,
    chunked: bool = False,
) -> _Affine:
    dtype = compute_dtype(x)
    if channel_dim is None:
        view = kernels.flat_view(x)  # [N/W, W] or [N] when contiguous: one compiled graph for every shape
        low, high = _tensor_range(view, x_min, x_max)
        channels = None
    else:
        dim = _check_channel_dim(x, channel_dim)
        channels = x.shape[dim]
        view = x.reshape(math.prod(x.shape[:dim]), channels, -1)  # [outer, C, inner]
        low, high = _channel_range(view, x_min, x_max, chunked=chunked)
    low = _bound(low, dtype, x.device, channels, "x_min")
    high = _bound(high, dtype, x.device, channels, "x_max")
    qmax = torch.full((), 2**bits - 1, dtype=dtype, device=x.device)
    if ZeroPoint(grid) is ZeroPoint.float:
        return _Affine(view, low, (high - low).div_(qmax).clamp_min_(SCALE_FLOOR), qmax)
    low, high = low.clamp_max(0), high.clamp_min(0)  # the range widened to include 0
    scale = (high - low).div_(qmax).clamp_min_(SCALE_FLOOR)
    zero_point = torch.div(low.neg(), scale).round_().clamp_(min=0).clamp_(max=qmax)
    return _Affine(view, low, scale, qmax, zero_point)


def _tensor_range(view: Tensor, x_min: Bound, x_max: Bound) -> tuple[Bound, Bound]:
    if x_min is not None and x_max is not None:
        return x_min, x_max
    if x_min is None and x_max is None:
        return torch.aminmax(view)
    return (view.amin() if x_min is None else x_min), (view.amax() if x_max is None else x_max)


def _channel_range(view: Tensor, x_min: Bound, x_max: Bound, *, chunked: bool = False) -> tuple[Bound, Bound]:
    # view: [outer, C, inner] -> ranges [1, C, 1]
    if x_min is not None and x_max is not None:
        return x_min, x_max
    if chunked:  # each channel's range is its own: slices of channels give the same ranges
        low, high = kernels.run_in_chunks(kernels.channel_range, view, dim=1)
    else:
        low, high = kernels.run(kernels.channel_range, view)
    return (low if x_min is None else x_min), (high if x_max is None else x_max)


def _bound(value: Bound, dtype: torch.dtype, device: torch.device, channels: int | None, name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=dtype, device=device)
    if tensor.numel() == 1:
        return tensor.reshape(() if channels is None else (1, 1, 1))
    if channels is not None and tensor.numel() == channels:
        return tensor.reshape(1, channels, 1)
    expected = "one value" if channels is None else f"one value or {channels} (one per channel)"
    raise ValueError(f"`{name}` must hold {expected}, got shape {tuple(tensor.shape)}.")


def _check_channel_dim(x: Tensor, channel_dim: int) -> int:
    if isinstance(channel_dim, bool) or not isinstance(channel_dim, int) or not -x.dim() <= channel_dim < x.dim():
        raise ValueError(
            f"`channel_dim` must be a dimension of the {x.dim()}-d tensor (from {-x.dim()} to {x.dim() - 1}), "
            f"got {channel_dim!r}; use None for one range over the whole tensor."
        )
    return channel_dim % x.dim()


def _broadcast_shape(x: Tensor, channel_dim: int | None) -> tuple[int, ...]:
    if channel_dim is None:
        return ()
    dim = _check_channel_dim(x, channel_dim)
    return tuple(size if axis == dim else 1 for axis, size in enumerate(x.shape))
