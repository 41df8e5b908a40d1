"""What a plan is asked to be: one frozen, typed ``PlanRequest`` that ``make_plan`` takes.

The CLI builds a request from the options the user gave; Python callers pass one, or keywords.
Every default is the one in ``bitplan.choices``. Measured scores (factor S) are plain data here,
``{GEMM name: score}`` with the width they were measured at, so planning depends on no measuring code.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bitplan.choices import (
    DEFAULT_ACTIVATION_BITS,
    DEFAULT_BITS,
    DEFAULT_BUDGET_RULE,
    DEFAULT_CAPACITY,
    DEFAULT_GRADIENT_BITS,
    DEFAULT_GRADIENT_QUANT,
    DEFAULT_KEEP_BITS,
    DEFAULT_MAPPING,
    DEFAULT_WEIGHT_GRANULARITY,
    DEFAULT_ZERO_POINT,
    BudgetRule,
    CapacityMeasure,
    Factor,
    GradQuant,
    Mapping,
    Objective,
    Preset,
    Strategy,
    WeightGranularity,
    ZeroPoint,
)
from bitplan.errors import PlanError
from bitplan.plan.schema import Budget, PlanSource


class MeasuredScores(BaseModel):
    """Measured per-layer sensitivities (factor S): larger = more sensitive, and what they were measured on.

    Example:
        >>> MeasuredScores(by_name={"conv1": 2.0, "fc": 0.5}, bits=4).by_name["fc"]
        0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    by_name: dict[str, float] = Field(description="GEMM name -> score.")
    bits: int | None = Field(default=None, ge=1, description="Weight bits the scores were measured at (the objective's b0).")
    method: str | None = Field(default=None, description="How they were measured (recorded in the plan).")
    fingerprint: str | None = Field(default=None, description="The profile they belong to; checked when given.")
    model: str | None = Field(default=None, description="The model spec they were measured on.")
    model_options: dict[str, str] = Field(default_factory=dict, description="Spec options sizing the model to its data.")
    per_level: dict[str, dict[int, float]] | None = Field(
        default=None,
        description="Planning unit (weight FQN) -> bits -> score measured at that width; when given, the objective "
        "uses these instead of extrapolating one width's score (needs every unit at every level of the menu).",
    )


_CHOICE_NAMES = {"budget_rule": "budget rule", "gradient_quant": "gradient quantizer", "weight_granularity": "weight granularity", "zero_point": "zero point"}


class PlanRequest(BaseModel):
    """Everything ``make_plan`` needs besides the profile (definitions in docs/planning.md).

    Range checks that need the chosen levels (reversed ranges, widths outside 1..32, budgets that
    cannot be met) happen in ``make_plan``, which names the offending option.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: Factor | None = Field(default=None, description="A, F, D, capacity, macs, or S (measured).")
    strategy: Strategy | None = Field(default=None, description="U, C+, C-, R (opt comes from `objective`).")
    bits: tuple[int, int] | None = Field(default=DEFAULT_BITS, description="Inclusive width range (ignored with `levels`).")
    levels: tuple[int, ...] | None = Field(default=None, description="Explicit, strictly increasing widths.")
    seed: int = Field(default=0, ge=0, description="Seed of R.")
    mapping: Mapping = DEFAULT_MAPPING
    uniform_bits: int | None = Field(default=None, description="U's width (default: middle of the range).")
    budget: Budget | None = None
    budget_rule: BudgetRule = Field(default=DEFAULT_BUDGET_RULE, description="fill (default) or order-preserving.")
    keep: tuple[str, ...] = Field(default=(), description="first, last, GEMM names, weight FQNs or globs.")
    keep_bits: int = DEFAULT_KEEP_BITS
    include_activation_gemms: bool = False
    activation_bits: int | None = Field(default=DEFAULT_ACTIVATION_BITS, description="None = full precision.")
    gradient_bits: int | None = Field(default=DEFAULT_GRADIENT_BITS, description="None = full precision.")
    gradient_quant: GradQuant = DEFAULT_GRADIENT_QUANT
    weight_only: bool = Field(default=False, description="Activations and gradients in fp32 (overrides their bits).")
    weight_granularity: WeightGranularity = DEFAULT_WEIGHT_GRANULARITY
    zero_point: ZeroPoint = Field(default=DEFAULT_ZERO_POINT, description="Quantizer grid: float or integer zero point.")
    preset: Preset | None = None
    capacity: CapacityMeasure = DEFAULT_CAPACITY
    objective: Objective | None = None
    scores: MeasuredScores | None = Field(default=None, description="Values of factor S, and of the objective.")
    model: str | None = Field(default=None, description="The model spec to record (default: the profile's).")
    source: PlanSource | None = Field(default=None, description="Recorded in the plan: how its scores were measured.")

    @classmethod
    def of(cls, request: PlanRequest | None = None, /, **options: Any) -> PlanRequest:
        """``request`` (or the defaults) with ``options`` applied, validated; a plain score mapping is accepted.

        Raises:
            PlanError: An option of the wrong kind; the message names it and its valid choices.
        """
        if isinstance(options.get("scores"), MappingType):
            options["scores"] = MeasuredScores(by_name=dict(options["scores"]))
        values = {**(request.model_dump(exclude_unset=True) if request is not None else {}), **options}
        try:
            return cls(**values)
        except ValidationError as error:
            raise PlanError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    """The first problem as one sentence: unknown choices list the valid ones."""
    problem = error.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else "options"
    if problem["type"] == "enum":
        name = _CHOICE_NAMES.get(field, field.replace("_", " "))
        return f"unknown {name} `{problem['input']}`; choose one of {problem['ctx']['expected'].replace(chr(39), '')}."
    if problem["type"] == "extra_forbidden":
        return f"`{field}` is not a planning option; the options are {', '.join(PlanRequest.model_fields)}."
    return f"`{field}`: {problem['msg']} (got {problem['input']!r})."
