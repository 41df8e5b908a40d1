"""Measured per-layer sensitivity, and validation of A/F/D against it (planning with it: ``bitplan.plan``).

``bitplan.sensitivity(model, data, method=...)`` is ``measure_sensitivity``.
"""

from bitplan.sensitivity_analysis.measure import measure_sensitivity
from bitplan.sensitivity_analysis.schema import (
    FactorCorrelation,
    Initialization,
    LayerSensitivity,
    SensitivityMethod,
    SensitivityReport,
)
from bitplan.sensitivity_analysis.validate import FACTORS, correlate, validate

__all__ = [
    # measuring
    "measure_sensitivity",
    "SensitivityMethod",
    "SensitivityReport",
    "LayerSensitivity",
    "Initialization",
    # validating the structural factors
    "validate",
    "correlate",
    "FactorCorrelation",
    "FACTORS",
]
