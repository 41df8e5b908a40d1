"""Validation of quantizer arguments; the choices themselves live in ``bitplan.choices``."""

from __future__ import annotations

from bitplan.choices import FULL_PRECISION_BITS, GradQuant, WeightGranularity

__all__ = ["FULL_PRECISION_BITS", "GradQuant", "WeightGranularity", "check_bits", "check_samples"]


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
