"""Worst-case integer accumulator widths of a plan's GEMMs (derivation in docs/accumulation.md).

A quantized GEMM multiplies integer codes and sums K products in an integer register. The largest
code magnitude of an operand is ``2^b − 1`` for bitplan's uniform quantizer (codes 0..2^b − 1; after
subtracting an integer zero point the magnitude is still at most 2^b − 1) and 2^7 = 128 for LUQ
gradients (magnitudes α·2^k, k = 0..7: in units of α an integer up to 128). With
V = K × max|code_1| × max|code_2| the sum lies in [−V, V], and a two's-complement register of w bits
holds it iff 2^(w−1) − 1 ≥ V, i.e. ``w = 1 + V.bit_length()`` — pure integer arithmetic, no log2.

The issue's ``1 + ceil(log2 V)`` equals ``1 + (V − 1).bit_length()``; it agrees with the exact width
except when V is a power of two (then it is one bit short: V itself does not fit). With odd
``2^b − 1`` factors that happens only when both operands are 1-bit (or 1-bit against LUQ) and K is a
power of two.
"""

from __future__ import annotations

from bitplan.plan.estimates import FP32, Precision
from bitplan.plan.schema import AccumulatorBits, GemmShape
from bitplan.profile.schema import GemmLayer

LUQ_MAX_MAGNITUDE = 2**7
"""LUQ's largest gradient magnitude in units of its scale α (radix-2 FP4: α·2^k, k = 0..7)."""


def uniform_max_code(bits: int | None) -> int | None:
    """Largest code magnitude of a ``bits``-bit uniform operand: 2^b − 1; None for fp32 (32 or None).

    Args:
        bits: Operand width; 32 or None means the operand is not quantized.

    Returns:
        2^bits − 1, or None.

    Raises:
        ValueError: ``bits`` below 1.
    """
    if bits is None or bits >= FP32:
        return None
    if bits < 1:
        raise ValueError(f"an operand width must be at least 1 bit, got {bits}")
    return (1 << bits) - 1


def accumulator_width(length: int, max_code_a: int | None, max_code_b: int | None) -> int | None:
    """Signed register bits that hold any sum of ``length`` products of two integer codes.

    Args:
        length: Reduction length K (products per output element), at least 1.
        max_code_a: Largest code magnitude of one operand (None = fp32).
        max_code_b: Largest code magnitude of the other operand (None = fp32).

    Returns:
        ``1 + (length·max_code_a·max_code_b).bit_length()``, or None when an operand is fp32.

    Raises:
        ValueError: ``length`` or a code magnitude below 1.
    """
    if max_code_a is None or max_code_b is None:
        return None
    if length < 1 or max_code_a < 1 or max_code_b < 1:
        raise ValueError(f"length and code magnitudes must be positive, got {length}, {max_code_a}, {max_code_b}")
    return 1 + (length * max_code_a * max_code_b).bit_length()


def gradient_max_code(precision: Precision) -> int | None:
    """Largest gradient code magnitude under the plan's gradient quantizer (None when fp32)."""
    if precision.gradient_quant == "luq":
        return LUQ_MAX_MAGNITUDE
    return uniform_max_code(precision.gradient)


def layer_accumulator_bits(layer: GemmLayer, weight_bits: int, precision: Precision) -> AccumulatorBits:
    """Forward, dX and dW accumulator widths of one GEMM at ``weight_bits`` and the plan-wide precision.

    A GEMM at 32 bits runs entirely in fp32 (as in the BitOPs estimates), so all three are None; so
    are a lookup's, which sums nothing.

    Args:
        layer: The profiled GEMM (its reduction lengths K, N and M).
        weight_bits: The plan's bits for its weight (or second operand).
        precision: Plan-wide activation and gradient precision.

    Returns:
        The three widths.
    """
    if layer.op.lookup:
        return NO_ACCUMULATOR
    return shape_accumulator_bits(
        GemmShape(m=layer.grad_weight_accumulation, k=layer.accumulation, n=layer.grad_input_accumulation, groups=layer.groups),
        weight_bits,
        precision,
    )


NO_ACCUMULATOR = AccumulatorBits(forward=None, grad_input=None, grad_weight=None)
"""The widths of a product with no integer accumulator (fp32, or a lookup)."""


def shape_accumulator_bits(shape: GemmShape, weight_bits: int, precision: Precision, lookup: bool = False) -> AccumulatorBits:
    """``layer_accumulator_bits`` from a plan entry's stored shape (K = k, N = n, M = m): no model needed."""
    if weight_bits >= FP32 or lookup:
        return NO_ACCUMULATOR
    weight = uniform_max_code(weight_bits)
    activation = uniform_max_code(precision.activation)
    gradient = gradient_max_code(precision)
    return AccumulatorBits(
        forward=accumulator_width(shape.k, weight, activation),
        grad_input=accumulator_width(shape.n, gradient, weight),
        grad_weight=accumulator_width(shape.m, activation, gradient),
    )
