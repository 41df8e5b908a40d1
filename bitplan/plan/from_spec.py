"""Planning straight from a model spec or a saved profile: what ``bitplan plan`` calls."""

from __future__ import annotations

from typing import Any

from bitplan.plan.grid import GridResult, make_grid
from bitplan.plan.planner import make_plan
from bitplan.plan.schema import BitPlan
from bitplan.plan.source import load_profile


def plan_model(model: str, *, input_shape: str | None = None, batch: int | None = None, **options: Any) -> BitPlan:
    """Profile ``model`` (a spec or a profile JSON file) and plan it with ``make_plan(**options)``.

    Example:
        >>> plan = plan_model("zoo:resnet20", factor="A", strategy="C-", bits=(4, 8))  # doctest: +SKIP
    """
    return make_plan(load_profile(model, input_shape=input_shape, batch=batch), **options)


def grid_model(
    model: str, *, input_shape: str | None = None, batch: int | None = None, **options: Any
) -> tuple[list[BitPlan], GridResult]:
    """Profile ``model`` once and make every factor × strategy plan (``make_grid(**options)``)."""
    return make_grid(load_profile(model, input_shape=input_shape, batch=batch), **options)
