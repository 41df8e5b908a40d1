"""The choices a quantized training run makes, as string Enums (the CLI shows them as choices)."""

from __future__ import annotations

from enum import Enum

FULL_PRECISION_BITS = 32
"""Bit-width meaning "not quantized": every quantizer returns its input unchanged at 32 bits."""


class GradQuant(str, Enum):
    """How the gradient at a GEMM output, dL/dY, is quantized in the backward pass.

    - ``sr``: per-tensor uniform min/max quantizer with stochastic rounding (CPT, Banner et al.).
    - ``luq``: LUQ's radix-2 FP4 with stochastic underflow and unbiased log rounding (Chmiel et al.).
    - ``none``: the gradient stays in full precision.
    """

    sr = "sr"
    luq = "luq"
    none = "none"


class WeightGranularity(str, Enum):
    """Which elements share one weight range: the whole tensor (Banner) or each output channel (CPT)."""

    tensor = "tensor"
    channel = "channel"


def check_bits(bits: object, name: str = "bits") -> int:
    """Validate a bit-width argument and return it.

    Args:
        bits: The value to check: an integer from 1 to 32 (32 = full precision).
        name: The argument's name, used in the error message.

    Returns:
        ``bits`` unchanged.

    Raises:
        ValueError: ``bits`` is not an integer in [1, 32].
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= FULL_PRECISION_BITS:
        raise ValueError(
            f"`{name}` must be an integer from 1 to {FULL_PRECISION_BITS} ({FULL_PRECISION_BITS} = full precision), "
            f"got {bits!r}; pass e.g. {name}=8."
        )
    return bits


def check_samples(samples: object) -> int:
    """Validate an SMP sample count (independent roundings averaged) and return it.

    Raises:
        ValueError: ``samples`` is not a positive integer.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`samples` must be a positive integer (independent roundings averaged), got {samples!r}.")
    return samples
