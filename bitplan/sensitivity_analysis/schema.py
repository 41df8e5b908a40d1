"""The sensitivity file: one measured score per weight GEMM, larger always meaning more sensitive."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from bitplan.choices import SensitivityMethod
from bitplan.plan.request import MeasuredScores

SENSITIVITY_SCHEMA_VERSION = 1


class Initialization(str, Enum):
    """Whether the weights came from a trained checkpoint or from random initialisation."""

    checkpoint = "checkpoint"
    random = "random"


class LayerSensitivity(BaseModel):
    """One weight GEMM's score and its structural factors, for planning and validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weight: str
    sensitivity: float = Field(description="Larger = more sensitive, whatever the method.")
    sqnr_db: float | None = Field(default=None, description="Output SQNR in dB (sqnr method only).")
    accumulation: int
    weight_frequency: int
    depth: int
    params: int
    macs: int


class FactorCorrelation(BaseModel):
    """Rank agreement of one structural factor with the measured sensitivity over the layers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: str
    spearman: float | None
    spearman_ci: tuple[float, float] | None
    kendall: float | None
    kendall_ci: tuple[float, float] | None
    layers: int
    note: str = ""


class SensitivityReport(BaseModel):
    """What ``bitplan sensitivity`` writes (``-o sens.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SENSITIVITY_SCHEMA_VERSION
    model: str
    fingerprint: str
    data: str
    method: SensitivityMethod
    bits: int = Field(ge=1, le=16)
    batches: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seed: int
    probes: int | None = Field(default=None, description="Rademacher probes per batch (hessian only).")
    per_channel: bool = Field(default=True, description="Δw from per-channel (else per-tensor) ranges.")
    model_options: dict[str, str] = Field(
        default_factory=dict, description="Options that sized the model to the data (e.g. in_channels=1)."
    )
    initialization: Initialization
    checkpoint: str | None = None
    seconds: float = Field(ge=0)
    layers: list[LayerSensitivity]
    validation: list[FactorCorrelation] | None = None

    def by_name(self) -> dict[str, float]:
        """GEMM name → sensitivity."""
        return {layer.name: layer.sensitivity for layer in self.layers}

    def scores(self) -> MeasuredScores:
        """The scores as planning takes them (factor S, ``--objective min-sensitivity``)."""
        return MeasuredScores(
            by_name=self.by_name(), bits=self.bits, method=self.method.value, fingerprint=self.fingerprint,
            model=self.model, model_options=self.model_options,
        )
