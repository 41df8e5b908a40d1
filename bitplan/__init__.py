"""bitplan: which layer gets how many bits, from the structure of a model's matrix computations.

Profile a model's GEMMs (accumulation, usage frequency, depth), plan per-layer bit-widths from them,
train against a plan with fake quantization, and run the experiment grids of Shen et al. (2024).
"""

from bitplan.apply import apply, strip
from bitplan.errors import BitplanError, PlanError, SpecError, TraceError
from bitplan.plan import BitPlan, load_plan, make_plan, save_plan
from bitplan.profile.schema import GemmLayer, ModelProfile
from bitplan.frontends.torch import trace as profile_model
from bitplan.sensitivity_analysis import SensitivityReport, measure_sensitivity
from bitplan.spec import LoadedModel, load_model, profile_spec
from bitplan.train import RunResult, SeedsSummary, TrainConfig, train_run, train_seeds

sensitivity = measure_sensitivity

__all__ = [
    # profiling (the data model is the subpackage ``bitplan.profile``)
    "profile_model",
    "profile_spec",
    "ModelProfile",
    "GemmLayer",
    # models
    "load_model",
    "LoadedModel",
    # planning
    "make_plan",
    "load_plan",
    "save_plan",
    "BitPlan",
    # training against a plan
    "apply",
    "strip",
    "TrainConfig",
    "train_run",
    "train_seeds",
    "RunResult",
    "SeedsSummary",
    # measured sensitivity
    "sensitivity",
    "measure_sensitivity",
    "SensitivityReport",
    # errors
    "BitplanError",
    "SpecError",
    "TraceError",
    "PlanError",
]
__version__ = "0.1.0"
