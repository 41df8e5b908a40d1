"""Per-layer bit-width plans: make them from a profile, save, load, check.

Example:
    >>> from bitplan.plan import make_plan, save_plan
    >>> from bitplan.plan.synthetic import resnet20_profile
    >>> plan = make_plan(resnet20_profile(), factor="A", strategy="C-", bits=(4, 8))
    >>> plan.bits_by_weight()["conv1.weight"], plan.bits_by_weight()["layer3.2.conv2.weight"]
    (8, 4)
"""

from bitplan.plan.check import CheckReport, Violation, check_plan
from bitplan.plan.estimates import plan_estimates
from bitplan.plan.from_spec import grid_model, plan_model
from bitplan.plan.request import MeasuredScores, PlanRequest
from bitplan.plan.source import load_profile
from bitplan.plan.grid import GridResult, GridRow, make_grid, plan_filename, save_grid
from bitplan.plan.io import load_plan, parse_plan, plan_to_json, save_plan, verify_fingerprint
from bitplan.plan.planner import make_plan
from bitplan.plan.schema import (
    PLAN_SCHEMA_VERSION,
    BitPlan,
    Budget,
    BudgetKind,
    CapacityMeasure,
    Factor,
    LayerPlan,
    Mapping,
    PlanEstimates,
    Preset,
    Strategy,
)

__all__ = [
    # planning
    "make_plan",
    "PlanRequest",
    "MeasuredScores",
    "plan_model",
    "make_grid",
    "grid_model",
    "load_profile",
    # file format
    "PLAN_SCHEMA_VERSION",
    "BitPlan",
    "LayerPlan",
    "PlanEstimates",
    "Budget",
    "BudgetKind",
    "CapacityMeasure",
    "Factor",
    "Strategy",
    "Mapping",
    "Preset",
    "GridResult",
    "GridRow",
    # files
    "load_plan",
    "save_plan",
    "save_grid",
    "parse_plan",
    "plan_to_json",
    "plan_filename",
    "verify_fingerprint",
    # checking
    "check_plan",
    "CheckReport",
    "Violation",
    "plan_estimates",
]
