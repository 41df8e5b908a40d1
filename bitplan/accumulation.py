"""Floating-point accumulators: how much of a dot product's variance survives an m-bit mantissa.

Sakr et al. (ICLR 2019) measure an accumulator by its variance retention ratio, VRR = Var(computed
sum) / Var(exact sum) over an ensemble of length-n dot products: swamping (a term below half an ulp of
the running sum is lost) shrinks it, chunking (sum chunks of c terms, then the chunk sums) restores it.
This module holds bitplan's own derivation of VRR (docs/accumulation.md, "The model"), a vectorised
simulator of rounding after every addition, and the smallest mantissa that keeps VRR near 1.
Pure numpy/scipy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import erf, ndtr

from bitplan.profile.schema import ModelProfile

DEFAULT_VRR_TOLERANCE = 0.01
"""A mantissa is enough when |1 − VRR| ≤ this (bitplan's cutoff; docs/accumulation.md)."""

DEFAULT_CHUNK = 64
"""Chunk length of chunked accumulation when none is given."""

MAX_MANTISSA_BITS = 52
"""Widest accumulator mantissa searched (float64's); the simulator is exact up to about 40 bits."""

_EXACT_BELOW_ULP = 2.0**-12  # below this ulp (in units of the term's σ) rounding adds < 1e−8 of variance
_SMALL_ULP = 2.0**-4  # below this ulp the edge drift is its asymptote −ulp²/32 (within 1 %)
_NO_DRIFT_ULP = 2.0**6  # above this ulp no term crosses an edge: the drift is below 1e−50
_REACH = 9.0  # terms beyond 9σ are ignored (probability < 1e−18)
_LOWEST_BINADE, _HIGHEST_BINADE = -40, 200  # |s| in [2^e, 2^(e+1)); below 2^−40σ the sum is treated as exact
_GRID = np.linspace(-10.0, 10.0, 200_001)  # quadrature nodes for one N(0, 1) term
_WEIGHTS = np.exp(-0.5 * _GRID**2) / np.exp(-0.5 * _GRID**2).sum()


def round_mantissa(x: np.ndarray, mantissa_bits: int | None) -> np.ndarray:
    """Round to the nearest float with ``mantissa_bits`` fraction bits (ties to even), exponent unbounded.

    Args:
        x: float64 values.
        mantissa_bits: Fraction bits m (m + 1 significant bits with the hidden one); None keeps x.

    Returns:
        The rounded values, same shape.
    """
    if mantissa_bits is None:
        return x
    fraction, exponent = np.frexp(x)  # x = fraction·2^exponent, |fraction| in [0.5, 1)
    return np.ldexp(np.round(np.ldexp(fraction, mantissa_bits + 1)), exponent - mantissa_bits - 1)


def simulate_accumulation(terms: np.ndarray, mantissa_bits: int, chunk: int | None = None) -> np.ndarray:
    """Sum each row of ``terms`` in order, rounding the running sum to ``mantissa_bits`` after every add.

    With ``chunk`` the row is cut into chunks of that length; each chunk is summed from zero, then the
    chunk sums are accumulated the same way (both at ``mantissa_bits``).

    Args:
        terms: [samples, n] float64 products, already in their own format.
        mantissa_bits: Accumulator fraction bits.
        chunk: Chunk length, or None for one sequential sum.

    Returns:
        [samples] the computed sums.
    """
    samples, length = terms.shape
    if chunk is not None and chunk < length:
        chunks = -(-length // chunk)
        padded = np.zeros((samples, chunks * chunk))  # adding exact zeros changes nothing
        padded[:, :length] = terms
        # [samples, chunks, chunk] -> [samples·chunks, chunk] -> chunk sums [samples, chunks]
        inner = simulate_accumulation(padded.reshape(samples * chunks, chunk), mantissa_bits)
        return simulate_accumulation(inner.reshape(samples, chunks), mantissa_bits)
    total = np.zeros(samples)
    for column in range(length):
        total = round_mantissa(total + terms[:, column], mantissa_bits)
    return total


def measured_vrr(terms: np.ndarray, mantissa_bits: int, chunk: int | None = None) -> float:
    """Σ computed sum² / Σ exact sum² over the rows of ``terms`` (the same draws, so little noise).

    Args:
        terms: [samples, n] products.
        mantissa_bits: Accumulator fraction bits.
        chunk: Chunk length, or None.

    Returns:
        The ensemble VRR (the second moment: for zero-mean terms, the variance ratio).
    """
    exact = terms.sum(axis=1)
    return float(np.sum(simulate_accumulation(terms, mantissa_bits, chunk) ** 2) / np.sum(exact**2))


@lru_cache(maxsize=512)
def _term_energy(mantissa_bits: int, product_mantissa_bits: int | None) -> tuple[np.ndarray, float]:
    """g[e] = E[(u·round(p/u))²], u = 2^(e−m), for a term p ~ N(0, 1) in its own format; and E[p²].

    The accumulator rounds s + p to s's grid of step u = ulp(s); with s on that grid this is s plus p
    rounded to multiples of u (exact while s + p stays in s's binade).
    """
    term = round_mantissa(_GRID, product_mantissa_bits)
    exact = float(np.dot(_WEIGHTS, term**2))
    binades = np.arange(_LOWEST_BINADE, _HIGHEST_BINADE + 1)
    energy = np.full(binades.shape, exact)
    for index, binade in enumerate(binades):
        ulp = 2.0 ** (int(binade) - mantissa_bits)
        if ulp > 2 * _GRID[-1]:
            energy[index] = 0.0  # every term is below half an ulp: fully swamped
        elif ulp >= _EXACT_BELOW_ULP:
            energy[index] = np.dot(_WEIGHTS, (ulp * np.round(term / ulp)) ** 2)
    return energy, exact


@lru_cache(maxsize=512)
def _edge_drifts(mantissa_bits: int, product_mantissa_bits: int | None) -> np.ndarray:
    """D[e]: the drift towards zero that binade edge 2^e causes, per unit density of |s| (σ = 1)."""
    binades = np.arange(_LOWEST_BINADE, _HIGHEST_BINADE + 1)
    return np.array([_edge_drift(2.0 ** (int(b) - mantissa_bits), product_mantissa_bits) for b in binades])


@lru_cache(maxsize=64)
def _term_distribution(product_mantissa_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The values a product rounded to ``product_mantissa_bits`` takes, p ~ N(0, 1), and their masses."""
    values, inverse = np.unique(round_mantissa(_GRID, product_mantissa_bits), return_inverse=True)
    return values, np.bincount(inverse, weights=_WEIGHTS)


def _edge_drift(ulp: float, product_mantissa_bits: int | None = None) -> float:
    """Σ over sums s near an edge B of (grid step at s)·E[r | s], r = rnd(s + p) − s, p ~ N(0, 1).

    Above B the grid step is ``ulp``, below it ``ulp/2``; B ≫ 1, so only the change of grid matters.
    Coordinates are x = s − B. Rounding is to nearest, ties to even: B and every second point above
    and below it have even mantissas, and the cell of B itself is [−ulp/4, ulp/2). Products rounded to
    ``product_mantissa_bits`` take discrete values (ties then happen); None means continuous products.
    """
    if ulp < _SMALL_ULP:
        return -(ulp**2) / 32
    if ulp > _NO_DRIFT_ULP:
        return 0.0
    span = int(math.ceil(_REACH / ulp)) + 2
    # starting sums x: [positions], each standing for the grid step around it (its weight)
    start = np.concatenate([ulp * np.arange(span), -0.5 * ulp * np.arange(1, 2 * span)])
    weight = np.concatenate([np.full(span, ulp), np.full(2 * span - 1, 0.5 * ulp)])
    if product_mantissa_bits is not None:
        values, masses = _term_distribution(product_mantissa_bits)
        exact_sum = start[:, None] + values[None, :]  # [positions, values]
        rounded = np.where(
            exact_sum >= -0.25 * ulp, ulp * np.round(exact_sum / ulp), 0.5 * ulp * np.round(exact_sum / (0.5 * ulp))
        )
        return float(np.dot(weight, (rounded - start[:, None]) @ masses))
    # rounded sums t and their cells [low, high): [targets]
    above = ulp * np.arange(2 * span)
    below = -0.5 * ulp * np.arange(1, 4 * span)
    target = np.concatenate([above, below])
    low = np.concatenate([above - 0.5 * ulp, below - 0.25 * ulp])
    low[0] = -0.25 * ulp
    high = np.concatenate([above + 0.5 * ulp, below + 0.25 * ulp])
    # P(rnd(x + p) = t): [positions, targets]
    probability = ndtr(high[None, :] - start[:, None]) - ndtr(low[None, :] - start[:, None])
    mean_step = ((target[None, :] - start[:, None]) * probability).sum(axis=1)
    return float(np.dot(weight, mean_step))


def _binade_probabilities(variance: float) -> tuple[np.ndarray, float]:
    """P(|s| in [2^e, 2^(e+1))) for s ~ N(0, variance), e over the table's binades; and P(|s| < lowest)."""
    edges = np.exp2(np.arange(_LOWEST_BINADE, _HIGHEST_BINADE + 2, dtype=float))
    if variance <= 0:
        return np.zeros(edges.size - 1), 1.0
    cdf = erf(edges / math.sqrt(2.0 * variance))
    return np.diff(cdf), float(cdf[0])


def _sequential_vrr(length: int, mantissa_bits: int, product_mantissa_bits: int | None) -> float:
    """The model's VRR of one sequential sum: integrate dv/di = E[s_i² − s_(i−1)²], s ~ N(0, v)."""
    energy, exact = _term_energy(mantissa_bits, product_mantissa_bits)
    drifts = _edge_drifts(mantissa_bits, product_mantissa_bits)
    edges = np.exp2(np.arange(_LOWEST_BINADE, _HIGHEST_BINADE + 1, dtype=float))

    def growth(variance: float) -> float:
        probabilities, below = _binade_probabilities(variance)
        if variance <= 0:
            return exact
        # density of |s| at each edge B, times 2B: the weight of the drift term 2·s·E[r | s]
        edge_weight = 2.0 * edges * math.sqrt(2.0 / (math.pi * variance)) * np.exp(-(edges**2) / (2.0 * variance))
        return float(np.dot(probabilities, energy) + below * exact + np.dot(edge_weight, drifts))

    variance, done = 0.0, 0
    while done < length:
        step = min(length - done, 1 if done < 256 else done // 128)
        variance += step * growth(variance + 0.5 * step * growth(variance))  # midpoint rule
        done += step
    return variance / (length * exact)


def predicted_vrr(
    length: int, mantissa_bits: int, *, product_mantissa_bits: int | None = None, chunk: int | None = None
) -> float:
    """VRR of a length-``length`` accumulation with an m-bit-mantissa accumulator, by bitplan's model.

    Terms are i.i.d. zero-mean normal, rounded to ``product_mantissa_bits`` (None: exact); chunked
    accumulation multiplies the VRR of one chunk by the VRR of summing the chunk sums (which carry
    ``mantissa_bits``). Derivation and its checks: docs/accumulation.md.

    Args:
        length: Reduction length n (products per output), at least 1.
        mantissa_bits: Accumulator fraction bits m, at least 0.
        product_mantissa_bits: Fraction bits of each product, or None.
        chunk: Chunk length, or None for one sequential sum.

    Returns:
        The predicted VRR (1 = no variance lost; rounding noise can push it slightly above 1).

    Raises:
        ValueError: ``length`` below 1, ``mantissa_bits`` below 0 or a chunk below 1.
    """
    if length < 1 or mantissa_bits < 0 or (chunk is not None and chunk < 1):
        raise ValueError(f"need length ≥ 1, mantissa_bits ≥ 0 and chunk ≥ 1; got {length}, {mantissa_bits}, {chunk}")
    if chunk is None or chunk >= length:
        return _sequential_vrr(length, mantissa_bits, product_mantissa_bits)
    inner = _sequential_vrr(chunk, mantissa_bits, product_mantissa_bits)
    return inner * _sequential_vrr(-(-length // chunk), mantissa_bits, mantissa_bits)


def required_mantissa_bits(
    length: int,
    *,
    tolerance: float = DEFAULT_VRR_TOLERANCE,
    product_mantissa_bits: int | None = None,
    chunk: int | None = None,
) -> int:
    """The fewest accumulator fraction bits m with |1 − VRR| ≤ ``tolerance`` by ``predicted_vrr``.

    Args:
        length: Reduction length n.
        tolerance: Allowed relative change of the sum's variance.
        product_mantissa_bits: Fraction bits of each product, or None (exact products).
        chunk: Chunk length, or None.

    Returns:
        m, at most ``MAX_MANTISSA_BITS``.

    Raises:
        ValueError: A tolerance outside (0, 1), or as ``predicted_vrr``.
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
    return _required(length, tolerance, product_mantissa_bits, chunk)


@lru_cache(maxsize=4096)
def _required(length: int, tolerance: float, product_mantissa_bits: int | None, chunk: int | None) -> int:
    def enough(bits: int) -> bool:
        vrr = predicted_vrr(length, bits, product_mantissa_bits=product_mantissa_bits, chunk=chunk)
        return abs(1.0 - vrr) <= tolerance

    # VRR depends on n mostly through n/4^m (docs/accumulation.md): start a few bits below ½·log2 n
    bits = max(0, length.bit_length() // 2 - 4)
    while bits > 0 and enough(bits):
        bits -= 1
    while bits < MAX_MANTISSA_BITS and not enough(bits):
        bits += 1
    return bits


class GemmTriple(BaseModel):
    """One integer per product of a GEMM: forward Y = X·W, dX = dY·Wᵀ, dW = Xᵀ·dY."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forward: int
    grad_input: int
    grad_weight: int


class LayerMantissa(BaseModel):
    """Accumulator mantissa bits one GEMM needs, sequential and chunked (``mantissa_requirements``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    lengths: GemmTriple = Field(description="Reduction lengths K, N, M from the profile.")
    plain: GemmTriple = Field(description="Fewest fraction bits with |1 − VRR| ≤ tolerance, one sequential sum.")
    chunked: GemmTriple = Field(description="The same with chunks of `chunk` products summed first.")


class MantissaReport(BaseModel):
    """Per-GEMM floating-point accumulator needs of a profiled model (docs/accumulation.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    batch: int = Field(description="Profiled batch: dW's length M grows with it.")
    chunk: int
    tolerance: float
    product_mantissa_bits: int | None = Field(description="Fraction bits of each product; null = exact.")
    layers: list[LayerMantissa]


def mantissa_requirements(
    profile: ModelProfile,
    *,
    chunk: int = DEFAULT_CHUNK,
    tolerance: float = DEFAULT_VRR_TOLERANCE,
    product_mantissa_bits: int | None = None,
) -> MantissaReport:
    """The accumulator mantissa every GEMM of ``profile`` needs for its three products.

    Args:
        profile: A model profile (``bitplan.spec.profile_spec``); lengths are its K, N and M.
        chunk: Chunk length of the chunked variant.
        tolerance: Allowed |1 − VRR|.
        product_mantissa_bits: Fraction bits of the products (None: exact products).

    Returns:
        One entry per GEMM, in graph order (lookups accumulate nothing and are left out).

    Raises:
        ValueError: A chunk below 1 or a tolerance outside (0, 1).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")

    def needs(lengths: GemmTriple, chunked: int | None) -> GemmTriple:
        return GemmTriple(
            **{
                product: required_mantissa_bits(
                    length, tolerance=tolerance, product_mantissa_bits=product_mantissa_bits, chunk=chunked
                )
                for product, length in lengths.model_dump().items()
            }
        )

    layers = []
    for layer in (layer for layer in profile.layers if not layer.op.lookup):
        lengths = GemmTriple(
            forward=layer.accumulation,
            grad_input=layer.grad_input_accumulation,
            grad_weight=layer.grad_weight_accumulation,
        )
        layers.append(LayerMantissa(name=layer.name, lengths=lengths, plain=needs(lengths, None), chunked=needs(lengths, chunk)))
    return MantissaReport(
        model=profile.model,
        batch=profile.batch,
        chunk=chunk,
        tolerance=tolerance,
        product_mantissa_bits=product_mantissa_bits,
        layers=layers,
    )
