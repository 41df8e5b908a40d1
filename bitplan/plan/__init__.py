"""Per-layer bit-width plans: make them from a profile, save, load, check.

Example:
    >>> from bitplan.plan import make_plan, save_plan
    >>> from bitplan.plan.synthetic import resnet20_profile
    >>> plan = make_plan(resnet20_profile(), factor="A", strategy="C-", bits=(4, 8))
    >>> plan.bits_by_weight()["conv1.weight"], plan.bits_by_weight()["layer3.2.conv2.weight"]
    (8, 4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitplan.lazy import lazy_exports

if TYPE_CHECKING:
    from bitplan.plan.check import CheckReport, Violation, check_plan
    from bitplan.plan.estimates import plan_estimates
    from bitplan.plan.from_spec import grid_model, plan_model
    from bitplan.plan.request import MeasuredScores, PlanRequest
    from bitplan.plan.source import load_profile
    from bitplan.plan.grid import GridResult, GridRow, make_grid, plan_filename, save_grid
    from bitplan.plan.io import as_plan, load_plan, parse_plan, plan_to_json, save_plan, verify_fingerprint
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
        PlanSource,
        Preset,
        Strategy,
    )

# loaded on first use, so that ``bitplan.plan.check`` (``bitplan check --no-model``) stays torch-free
_LAZY: dict[str, tuple[str, str]] = {
    "CheckReport": ("bitplan.plan.check", "CheckReport"),
    "Violation": ("bitplan.plan.check", "Violation"),
    "check_plan": ("bitplan.plan.check", "check_plan"),
    "plan_estimates": ("bitplan.plan.estimates", "plan_estimates"),
    "grid_model": ("bitplan.plan.from_spec", "grid_model"),
    "load_profile": ("bitplan.plan.source", "load_profile"),
    "PlanRequest": ("bitplan.plan.request", "PlanRequest"),
    "MeasuredScores": ("bitplan.plan.request", "MeasuredScores"),
    "plan_model": ("bitplan.plan.from_spec", "plan_model"),
    "GridResult": ("bitplan.plan.grid", "GridResult"),
    "GridRow": ("bitplan.plan.grid", "GridRow"),
    "make_grid": ("bitplan.plan.grid", "make_grid"),
    "plan_filename": ("bitplan.plan.grid", "plan_filename"),
    "save_grid": ("bitplan.plan.grid", "save_grid"),
    "as_plan": ("bitplan.plan.io", "as_plan"),
    "load_plan": ("bitplan.plan.io", "load_plan"),
    "parse_plan": ("bitplan.plan.io", "parse_plan"),
    "plan_to_json": ("bitplan.plan.io", "plan_to_json"),
    "save_plan": ("bitplan.plan.io", "save_plan"),
    "verify_fingerprint": ("bitplan.plan.io", "verify_fingerprint"),
    "make_plan": ("bitplan.plan.planner", "make_plan"),
    "PLAN_SCHEMA_VERSION": ("bitplan.plan.schema", "PLAN_SCHEMA_VERSION"),
    "BitPlan": ("bitplan.plan.schema", "BitPlan"),
    "Budget": ("bitplan.plan.schema", "Budget"),
    "BudgetKind": ("bitplan.plan.schema", "BudgetKind"),
    "CapacityMeasure": ("bitplan.plan.schema", "CapacityMeasure"),
    "Factor": ("bitplan.plan.schema", "Factor"),
    "LayerPlan": ("bitplan.plan.schema", "LayerPlan"),
    "Mapping": ("bitplan.plan.schema", "Mapping"),
    "PlanEstimates": ("bitplan.plan.schema", "PlanEstimates"),
    "PlanSource": ("bitplan.plan.schema", "PlanSource"),
    "Preset": ("bitplan.plan.schema", "Preset"),
    "Strategy": ("bitplan.plan.schema", "Strategy"),
}

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
    "PlanSource",
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
    "as_plan",
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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
