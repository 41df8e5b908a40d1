"""What a matrix study sweeps, and how: one frozen, validated configuration.

The defaults reproduce Section 3 of the seed paper (Figures 4–6): 50 trials, 4- and 2-bit, accumulation
9 → 2304, usage frequency 512 → 9, and a chain of three equal-size matrices for depth.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bitplan.choices import Distribution, QuantizedOperand, StudyFactor
from bitplan.errors import BitplanError

MAX_BITS = 16
# Largest operand the study will allocate (float64 elements, over all trials): 2^27 elements = 1 GiB.
MAX_OPERAND_ELEMENTS = 2**27


class StudyError(BitplanError):
    """A study that cannot run as configured (e.g. a CUDA device on a machine without one)."""


class StudyConfig(BaseModel):
    """A matrix study: which factors to sweep, at which bit-widths, over how many random trials.

    Shapes per factor (T = ``trials``, S = ``size``), for Y[M×N] = X[M×K]·W[K×N]:
      - accumulation: M = N = S, K swept over ``accumulation``.
      - frequency: the quantized operand is S×S and each of its elements is used F times, F swept over
        ``frequency``: right → M = F; left → N = F; both → M = N = F (K = S).
      - depth: X·W1·…·W_D with every matrix S×S, D = ``depth``; the sweep is which W_i (or, with left,
        which running product entering W_i) is quantized.

    Example:
        >>> StudyConfig(factors=["accumulation"], bits=[4], trials=10).bits
        [4]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    factors: list[StudyFactor] = Field(
        default=[StudyFactor.accumulation, StudyFactor.frequency, StudyFactor.depth],
        description="Factors to sweep, in this order.",
    )
    bits: list[int] = Field(default=[4, 2], description=f"Bit-widths of the quantized operand, 1..{MAX_BITS}.")
    trials: int = Field(default=50, ge=2, le=100_000, description="Random trials per sweep point.")
    distribution: Distribution = Field(default=Distribution.normal, description="Distribution of matrix entries.")
    quantize: QuantizedOperand = Field(default=QuantizedOperand.right, description="Operand that is quantized.")
    seed: int = Field(default=0, ge=0, description="Seed of every random draw; the same seed gives the same numbers.")
    size: int = Field(default=64, ge=1, le=4096, description="The dimensions each sweep keeps fixed.")
    accumulation: list[int] = Field(
        default=[9, 18, 36, 72, 144, 288, 576, 1152, 2304],
        description="Accumulation counts K to sweep.",
    )
    frequency: list[int] = Field(
        default=[512, 256, 128, 64, 32, 16, 9],
        description="Uses per element of the quantized operand to sweep.",
    )
    depth: int = Field(default=3, ge=1, le=16, description="Matrices W1..W_D in the depth chain.")
    device: str | None = Field(default=None, description="Torch device; default CUDA when available, else CPU.")
    threads: int | None = Field(
        default=1,
        ge=1,
        le=1024,
        description="CPU threads while the study runs (None keeps torch's setting). One is fastest for the "
        "default sizes: the work is memory-bound, and extra threads mostly wait, badly so on a busy machine.",
    )
    out: Path | None = Field(default=None, description="Directory for CSV/JSON/PNG files; None writes nothing.")
    plots: bool = Field(default=True, description="Draw a PNG per factor when writing files.")

    @field_validator("factors")
    @classmethod
    def _distinct_factors(cls, factors: list[StudyFactor]) -> list[StudyFactor]:
        if not factors:
            raise ValueError("`factors` is empty; name at least one of accumulation, frequency, depth")
        if len(set(factors)) != len(factors):
            raise ValueError(f"`factors` lists a factor twice: {[f.value for f in factors]}")
        return factors

    @field_validator("bits")
    @classmethod
    def _bits_in_range(cls, bits: list[int]) -> list[int]:
        if not bits:
            raise ValueError("`bits` is empty; give at least one bit-width, e.g. 4,2")
        bad = [b for b in bits if not 1 <= b <= MAX_BITS]
        if bad:
            raise ValueError(f"`bits` must be in 1..{MAX_BITS}, got {bad}; e.g. 4,2")
        if len(set(bits)) != len(bits):
            raise ValueError(f"`bits` lists a bit-width twice: {bits}")
        return bits

    @field_validator("accumulation", "frequency")
    @classmethod
    def _positive_distinct(cls, values: list[int], info) -> list[int]:  # noqa: ANN001 - pydantic's ValidationInfo
        if not values:
            raise ValueError(f"`{info.field_name}` is empty; give at least one sweep value")
        if min(values) < 1:
            raise ValueError(f"`{info.field_name}` values must be >= 1, got {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"`{info.field_name}` lists a value twice: {values}")
        return values

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str | None) -> str | None:
        if device is None:
            return None
        import torch

        try:
            torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"`device` {device!r} is not a torch device ({error}); use e.g. cpu or cuda") from None
        return device

    @model_validator(mode="after")
    def _fits_in_memory(self) -> StudyConfig:
        largest = {
            StudyFactor.accumulation: self.size * max(self.accumulation),
            StudyFactor.frequency: max(self.size, max(self.frequency)) * self.size,
            StudyFactor.depth: self.size * self.size,
        }
        for factor in self.factors:
            elements = self.trials * largest[factor]
            if elements > MAX_OPERAND_ELEMENTS:
                raise ValueError(
                    f"the {factor.value} sweep needs an operand of {elements:,} float64 elements "
                    f"(`trials` × `size` × largest sweep value), more than {MAX_OPERAND_ELEMENTS:,}; "
                    "lower `trials`, `size` or the largest sweep value"
                )
        return self

    def sweep_values(self, factor: StudyFactor) -> list[int]:
        """The sweep points of ``factor``, in the order they are run and plotted."""
        if factor is StudyFactor.accumulation:
            return list(self.accumulation)
        if factor is StudyFactor.frequency:
            return list(self.frequency)
        return list(range(1, self.depth + 1))

    def total_points(self) -> int:
        """Sweep points over all configured factors (each covers every bit-width)."""
        return sum(len(self.sweep_values(factor)) for factor in self.factors)
