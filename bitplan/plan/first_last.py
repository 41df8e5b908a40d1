"""``first-last``: the first and the last planned layer at the top level, the rest at one width.

A common hand-made plan (input and output layers are known to be sensitive). At a budget, all of it
is paid from the budget: the two layers take the top level while the budget allows it, the others the
widest width that still fits, and what is left is filled one level at a time in graph order
(``fill.fill_levels``), so the plan reaches the budget within one level step like every other method.
"""

from __future__ import annotations

from typing import Any

from bitplan.plan.fill import fill_levels
from bitplan.plan.planner import plan_from_bits
from bitplan.plan.request import PlanRequest
from bitplan.plan.schema import BitPlan, PlanSource
from bitplan.plan.space import request_space
from bitplan.profile.schema import ModelProfile

FIRST_LAST = "first-last"


def first_last_plan(profile: ModelProfile, request: PlanRequest | None = None, /, **options: Any) -> BitPlan:
    """The first and last planned layers at the top level and the rest at one width, within ``budget``.

    Raises:
        PlanError: No budget, or one outside the reachable range (both ends stated).

    Example:
        >>> from bitplan.plan.synthetic import resnet20_profile
        >>> plan = first_last_plan(resnet20_profile(), levels=(2, 4, 8), budget={"kind": "avg_bits", "value": 3})
        >>> bits = list(plan.bits_by_name().values())
        >>> bits[0], bits[-1], plan.budget_reached <= 3
        (8, 8, True)
    """
    request = PlanRequest.of(request, **options)
    space = request_space(profile, request)
    levels, assigned, terms = space.levels, space.assigned, space.terms
    ends = {0, len(assigned) - 1}
    positions = [2.0 * (len(levels) - 1) if index in ends else 0.0 for index in range(len(assigned))]
    order = sorted(ends) + [index for index in range(len(assigned)) if index not in ends]
    chosen = fill_levels(terms.weights, terms.values, terms.capacity, positions, order)
    source = PlanSource(method=FIRST_LAST, measure="none: first and last layer at the top level, the rest one width")
    return plan_from_bits(
        profile, {unit.key: levels[level] for unit, level in zip(assigned, chosen)}, request, source=source
    )
