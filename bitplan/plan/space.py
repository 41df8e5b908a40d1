"""The budget a request sets, in the solver's units: for methods that choose bits themselves.

``first-last``, the recommended plan's refinement and any other method that picks bits outside
``make_plan`` read the same capacity and per-unit costs ``make_plan`` would (``sizing.BudgetTerms``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bitplan.errors import PlanError
from bitplan.plan.estimates import Precision
from bitplan.plan.planner import resolve_levels
from bitplan.plan.request import PlanRequest
from bitplan.plan.schema import Factor
from bitplan.plan.sizing import BudgetTerms, check_reachable
from bitplan.plan.units import PlanUnit, collect_units
from bitplan.profile.schema import ModelProfile


@dataclass(frozen=True)
class RequestSpace:
    """The levels, the units the budget pays for (in graph order) and the budget's terms."""

    levels: list[int]
    assigned: list[PlanUnit]
    terms: BudgetTerms


def request_space(profile: ModelProfile, request: PlanRequest) -> RequestSpace:
    """The budget of ``request`` over ``profile``'s assigned (not kept) units.

    Raises:
        PlanError: No budget, or one outside the reachable range (both ends stated).
    """
    if request.budget is None:
        raise PlanError("this method needs a budget (--budget-avg-bits, --budget-mbit or --budget-bitops).")
    levels = resolve_levels(request.bits, request.levels)
    units, left_out = collect_units(
        profile, Factor.capacity, include_activation_gemms=request.include_activation_gemms, keep=request.keep
    )
    fp32 = request.weight_only
    precision = Precision(
        None if fp32 else request.activation_bits, None if fp32 else request.gradient_bits, request.gradient_quant
    )
    terms = BudgetTerms(
        request.budget, units, levels, keep_bits=request.keep_bits, precision=precision,
        other_params=profile.total_params - sum(unit.params for unit in units),
        unplanned_macs=sum(layer.macs for layer in left_out),
    )
    check_reachable(terms, request.budget, levels)
    return RequestSpace(levels=levels, assigned=[unit for unit in units if not unit.kept], terms=terms)
