"""bitplan: which layer gets how many bits, from the structure of a model's matrix computations.

Profile a model's GEMMs (accumulation, usage frequency, depth), plan per-layer bit-widths from them,
train against a plan with fake quantization, and run the experiment grids of Shen et al. (2024).
"""

from bitplan.errors import BitplanError, PlanError, SpecError, TraceError
from bitplan.profile.schema import GemmLayer, ModelProfile
from bitplan.profile.trace import profile_model
from bitplan.spec import LoadedModel, load_model, profile_spec

profile = profile_model

__all__ = [
    # profiling
    "profile",
    "profile_model",
    "profile_spec",
    "ModelProfile",
    "GemmLayer",
    # models
    "load_model",
    "LoadedModel",
    # errors
    "BitplanError",
    "SpecError",
    "TraceError",
    "PlanError",
]
__version__ = "0.1.0"
