"""The three matrix experiments of the seed paper's Section 3, vectorised over trials.

Every product is a batched matmul over a leading trials dimension T. The quantized operand goes through
``bitplan.quant.uniform_quantize`` — the GEMMLOWP quantizer ``bitplan train`` uses — with its range
(min, max) taken per tensor per trial (``channel_dim=0`` on a [T, …] batch). Truth and low-precision
products are both computed in float64, so the distance measures quantization error only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bitplan.quant import uniform_quantize
from bitplan.study.config import QuantizedOperand, StudyConfig, StudyFactor
from bitplan.study.result import StudyPoint
from bitplan.study.sampling import PointOperands


def quantize_per_trial(x: Tensor, bits: int) -> Tensor:
    """Fake-quantize each trial's matrix with its own per-tensor range. x: [T, rows, cols]."""
    return uniform_quantize(x, bits, channel_dim=0)  # [T, rows, cols], min/max over rows×cols per t


def trial_distances(truth: Tensor, approx: Tensor, magnitude: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-trial distance, relative distance and truth magnitude.

    Args:
        truth: [T, m, n] full-precision result Y.
        approx: [T, m, n] low-precision result Ŷ.
        magnitude: [T] mean |Y| when already known (it is shared by every bit-width of a point).

    Returns:
        (d, r, a), each [T]: d = mean |Ŷ − Y|, a = mean |Y|, r = d / a (0 when Y is all zero and d is 0).
    """
    distance = (approx - truth).abs_().mean(dim=(1, 2))  # [T]
    if magnitude is None:
        magnitude = truth.abs().mean(dim=(1, 2))  # [T]
    relative = distance / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)  # [T]
    return distance, relative, magnitude


def summarise(
    factor: StudyFactor, value: int, bits: int, operands: PointOperands, quantized: QuantizedOperand,
    truth: Tensor, approx: Tensor, magnitude: Tensor,
) -> StudyPoint:
    """Reduce per-trial distances to one record (means and population variances over trials)."""
    distance, relative, magnitude = trial_distances(truth, approx, magnitude)
    return StudyPoint(
        factor=factor,
        value=value,
        bits=bits,
        m=operands.shape.m,
        k=operands.shape.k,
        n=operands.shape.n,
        quantized=quantized,
        trials=int(distance.shape[0]),
        distance=float(distance.mean()),
        distance_variance=float(distance.var(correction=0)),
        relative_distance=float(relative.mean()),
        relative_variance=float(relative.var(correction=0)),
        truth_magnitude=float(magnitude.mean()),
    )


def _maybe_quantize(x: Tensor, bits: int, quantize: bool) -> Tensor:
    return quantize_per_trial(x, bits) if quantize else x


def product_points(
    config: StudyConfig, factor: StudyFactor, value: int, operands: PointOperands, device: torch.device
) -> list[StudyPoint]:
    """Accumulation and frequency: Y = X·W against Q(X)·W, X·Q(W) or Q(X)·Q(W), one record per bit-width."""
    x = operands.x.to(device)  # [T, m, k]
    w = operands.weights[0].to(device)  # [T, k, n]
    truth = x @ w  # [T, m, n]
    magnitude = truth.abs().mean(dim=(1, 2))  # [T]
    left = config.quantize in (QuantizedOperand.left, QuantizedOperand.both)
    right = config.quantize in (QuantizedOperand.right, QuantizedOperand.both)
    points = []
    for bits in config.bits:
        approx = _maybe_quantize(x, bits, left) @ _maybe_quantize(w, bits, right)  # [T, m, n]
        points.append(summarise(factor, value, bits, operands, config.quantize, truth, approx, magnitude))
    return points


def depth_points(config: StudyConfig, position: int, operands: PointOperands, device: torch.device) -> list[StudyPoint]:
    """Depth: Y = X·W1·…·W_D against the chain with only the ``position``-th product quantized.

    At product i (1-based) the left operand is the running full-precision product X·W1·…·W_{i−1} and the
    right operand is W_i; ``config.quantize`` says which of the two is quantized. Later products stay in
    full precision, so the error is the one quantization propagated through the rest of the chain.
    """
    weights = [w.to(device) for w in operands.weights]  # D × [T, S, S]
    prefixes = [operands.x.to(device)]  # prefixes[i] = X·W1·…·W_i, each [T, S, S]
    for w in weights:
        prefixes.append(prefixes[-1] @ w)
    truth = prefixes[-1]
    magnitude = truth.abs().mean(dim=(1, 2))  # [T]
    left = config.quantize in (QuantizedOperand.left, QuantizedOperand.both)
    right = config.quantize in (QuantizedOperand.right, QuantizedOperand.both)
    index = position - 1
    points = []
    for bits in config.bits:
        approx = _maybe_quantize(prefixes[index], bits, left) @ _maybe_quantize(weights[index], bits, right)
        for w in weights[index + 1 :]:
            approx = approx @ w  # [T, S, S]
        points.append(
            summarise(StudyFactor.depth, position, bits, operands, config.quantize, truth, approx, magnitude)
        )
    return points
