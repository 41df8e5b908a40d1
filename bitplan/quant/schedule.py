"""CPT's cyclic precision schedule (Fu et al. 2021): bit-widths that sweep Bmin → Bmax each period."""

from __future__ import annotations

import math

from bitplan.quant.options import check_bits


def cyclic_bits(step: int, period: int, bmin: int, bmax: int) -> int:
    """Bits at ``step``: rint(Bmin + ½(Bmax − Bmin)(1 + cos(π·(t mod T)/T + π))).

    Each period starts at Bmin and rises along a half cosine towards Bmax (reached just before
    the period ends), then drops back. ``rint`` rounds halves to even, evaluated in float64 as
    CPT's numpy code does.

    Args:
        step: Training step (or epoch) t ≥ 0.
        period: Cycle length T ≥ 1, in the same unit as ``step``.
        bmin: Lowest width, 1–32.
        bmax: Highest width, ``bmin``–32.

    Returns:
        The width for this step, in [bmin, bmax].

    Raises:
        ValueError: Negative step, period < 1, or bmin > bmax.

    Example:
        >>> [cyclic_bits(t, 4, 2, 8) for t in range(5)]
        [2, 3, 5, 7, 2]
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"`step` must be a non-negative integer, got {step!r}.")
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"`period` must be a positive integer (steps per cycle), got {period!r}.")
    check_bits(bmin, "bmin")
    check_bits(bmax, "bmax")
    if bmin > bmax:
        raise ValueError(f"`bmin` ({bmin}) must not exceed `bmax` ({bmax}).")
    phase = math.pi * (step % period) / period + math.pi
    return int(round(bmin + 0.5 * (bmax - bmin) * (1.0 + math.cos(phase))))
