"""The profile data model: ``ModelProfile`` with one ``GemmLayer`` per GEMM and its coverage ledger.

The front ends that produce profiles live in ``bitplan.frontends``; ``bitplan.profile_model`` traces
a PyTorch module.
"""

from bitplan.profile.schema import (
    Coverage,
    GemmLayer,
    GemmOp,
    ModelProfile,
    Tracer,
    UncoveredKind,
    UncoveredParameter,
)

__all__ = ["ModelProfile", "GemmLayer", "GemmOp", "Tracer", "Coverage", "UncoveredParameter", "UncoveredKind"]
