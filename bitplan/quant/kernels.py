"""Elementwise quantizer kernels: written once in torch, run eagerly or as one fused compiled loop.

A quantizer is a reduction (min/max, max|x|, ...) followed by an elementwise recipe. The recipes
below are plain torch functions written in place on a single temporary, so that

- eagerly they allocate one output (allocating is what makes ``torch.clone`` of a large tensor
  slow: first-touch page faults) and make a few in-cache passes over it;
- under ``torch.compile`` they fuse into one vectorized loop that reads ``x`` once and writes the
  output once, noise included.

``run`` picks the path: the compiled kernel for tensors of at least ``KernelPolicy.min_numel``
elements (where the one-time compile, ~2–20 s, pays off), and, once a recipe's kernel exists for
a dtype, device and rank, for every tensor of at least ``KernelPolicy.warm_min_numel`` elements (its
compile is paid; the eager recipe is a dozen passes, each a parallel region); the eager recipe otherwise, when
compilation is disabled or fails (a warning, then eager for good), and inside an outer
``torch.compile`` (which then fuses the recipe itself). Both paths compute the same elementwise
operations in the same order and give bit-identical results (SAWB's clip is a sum, accumulated in
float64 so the two summation orders agree); dynamo caches one compiled graph per dtype/device.

Stochastic rounding draws its noise from a counter-based hash of (seed, element index) rather than
``torch.rand``: the hash fuses into the kernel for free, while CPU ``torch.rand`` costs more than
the whole quantizer (~100 M numbers/s). Seeds come from a ``torch.Generator``, so runs are
reproducible and the generator advances the same way on every path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

import torch
from torch import Tensor

from bitplan.quant.pages import empty_on_huge_pages

_HASH_MULTIPLIER = 0x45D9F3B  # 32-bit integer hash constant (two xorshift-multiply rounds)
_NOISE_BITS = 24  # uniform noise resolution: r = k · 2^-24, k in [0, 2^24)
_MAX_NUMEL = 2**31 - 1  # the element index is hashed as int32
ROW_WIDTHS = (256, 16)  # flat_view's row lengths, widest first: a [R, W] view hashes index W·row + lane

Result = TypeVar("Result")


@dataclass(frozen=True)
class KernelPolicy:
    """When ``run`` uses a compiled kernel.

    Attributes:
        compile: Whether compiled kernels may be used at all (env ``BITPLAN_QUANT_COMPILE=0``
            turns them off by default).
        min_numel: Smallest tensor (elements) worth compiling a kernel for; smaller ones run eagerly
            unless the kernel already exists.
        warm_min_numel: Smallest tensor that uses a kernel already compiled (for this recipe,
            dtype, device and rank): mid-size tensors of a training step then take one fused pass
            too. The rank is part of the key because a new rank means a recompile (seconds, and
            dynamo allows 8 per recipe).
        huge_page_min_bytes: Smallest output (bytes) of an elementwise recipe that the compiled
            kernel writes into a buffer on transparent huge pages (``pages.py``): from glibc's
            32 MiB on, every allocation is fresh memory, and its page faults cost more than the pass.
    """

    compile: bool = os.environ.get("BITPLAN_QUANT_COMPILE", "1") != "0"
    min_numel: int = 1 << 18
    warm_min_numel: int = 1 << 12
    huge_page_min_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        for name in ("min_numel", "warm_min_numel", "huge_page_min_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")


_policy = KernelPolicy()
_compiled: dict[Callable[..., object], Callable[..., object]] = {}
_compiled_into: dict[Callable[..., object], Callable[..., object]] = {}  # recipe -> compiled out.copy_(recipe(...))
_failed: set[tuple[str, torch.dtype, str]] = set()
_warm: set[tuple[str, torch.dtype, str, int]] = set()  # (recipe, dtype, device, rank) compiled and run


def get_kernel_policy() -> KernelPolicy:
    """The policy ``run`` currently follows."""
    return _policy


def set_kernel_policy(
    *,
    compile: bool | None = None,
    min_numel: int | None = None,
    warm_min_numel: int | None = None,
    huge_page_min_bytes: int | None = None,
) -> KernelPolicy:
    """Change when compiled kernels are used; returns the previous policy (to restore it).

    Args:
        compile: Allow compiled kernels (None keeps the current setting).
        min_numel: Element count from which tensors compile and use them (None keeps the current setting).
        warm_min_numel: Element count from which tensors use an already compiled kernel (None keeps it).
        huge_page_min_bytes: Output size from which compiled elementwise kernels write into huge pages
            (None keeps it).

    Returns:
        The policy in force before the call.

    Example:
        >>> previous = set_kernel_policy(compile=False)
        >>> _ = set_kernel_policy(compile=previous.compile, min_numel=previous.min_numel)
    """
    global _policy
    previous = _policy
    settings = (
        ("compile", compile),
        ("min_numel", min_numel),
        ("warm_min_numel", warm_min_numel),
        ("huge_page_min_bytes", huge_page_min_bytes),
    )
    changes = {key: value for key, value in settings if value is not None}
    _policy = replace(_policy, **changes)
    return previous


@contextmanager
def kernel_policy(
    *,
    compile: bool | None = None,
    min_numel: int | None = None,
    warm_min_numel: int | None = None,
    huge_page_min_bytes: int | None = None,
) -> Iterator[KernelPolicy]:
    """Context manager form of ``set_kernel_policy`` (restores the previous policy on exit)."""
    global _policy
    previous = set_kernel_policy(
        compile=compile, min_numel=min_numel, warm_min_numel=warm_min_numel, huge_page_min_bytes=huge_page_min_bytes
    )
    try:
        yield _policy
    finally:
        _policy = previous


def run(recipe: Callable[..., Result], x: Tensor, *args: object) -> Result:
    """Apply ``recipe(x, *args)``, compiled when the policy says so, eagerly otherwise.

    Args:
        recipe: One of this module's recipes.
        x: The tensor quantized (decides the path by its size, dtype and device).
        *args: The recipe's remaining arguments (tensors, so one compiled graph serves every
            bit-width and range).

    Returns:
        The recipe's result (identical on both paths).
    """
    if not torch.is_grad_enabled():  # values only: a requires_grad flag must not split (and recompile) the graph
        x, args = x.detach(), tuple(arg.detach() if isinstance(arg, Tensor) else arg for arg in args)
    key = (recipe.__name__, x.dtype, x.device.type)
    if _wants_compiled(x, (*key, x.dim()) in _warm) and key not in _failed:
        try:
            # plain tensors in, plain out: a torch-function mode around the call (``qat.scoped``'s, a
            # user's) has nothing to see in a kernel and would be traced into it
            with torch._C.DisableTorchFunction():  # private but stable since torch 1.x; no public equivalent
                result = _run_compiled(recipe, x, args)
        except Exception as error:  # compiling fails many ways (no C++ compiler, no triton); eager is always right
            _failed.add(key)
            warnings.warn(
                f"bitplan.quant: compiling the `{recipe.__name__}` kernel for {x.dtype} on {x.device.type} failed "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); using the eager "
                "kernel from now on (same results, slower). Set BITPLAN_QUANT_COMPILE=0 to skip compiling.",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            _warm.add((*key, x.dim()))
            return result
    return recipe(x, *args)


def _run_compiled(recipe: Callable[..., Result], x: Tensor, args: tuple) -> Result:
    """``recipe``'s compiled kernel on ``x``: writing into huge pages for a large elementwise result."""
    if recipe in _ELEMENTWISE and x.is_contiguous() and x.numel() * x.element_size() >= _policy.huge_page_min_bytes:
        return _compiled_writing_into(recipe)(empty_on_huge_pages(x), x, *args)
    compiled = _compiled.get(recipe)
    if compiled is None:
        compiled = _compiled[recipe] = torch.compile(recipe, dynamic=True, fullgraph=True)
    return compiled(x, *args)


