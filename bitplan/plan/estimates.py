"""Model size (MBit) and compute (BitOPs) of a plan, beside fp32 and the uniform plan.

Definitions (docs/planning.md, "Estimates"):

- size = Σ planned weights params × bits (a shared weight once) + every other parameter × 32;
  MBit = size / 10^6. avg bits = Σ params × bits / Σ params over the weights the strategy assigns
  (kept layers excluded, so ``--keep first,last --keep-bits 32`` does not swamp the mean).
- forward BitOPs = Σ over every GEMM of MACs × b_w × b_a; a training step adds dX = dY·Wᵀ
  (MACs × b_w × b_g) and dW = Xᵀ·dY (MACs × b_a × b_g).
- A GEMM at 32 bits, or one the plan leaves out, runs entirely in fp32 (b_w = b_a = b_g = 32).
  Otherwise b_a = activation_bits (32 when null) and b_g = gradient_bits under ``sr``, 4 under ``luq``
  (radix-2 FP4), 32 under ``none`` or when null.
- activation bytes for training = Σ over GEMMs of the activation elements X (both operands of an
  activation×activation GEMM) × the bytes a kept code takes at b_a: ``bitplan.apply`` keeps X as
  codes, ⌊8/b⌋ to a byte below 5 bits (1 bit: 1/8, 2: 1/4, 3–4: 1/2), one byte up to 8 bits, two up
  to 15, else 4 (fp32), each GEMM rounded up to whole bytes. A convolution's X is counted at its
  output resolution, m·k·groups / kernel volume: exact for stride-1 convolutions that keep the size,
  1/stride^d of the input for strided ones. Only the GEMM operands: what other layers keep (ReLU
  outputs, norm inputs) is the same in fp32 and quantized training (docs/performance.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bitplan.plan.schema import NOT_QUANTIZED_BITS, BitPlan, LayerPlan, PlanEstimates
from bitplan.profile.schema import GemmLayer, GemmOp

FP32 = NOT_QUANTIZED_BITS
LUQ_GRADIENT_BITS = 4
BITS_PER_MBIT = 10**6


@dataclass(frozen=True)
class Precision:
    """Plan-wide activation and gradient precision, as bit counts for accounting."""

    activation_bits: int | None = 8
    gradient_bits: int | None = 8
    gradient_quant: str = "sr"

    @property
    def activation(self) -> int:
        return FP32 if self.activation_bits is None else self.activation_bits

    @property
    def gradient(self) -> int:
        if self.gradient_quant == "none":
            return FP32
        if self.gradient_quant == "luq":
            return LUQ_GRADIENT_BITS
        return FP32 if self.gradient_bits is None else self.gradient_bits

    def operands(self, weight_bits: int) -> tuple[int, int, int]:
        """(b_w, b_a, b_g) of a GEMM whose weight has ``weight_bits``; 32 means the GEMM runs in fp32."""
        if weight_bits >= FP32:
            return FP32, FP32, FP32
        return weight_bits, self.activation, self.gradient

    def forward_cost(self, weight_bits: int) -> int:
        """b_w × b_a: forward BitOPs per MAC."""
        b_w, b_a, _ = self.operands(weight_bits)
        return b_w * b_a

    def training_cost(self, weight_bits: int) -> int:
        """b_w·b_a + b_w·b_g + b_a·b_g: training-step BitOPs per MAC (forward, dX, dW)."""
        b_w, b_a, b_g = self.operands(weight_bits)
        return b_w * b_a + b_w * b_g + b_a * b_g


def size_bits(layers: Sequence[LayerPlan], bits: Sequence[int], other_params: int) -> int:
    """Σ planned weight params × bits, each shared weight once, + other params × 32."""
    by_weight = {layer.weight: layer.params * b for layer, b in zip(layers, bits) if layer.weight is not None}
    return sum(by_weight.values()) + other_params * FP32


def planned_params(layers: Sequence[LayerPlan]) -> int:
    """Parameters of the planned weights, each shared weight once."""
    return sum({layer.weight: layer.params for layer in layers if layer.weight is not None}.values())


def average_bits(layers: Sequence[LayerPlan]) -> float:
    """Parameter-weighted mean bits of the weights the strategy assigns (kept layers excluded).

    When every weight is kept, the mean over the kept ones.
    """
    assigned = [layer for layer in layers if not layer.kept] or list(layers)
    params = planned_params(assigned)
    if not params:
        return 0.0
    return size_bits(assigned, [layer.bits for layer in assigned], 0) / params


def bitops(layers: Sequence[LayerPlan], bits: Sequence[int], unplanned_macs: int, precision: Precision) -> tuple[int, int]:
    """(forward, training-step) BitOPs of every GEMM: planned ones at ``bits``, the rest at 32×32."""
    macs_at: dict[int, int] = {}
    for layer, b in zip(layers, bits):
        macs_at[b] = macs_at.get(b, 0) + layer.macs
    forward = sum(macs * precision.forward_cost(b) for b, macs in macs_at.items())
    training = sum(macs * precision.training_cost(b) for b, macs in macs_at.items())
    return forward + unplanned_macs * FP32 * FP32, training + unplanned_macs * 3 * FP32 * FP32


CODES_PER_BYTE = {1: 8, 2: 4, 3: 2, 4: 2}
"""Codes of b < 5 bits sharing one kept byte (bitplan.quant.kept)."""


def kept_bytes_per_element(activation_bits: int) -> float:
    """Bytes one activation element takes when kept for backward at ``activation_bits`` (32: fp32)."""
    if activation_bits in CODES_PER_BYTE:
        return 1 / CODES_PER_BYTE[activation_bits]
    return 1 if activation_bits <= 8 else 2 if activation_bits <= 15 else 4


def activation_elements(layer: GemmLayer) -> int:
    """Elements of ``layer``'s activation operands a training step keeps (X, and W too when it is an activation);
    0 for a lookup, whose ids are no quantized operand."""
    if layer.op.lookup:
        return 0
    elements = layer.m * layer.k * layer.groups
    if layer.op is GemmOp.conv and layer.weight_shape:
        kernel = 1
        for size in layer.weight_shape[2:]:
            kernel *= size
        elements //= kernel  # im2col repeats each input element once per kernel position
    if layer.weight is None:
        elements += layer.k * layer.n * layer.groups
    return elements


def activation_bytes(layers: Sequence[LayerPlan], bits: Sequence[int], precision: Precision) -> dict[str, int] | None:
    """Bytes each GEMM's activation operands keep for backward (None when a layer lacks the count)."""
    if any(layer.activation_elements is None for layer in layers):
        return None
    kept = {}
    for layer, b in zip(layers, bits):
        _, b_a, _ = precision.operands(b)
        kept[layer.name] = -int(-layer.activation_elements * kept_bytes_per_element(b_a) // 1)  # ceil
    return kept


def compute_estimates(
    layers: Sequence[LayerPlan],
    *,
    total_params: int,
    unplanned_macs: int,
    uniform_bits: int,
    precision: Precision,
) -> PlanEstimates:
    """Size and compute of ``layers`` beside fp32 and the uniform plan (kept layers stay kept in it).

    Args:
        layers: The plan's layers (kept ones flagged).
        total_params: Every parameter of the model, each once.
        unplanned_macs: MACs of the GEMMs the plan leaves out.
        uniform_bits: The width of the reference uniform plan.
        precision: Plan-wide activation and gradient precision.

    Returns:
        The estimates, exact integers for bit and BitOP counts.
    """
    planned = planned_params(layers)
    other = total_params - planned
    bits = [layer.bits for layer in layers]
    uniform = [layer.bits if layer.kept else uniform_bits for layer in layers]
    fp32 = [FP32] * len(layers)
    size, size_uniform, size_fp32 = (size_bits(layers, b, other) for b in (bits, uniform, fp32))
    forward, training = bitops(layers, bits, unplanned_macs, precision)
    forward_u, training_u = bitops(layers, uniform, unplanned_macs, precision)
    forward_32, training_32 = bitops(layers, fp32, unplanned_macs, precision)
    kept, kept_32 = activation_bytes(layers, bits, precision), activation_bytes(layers, fp32, precision)
    kept_total = sum(kept.values()) if kept is not None else None
    kept_total_32 = sum(kept_32.values()) if kept_32 is not None else None
    return PlanEstimates(
        planned_params=planned,
        other_params=other,
        avg_bits=average_bits(layers),
        size_bits=size,
        mbit=size / BITS_PER_MBIT,
        mbit_fp32=size_fp32 / BITS_PER_MBIT,
        mbit_uniform=size_uniform / BITS_PER_MBIT,
        size_ratio_fp32=_ratio(size, size_fp32),
        size_ratio_uniform=_ratio(size, size_uniform),
        bitops_forward=forward,
        bitops_training=training,
        bitops_forward_fp32=forward_32,
        bitops_training_fp32=training_32,
        bitops_forward_uniform=forward_u,
        bitops_training_uniform=training_u,
        bitops_forward_ratio_fp32=_ratio(forward, forward_32),
        bitops_training_ratio_fp32=_ratio(training, training_32),
        bitops_forward_ratio_uniform=_ratio(forward, forward_u),
        bitops_training_ratio_uniform=_ratio(training, training_u),
        histogram=dict(sorted(Counter(bits).items())),
        activation_bytes_training=kept_total,
        activation_bytes_training_fp32=kept_total_32,
        activation_bytes_training_ratio_fp32=None if kept_total is None else _ratio(kept_total, kept_total_32 or 0),
        activation_bytes_by_layer=kept,
    )


def plan_estimates(plan: BitPlan) -> PlanEstimates:
    """Recompute a plan's estimates from its layers (``bitplan check`` compares them with the stored ones)."""
    return compute_estimates(
        plan.layers,
        total_params=plan.total_params,
        unplanned_macs=plan.unplanned_macs,
        uniform_bits=plan.uniform_bits,
        precision=precision_of(plan),
    )


def precision_of(plan: BitPlan) -> Precision:
    """The plan-wide precision settings of ``plan``."""
    return Precision(plan.activation_bits, plan.gradient_bits, plan.gradient_quant)


def _ratio(value: int, reference: int) -> float:
    return value / reference if reference else 0.0
