"""The result of a matrix study: one record per (sweep point, bit-width), as JSON and CSV.

Distances are defined in docs/study.md: for one trial with truth Y and low-precision result Ŷ (both M×N),
distance d = mean over elements of |Ŷ − Y|, magnitude a = mean of |Y|, relative distance r = d / a.
Each record holds the mean of d and r over the trials and their population variances (ddof = 0).
"""

from __future__ import annotations

import csv
import io
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bitplan.study.config import QuantizedOperand, StudyConfig, StudyFactor

STUDY_SCHEMA_VERSION = 1

SWEEP_LABELS = {
    StudyFactor.accumulation: "accumulation K (products summed into each output element)",
    StudyFactor.frequency: "usage frequency (uses of each quantized element)",
    StudyFactor.depth: "depth (index i of the quantized matrix W_i in X·W1·…·W_D)",
}


class StudyPoint(BaseModel):
    """Distances of one sweep point at one bit-width, over all trials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: StudyFactor
    value: int = Field(ge=1, description="The sweep value: K, uses per element, or the depth index i.")
    bits: int = Field(ge=1)
    m: int = Field(ge=1, description="Rows of Y.")
    k: int = Field(ge=1, description="Reduction length of the (quantized) product.")
    n: int = Field(ge=1, description="Columns of Y.")
    quantized: QuantizedOperand
    trials: int = Field(ge=1)
    distance: float = Field(ge=0, description="Mean over trials of the mean |Ŷ − Y| per element.")
    distance_variance: float = Field(ge=0, description="Population variance of the per-trial distance.")
    relative_distance: float = Field(ge=0, description="Mean over trials of distance / mean |Y|.")
    relative_variance: float = Field(ge=0, description="Population variance of the per-trial relative distance.")
    truth_magnitude: float = Field(ge=0, description="Mean over trials of mean |Y| (the normaliser).")


class FactorResult(BaseModel):
    """One factor's sweep: every point at every bit-width, in sweep order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: StudyFactor
    sweep: str = Field(description="What the sweep value means.")
    points: list[StudyPoint]
    seconds: float = Field(ge=0, description="Wall time of this sweep.")

    def series(self, bits: int) -> list[StudyPoint]:
        """The points of one bit-width, in sweep order."""
        return [point for point in self.points if point.bits == bits]


class StudyResult(BaseModel):
    """A whole study: its configuration and one ``FactorResult`` per swept factor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = STUDY_SCHEMA_VERSION
    config: StudyConfig
    factors: list[FactorResult]
    seconds: float = Field(ge=0, description="Wall time of all sweeps (files excluded).")

    def factor(self, factor: StudyFactor | str) -> FactorResult:
        """The result of one factor (``"frequency"`` or ``StudyFactor.frequency``).

        Raises:
            KeyError: when ``factor`` was not part of the study.
        """
        factor = StudyFactor(factor)
        for result in self.factors:
            if result.factor is factor:
                return result
        raise KeyError(f"factor {factor.value!r} was not studied; studied: {[f.factor.value for f in self.factors]}")


CSV_COLUMNS = list(StudyPoint.model_fields)


def points_to_csv(points: list[StudyPoint]) -> str:
    """Render points as CSV (header = ``CSV_COLUMNS``; floats at full ``repr`` precision)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for point in points:
        writer.writerow(point.model_dump(mode="json"))
    return buffer.getvalue()
