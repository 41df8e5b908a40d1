"""The random operands of every sweep point, reproducible one point at a time.

Each (seed, factor, sweep value) gets its own generator, so any single point can be regenerated and
checked without rerunning the sweep, and adding a sweep value does not change the others. All bit-widths
of one point share the same draws (paired comparison). Draws happen on the CPU (float32 values held in
float64), so the numbers do not depend on the device the products run on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bitplan.study.config import Distribution, QuantizedOperand, StudyConfig, StudyFactor

_FACTOR_CODES = {StudyFactor.accumulation: 1, StudyFactor.frequency: 2, StudyFactor.depth: 3}


@dataclass(frozen=True)
class GemmShape:
    """Y[m×n] = X[m×k]·W[k×n] for one sweep point."""

    m: int
    k: int
    n: int


@dataclass(frozen=True)
class PointOperands:
    """The operands of one sweep point, batched over trials.

    ``x`` is [T, m, k]; ``weights`` holds one [T, k, n] matrix for accumulation and frequency, and the
    chain W1..W_D (each [T, S, S]) for depth.
    """

    shape: GemmShape
    x: Tensor
    weights: tuple[Tensor, ...]


def point_seed(seed: int, factor: StudyFactor, value: int) -> int:
    """The 63-bit seed of one sweep point, mixed from the study seed, the factor and the sweep value.

    Depth draws its chain once (``value`` 0) and reuses it for every quantized position.
    """
    state = np.random.SeedSequence([seed, _FACTOR_CODES[factor], value]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


def sample_matrix(shape: tuple[int, ...], distribution: Distribution, generator: torch.Generator) -> Tensor:
    """Draw a float64 CPU tensor of ``shape`` with independent entries from ``distribution``.

    The draws are float32 values (see the comment below), stored as float64.

    Args:
        shape: e.g. (trials, rows, cols).
        distribution: normal N(0, 1), uniform U(−1, 1) or relu max(0, N(0, 1)).
        generator: a CPU generator; it advances by exactly one draw of ``shape``.

    Returns:
        The sampled tensor.
    """
    # Drawn in float32 (about 5× faster than float64 on CPU), then held in float64: the truth is still the
    # float64 product of exactly the operands the trials quantize.
    if distribution is Distribution.uniform:
        draws = torch.rand(shape, generator=generator, dtype=torch.float32).double() * 2.0 - 1.0
    else:
        draws = torch.randn(shape, generator=generator, dtype=torch.float32).double()
    return draws.clamp_min(0.0) if distribution is Distribution.relu else draws


def point_shape(config: StudyConfig, factor: StudyFactor, value: int) -> GemmShape:
    """The GEMM shape of one sweep point (see ``StudyConfig`` for the rules)."""
    size = config.size
    if factor is StudyFactor.accumulation:
        return GemmShape(m=size, k=value, n=size)
    if factor is StudyFactor.frequency:
        m = value if config.quantize in (QuantizedOperand.right, QuantizedOperand.both) else size
        n = value if config.quantize in (QuantizedOperand.left, QuantizedOperand.both) else size
        return GemmShape(m=m, k=size, n=n)
    return GemmShape(m=size, k=size, n=size)


def sample_operands(config: StudyConfig, factor: StudyFactor, value: int) -> PointOperands:
    """Regenerate the exact operands the study uses at one sweep point.

    Draw order: X, then W (accumulation, frequency) or W1..W_D (depth).

    Args:
        config: the study configuration (trials, size, distribution, quantize, seed).
        factor: the swept factor.
        value: the sweep value (K, uses per element); ignored for depth, whose chain is drawn once.

    Returns:
        The operands on the CPU, float64.

    Example:
        >>> ops = sample_operands(StudyConfig(trials=2, size=3), StudyFactor.accumulation, 9)
        >>> tuple(ops.x.shape), tuple(ops.weights[0].shape)
        ((2, 3, 9), (2, 9, 3))
    """
    shape = point_shape(config, factor, value)
    key = 0 if factor is StudyFactor.depth else value
    generator = torch.Generator(device="cpu").manual_seed(point_seed(config.seed, factor, key))
    x = sample_matrix((config.trials, shape.m, shape.k), config.distribution, generator)  # [T, m, k]
    count = config.depth if factor is StudyFactor.depth else 1
    weights = tuple(
        sample_matrix((config.trials, shape.k, shape.n), config.distribution, generator)  # [T, k, n]
        for _ in range(count)
    )
    return PointOperands(shape=shape, x=x, weights=weights)
