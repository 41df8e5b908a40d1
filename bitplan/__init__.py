"""bitplan: which layer gets how many bits, from the structure of a model's matrix computations.

Profile a model's GEMMs (accumulation, usage frequency, depth), plan per-layer bit-widths from them,
train against a plan with fake quantization, and run the experiment grids of Shen et al. (2024).

The public names below load on first use (PEP 562), so ``import bitplan`` and ``bitplan --help``
do not pay for torch; ``from bitplan import apply`` imports what ``apply`` needs, then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitplan.lazy import lazy_exports

if TYPE_CHECKING:
    from bitplan.errors import BitplanError, PlanError, SpecError, TraceError
    from bitplan.frontends.torch import trace as profile_model
    from bitplan.plan import BitPlan, load_plan, make_plan, save_plan
    from bitplan.profile.schema import GemmLayer, ModelProfile
    from bitplan.qat import apply, strip
    from bitplan.sensitivity_analysis import SensitivityReport, measure_sensitivity
    from bitplan.spec import LoadedModel, load_model, profile_spec
    from bitplan.train import EvalResult, RunResult, SeedsSummary, TrainConfig, evaluate_model, train_run, train_seeds

    sensitivity = measure_sensitivity

# public name -> (module, attribute in that module)
_LAZY: dict[str, tuple[str, str]] = {
    "apply": ("bitplan.qat", "apply"),
    "strip": ("bitplan.qat", "strip"),
    "BitplanError": ("bitplan.errors", "BitplanError"),
    "PlanError": ("bitplan.errors", "PlanError"),
    "SpecError": ("bitplan.errors", "SpecError"),
    "TraceError": ("bitplan.errors", "TraceError"),
    "BitPlan": ("bitplan.plan", "BitPlan"),
    "load_plan": ("bitplan.plan", "load_plan"),
    "make_plan": ("bitplan.plan", "make_plan"),
    "save_plan": ("bitplan.plan", "save_plan"),
    "GemmLayer": ("bitplan.profile.schema", "GemmLayer"),
    "ModelProfile": ("bitplan.profile.schema", "ModelProfile"),
    "profile_model": ("bitplan.frontends.torch", "trace"),
    "SensitivityReport": ("bitplan.sensitivity_analysis", "SensitivityReport"),
    "measure_sensitivity": ("bitplan.sensitivity_analysis", "measure_sensitivity"),
    "sensitivity": ("bitplan.sensitivity_analysis", "measure_sensitivity"),
    "LoadedModel": ("bitplan.spec", "LoadedModel"),
    "load_model": ("bitplan.spec", "load_model"),
    "profile_spec": ("bitplan.spec", "profile_spec"),
    "RunResult": ("bitplan.train", "RunResult"),
    "SeedsSummary": ("bitplan.train", "SeedsSummary"),
    "TrainConfig": ("bitplan.train", "TrainConfig"),
    "train_run": ("bitplan.train", "train_run"),
    "train_seeds": ("bitplan.train", "train_seeds"),
    "evaluate_model": ("bitplan.train", "evaluate_model"),
    "EvalResult": ("bitplan.train", "EvalResult"),
}

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
    # evaluating a trained model (with a plan applied after training)
    "evaluate_model",
    "EvalResult",
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