def _compiled_writing_into(recipe: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``recipe`` compiled to write its result into a given buffer (inductor fuses the copy away)."""
    compiled = _compiled_into.get(recipe)
    if compiled is None:

        def into(out: Tensor, x: Tensor, *args: object) -> Tensor:
            return out.copy_(recipe(x, *args))

        # one code object per recipe: dynamo caches compiled graphs by code object, with 8 at most
        into.__code__ = into.__code__.replace(co_name=f"{recipe.__name__}_into")
        compiled = _compiled_into[recipe] = torch.compile(into, dynamic=True, fullgraph=True)
    return compiled


CHUNK_NUMEL = 1 << 16
"""Elements per slice in ``run_in_chunks``: 256 KiB of float32, so a recipe's passes stay in cache."""


def compiles(recipe: Callable[..., object], x: Tensor) -> bool:
    """Whether ``run(recipe, x, ...)`` would use the compiled kernel."""
    key = (recipe.__name__, x.dtype, x.device.type)
    return _wants_compiled(x, (*key, x.dim()) in _warm) and key not in _failed


def run_in_chunks(recipe: Callable[..., Result], x: Tensor, *args: object, dim: int = 0) -> Result:
    """The eager ``recipe`` over cache-sized slices of ``x`` along ``dim``, on one thread.

    For a recipe that works on each index of ``dim`` independently (elementwise recipes along any
    dim, ``channel_range`` along its channel dim): the result is the same as one call, but its
    dozen passes each read a slice that is still in cache instead of the whole tensor from memory.
    Arguments with ``x``'s rank and size along ``dim`` are sliced alongside; the slices' results
    (a tensor or a tuple of tensors) are concatenated along ``dim``.
    """
    length = x.shape[dim]
    step = max(1, CHUNK_NUMEL * length // max(x.numel(), 1))

    def piece(value: object, start: int) -> object:
        if isinstance(value, Tensor) and value.dim() == x.dim() and value.shape[dim] == length and length > 1:
            return value.narrow(dim, start, min(step, length - start))
        return value

    with one_thread():
        results = [recipe(piece(x, start), *(piece(arg, start) for arg in args)) for start in range(0, length, step)]
        if isinstance(results[0], tuple):
            return tuple(torch.cat(parts, dim) for parts in zip(*results))  # type: ignore[return-value]
        return torch.cat(results, dim)  # type: ignore[arg-type]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run cache-sized chunks on one intra-op thread: they gain nothing from more and lose much to
    their synchronisation (7× slower with 2 threads on a shared 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _wants_compiled(x: Tensor, warm: bool) -> bool:
    threshold = min(_policy.min_numel, _policy.warm_min_numel) if warm else _policy.min_numel
    return (
        _policy.compile
        and x.numel() >= threshold
        and x.device.type in ("cpu", "cuda")
        and not torch.compiler.is_compiling()
    )


def flat_view(x: Tensor) -> Tensor:
    """``x`` as the tensor a per-tensor recipe runs on: [N/W, W] or [N] when contiguous, else ``x``.

    A flat view lets one compiled kernel serve every shape. Rows of W elements (a power of two, the
    widest of ``ROW_WIDTHS`` that divides N) let the noise hash take its element index as W·row + lane
    with the lane part read from a W-element vector (``lane_seeds``), instead of building an index
    vector per element (which costs more than the rest of the rounding); long rows also make the
    compiled loop's per-row work (scalar loads, a fused kernel's range arithmetic) rare. Inside an
    outer ``torch.compile`` the tensor is kept as it is: there its memory layout may be channels-last
    (inductor's layout choice for convolutions), and a flat view in logical order would force a
    transposing copy (gathers, plus a second pass to transpose back). Results do not depend on the
    view: the noise hash is indexed by the logical element index either way.
    """
    if x.is_contiguous() and not torch.compiler.is_compiling():
        for width in ROW_WIDTHS:
            if x.numel() % width == 0:
                return x.view(-1, width)  # [N/W, W]
        return x.reshape(-1)  # [N]
    return x


# --- noise ---------------------------------------------------------------------------------


def draw_seeds(count: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``count`` int32 seeds for ``counter_uniform``, drawn from ``generator`` (or the default one).

    Returns:
        Tensor [count] of int32 on ``device``.
    """
    source = generator.device if generator is not None else device
    seeds = torch.randint(0, 2**31 - 1, (count,), generator=generator, device=source, dtype=torch.int64)
    return seeds.to(device=device, dtype=torch.int32)


def lane_seeds(seeds: Tensor, view: Tensor) -> Tensor:
    """Seeds in the form ``counter_uniform`` hashes ``view`` fastest: [count, W] for a [R, W] view.

    For a [R, W] tensor with W a power of two the element index is W·row + lane; its low bits are
    the lane, so index XOR seed = W·row XOR (lane XOR seed). Precomputing lane XOR seed (W values)
    leaves the kernel a scalar per row and one vector load, and gives exactly the noise of the plain
    index.

    Args:
        seeds: [count] int32 from ``draw_seeds``.
        view: The tensor the recipe will run on.

    Returns:
        [count, W] int32 when ``view`` is [R, W] with W one of ``ROW_WIDTHS``, else ``seeds``
        unchanged ([count]).
    """
    if view.dim() != 2 or view.shape[1] not in ROW_WIDTHS:
        return seeds
    lanes = torch.arange(view.shape[1], dtype=torch.int32, device=seeds.device)
    return seeds[:, None].bitwise_xor(lanes)  # [count, W]


def counter_uniform(like: Tensor, seed: Tensor) -> Tensor:
    """Uniform noise r = k·2^-24 in [0, 1), one value per element of ``like``, from a hash of (seed, index).

    The hash is two xorshift-multiply rounds on 32-bit integers (wrapping arithmetic) of
    ``index XOR seed`` (index: the element's position in row-major order); its top 24 bits are the
    noise. Stateless, so it fuses into a kernel.

    Args:
        like: Any tensor; only its shape and device are used.
        seed: int32 scalar tensor (from ``draw_seeds``), or for a [R, W] ``like`` the [W] row of
            ``lane_seeds`` (same noise, cheaper in a compiled kernel).

    Returns:
        float32 tensor shaped like ``like``.
    """
    if like.numel() > _MAX_NUMEL:
        raise ValueError(f"stochastic rounding supports tensors of up to 2^31 - 1 elements, got {like.numel()}.")
    if seed.dim() == 1:  # like [R, W], seed [W] = lane XOR seed
        rows = torch.arange(like.shape[0], dtype=torch.int32, device=like.device).mul_(like.shape[1])
        k = rows[:, None].bitwise_xor(seed)  # [R, W]: (W·row + lane) XOR seed
    else:
        k = torch.arange(like.numel(), dtype=torch.int32, device=like.device).view(like.shape)
        k.bitwise_xor_(seed)
    k.bitwise_xor_((k >> 16) & 0xFFFF).mul_(_HASH_MULTIPLIER)  # >> is arithmetic: mask the sign copies
    k.bitwise_xor_((k >> 16) & 0xFFFF).mul_(_HASH_MULTIPLIER)
    k.bitwise_xor_((k >> 16) & 0xFFFF)
    k.bitwise_right_shift_(32 - _NOISE_BITS).bitwise_and_((1 << _NOISE_BITS) - 1)
    return k.to(torch.float32).mul_(2.0**-_NOISE_BITS)


def _round_stochastic_(v: Tensor, seeds: Tensor) -> Tensor:
    """Average over ``seeds`` of floor(v) + [r < frac(v)]: rounds up with probability frac(v).

    Comparing r with the fraction (instead of floor(v + r)) keeps every draw on one of the two
    neighbouring integers even where v + r would round up in floating point. Consumes ``v``.
    """
    low = torch.floor(v)
    fraction = v.sub_(low)  # in [0, 1)
    ups = counter_uniform(fraction, seeds[0]) < fraction
    count = ups.to(fraction.dtype)
    for sample in range(1, seeds.shape[0]):
        count.add_(counter_uniform(fraction, seeds[sample]) < fraction)
    if seeds.shape[0] > 1:
        count.div_(seeds.shape[0])
    return low.add_(count)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 for float64 tensors, float32 for every other floating dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# --- recipes -------------------------------------------------------------------------------
# x: the quantized tensor (any float dtype, a canonical view); other tensors are in the compute
# dtype (float32, or float64 for float64 x) and broadcast against x.


def affine_codes(x: Tensor, low: Tensor, scale: Tensor, qmax: Tensor) -> Tensor:
    """q = clamp(round((x − low)/scale), 0, qmax), as floats of the compute dtype."""
    q = torch.sub(x.to(low.dtype), low)
    return q.div_(scale).round_().clamp_(min=0).clamp_(max=qmax)


def affine_nearest(x: Tensor, low: Tensor, scale: Tensor, qmax: Tensor) -> Tensor:
    """GEMMLOWP fake quantization, round to nearest: q·scale + low."""
    return affine_codes(x, low, scale, qmax).mul_(scale).add_(low).to(x.dtype)


def affine_stochastic(x: Tensor, low: Tensor, scale: Tensor, qmax: Tensor, seeds: Tensor) -> Tensor:
    """GEMMLOWP fake quantization with stochastic rounding (averaged over ``seeds`` when several)."""
    v = torch.sub(x.to(low.dtype), low).div_(scale)
    q = _round_stochastic_(v, seeds)
    return q.clamp_(min=0).clamp_(max=qmax).mul_(scale).add_(low).to(x.dtype)


def channel_range(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel min and max of x [outer, C, inner], each [1, C, 1]: one fused pass when compiled.

    (Eagerly, amin then amax beats ``aminmax(dim=...)``, several times slower on CPU.)
    """
    return x.amin(dim=(0, 2), keepdim=True), x.amax(dim=(0, 2), keepdim=True)


def abs_moments(x: Tensor) -> Tensor:
    """[max|x|, Σx², Σ|x|] of x, in x's compute dtype: one fused pass when compiled.

    The sums accumulate in float64: compiled and eager code sum in different orders, and float64
    makes their float32 results agree (short of a one-in-10^9 tie), besides being accurate.
    """
    dtype = compute_dtype(x)
    moments = torch.stack(
        [
            torch.linalg.vector_norm(x, float("inf"), dtype=torch.float64),
            torch.linalg.vector_norm(x, 2, dtype=torch.float64).square(),
            torch.linalg.vector_norm(x, 1, dtype=torch.float64),
        ]
    )
    return moments.to(dtype)


def symmetric_nearest(x: Tensor, step: Tensor, qlim: Tensor) -> Tensor:
    """Symmetric fake quantization: clamp(round(x/step), −qlim, qlim)·step."""
    q = torch.div(x.to(step.dtype), step)
    return q.round_().clamp_(min=-qlim).clamp_(max=qlim).mul_(step).to(x.dtype)


LUQ_EXPONENTS = 8
"""LUQ magnitudes are α·2^k for k = 0..7 (3 exponent bits), plus 0."""
LUQ_RANGE = 2.0 ** (LUQ_EXPONENTS - 1)
"""max|x|/α: the largest LUQ magnitude is α·2^7."""
_LUQ_SEARCH = (4, 2, 1)  # binary search over the 3 bits of k in 0..LUQ_EXPONENTS - 1


def luq_alpha(x: Tensor) -> Tensor:
    """LUQ's α = max|x|/2^7 in the compute dtype; 1 for an all-zero ``x`` (any α > 0 maps it to zeros).

    max|x| comes from ``aminmax`` (no |x| temporary). A subnormal quotient is rounded; rounding it
    up keeps every |x| within α·2^7.
    """
    low, high = torch.aminmax(x)
    peak = torch.maximum(-low, high).to(compute_dtype(x))
    alpha = torch.where(peak > 0, peak / LUQ_RANGE, torch.ones_like(peak))
    return torch.where(alpha * LUQ_RANGE < peak, torch.nextafter(alpha, peak), alpha)


def luq(x: Tensor, seeds: Tensor) -> Tensor:
    """``luq_levels`` at ``luq_alpha(x)``: the range and the rounding in one call (one compiled graph,
    so the reduction, the scalar arithmetic and the rounding cost one dispatch)."""
    return luq_levels(x, luq_alpha(x), seeds)


def luq_levels(x: Tensor, alpha: Tensor, seeds: Tensor) -> Tensor:
    """LUQ: sign(x)·lower·(stochastic rounding of |x|/lower), lower = α·2^floor(log2(|x|/α)) in [α, 2^7·α].

    For |x| < α the ratio is below 1 (stochastic underflow to 0 or α); otherwise it is in [1, 2]
    and rounds to lower or 2·lower with probability proportional to the distance. The exponent is
    found by comparisons with the exact levels α·2^k, not by log2, so no level is ever skipped:
    a binary search over its 3 bits (α·2^4, then ·2^2, then ·2^1 above the level found so far),
    the same largest level α·2^k ≤ |x| as comparing with all seven, in fewer operations.
    """
    magnitude = x.to(alpha.dtype).abs()
    lower = torch.empty_like(magnitude).copy_(alpha)
    for step in _LUQ_SEARCH:  # 2^step times the level found so far: exact (a power of two)
        level = lower * 2.0**step
        lower = torch.where(magnitude >= level, level, lower)
    q = _round_stochastic_(magnitude.div_(lower), seeds)
    return q.mul_(lower).copysign_(x).to(x.dtype)


# --- integer-zero-point grid (uniform.py's ``grid="integer"``) --------------------------------


def integer_codes(x: Tensor, inverse: Tensor, zero_point: Tensor, qmax: Tensor) -> Tensor:
    """q = clamp(round(x·inverse) + zero_point, 0, qmax), inverse = 1/scale, as floats of the compute dtype."""
    q = torch.mul(x.to(inverse.dtype), inverse)
    return q.round_().add_(zero_point).clamp_(min=0).clamp_(max=qmax)


def integer_nearest(x: Tensor, scale: Tensor, inverse: Tensor, zero_point: Tensor, qmax: Tensor) -> Tensor:
    """Integer-grid fake quantization, round to nearest: (q − zero_point)·scale."""
    return integer_codes(x, inverse, zero_point, qmax).sub_(zero_point).mul_(scale).to(x.dtype)


def integer_stochastic(
    x: Tensor, scale: Tensor, inverse: Tensor, zero_point: Tensor, qmax: Tensor, seeds: Tensor
) -> Tensor:
    """Integer-grid fake quantization with stochastic rounding of x·inverse."""
    q = _round_stochastic_(torch.mul(x.to(inverse.dtype), inverse), seeds)
    return q.add_(zero_point).clamp_(min=0).clamp_(max=qmax).sub_(zero_point).mul_(scale).to(x.dtype)


# --- codes kept for backward (``kept.py``) ------------------------------------------------------
# The forward recipes return the fake-quantized tensor and its codes, computed from the same rounded
# values (so the tensor is bit for bit what the plain recipe gives); the decode recipes rebuild it.


def pack_per_byte(q: Tensor, per_byte: int, code_dtype: torch.dtype) -> Tensor:
    """Codes ``q`` (floats holding integers) as ``code_dtype``; ``per_byte`` > 1 puts that many uint8
    codes in each byte along the last dim, code j of a byte in bits [j·8/per_byte, (j+1)·8/per_byte)."""
    codes = q.to(code_dtype)
    if per_byte == 1:
        return codes
    width = 8 // per_byte
    grouped = codes.unflatten(-1, (-1, per_byte))  # [..., L/k, k]
    packed = grouped[..., 0].clone()
    for position in range(1, per_byte):
        packed.bitwise_or_(grouped[..., position] << (position * width))
    return packed  # [..., L/k] uint8


def unpack_per_byte(packed: Tensor, per_byte: int) -> Tensor:
    """Inverse of ``pack_per_byte``: [..., L/k] bytes -> [..., L] codes (uint8)."""
    if per_byte == 1:
        return packed
    width = 8 // per_byte
    shifts = torch.arange(0, 8, width, dtype=torch.uint8, device=packed.device)  # [k]
    codes = (packed.unsqueeze(-1) >> shifts).bitwise_and_((1 << width) - 1)  # [..., L/k, k]
    return codes.flatten(-2)


def affine_nearest_kept(
    x: Tensor, low: Tensor, scale: Tensor, qmax: Tensor, per_byte: int, code_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``affine_nearest`` and its codes q (x̂ = q·scale + low)."""
    q = affine_codes(x, low, scale, qmax)
    return q.mul(scale).add_(low).to(x.dtype), pack_per_byte(q, per_byte, code_dtype)


def integer_nearest_kept(
    x: Tensor, scale: Tensor, inverse: Tensor, zero_point: Tensor, qmax: Tensor, per_byte: int, code_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``integer_nearest`` and its codes q (x̂ = (q − zero_point)·scale)."""
    q = integer_codes(x, inverse, zero_point, qmax)
    return q.sub(zero_point).mul_(scale).to(x.dtype), pack_per_byte(q, per_byte, code_dtype)


def symmetric_nearest_kept(
    x: Tensor, step: Tensor, qlim: Tensor, per_byte: int, code_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``symmetric_nearest`` and its codes q + qlim (x̂ = ((q + qlim) − qlim)·step, exact in floats)."""
    q = torch.div(x.to(step.dtype), step).round_().clamp_(min=-qlim).clamp_(max=qlim)
    return q.mul(step).to(x.dtype), pack_per_byte(q + qlim, per_byte, code_dtype)


def affine_decode(packed: Tensor, scale: Tensor, low: Tensor, per_byte: int, dtype: torch.dtype) -> Tensor:
    """x̂ = q·scale + low from the codes ``affine_nearest_kept`` packed."""
    return unpack_per_byte(packed, per_byte).to(scale.dtype).mul_(scale).add_(low).to(dtype)


def integer_decode(packed: Tensor, scale: Tensor, zero_point: Tensor, per_byte: int, dtype: torch.dtype) -> Tensor:
    """x̂ = (q − zero_point)·scale from the codes ``integer_nearest_kept`` or ``symmetric_nearest_kept`` packed."""
    return unpack_per_byte(packed, per_byte).to(scale.dtype).sub_(zero_point).mul_(scale).to(dtype)


_ELEMENTWISE = frozenset(
    {affine_nearest, affine_stochastic, symmetric_nearest, luq_levels, luq, integer_nearest, integer_stochastic}
)
"""Recipes whose result has ``x``'s shape and dtype (the ones ``run`` may write into huge pages)."""
