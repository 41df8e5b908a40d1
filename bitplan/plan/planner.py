"""``make_plan``: a profile, a factor and a strategy in; a per-layer bit-width plan out.

Pure and deterministic: the same profile and arguments always give the same plan (R is seeded).
The rules are Section 4.1 of the seed paper; exact definitions are in docs/planning.md.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping as MappingType
from collections.abc import Sequence
from enum import Enum
from typing import Any, TypeVar

from bitplan.choices import DEFAULT_BITS, BudgetRule, Tie
from bitplan.errors import PlanError
from bitplan.hf_checkpoint import is_hf_directory
from bitplan.plan.accumulator import layer_accumulator_bits
from bitplan.plan.estimates import Precision, activation_elements, compute_estimates
from bitplan.plan.knapsack import BUDGET_TOLERANCE
from bitplan.plan.mapping import level_indices
from bitplan.plan.objective import optimal_bits
from bitplan.plan.schema import (
    NOT_QUANTIZED_BITS,
    BitPlan,
    Budget,
    BudgetKind,
    CapacityMeasure,
    Factor,
    GemmShape,
    LayerPlan,
    Mapping,
    PlanEstimates,
    Preset,
    Strategy,
)
from bitplan.plan.sizing import budgeted_bits
from bitplan.plan.units import PlanUnit, collect_units
from bitplan.profile.schema import ModelProfile
from bitplan.plan.request import PlanRequest
from bitplan.plan.source import load_profile



DPC_FACTORS = {
    CapacityMeasure.params: Factor.capacity,
    CapacityMeasure.macs: Factor.macs,
    CapacityMeasure.accumulation: Factor.A,
}

UNIFORM_FACTOR = Factor.capacity
"""What a U plan made without ``--factor`` records: U ranks nothing, and each layer's size is worth showing."""

E = TypeVar("E", bound=Enum)


def parse_choice(kind: type[E], value: E | str, what: str) -> E:
    """``kind(value)`` with a PlanError listing the valid choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise PlanError(f"unknown {what} `{value}`; choose one of {choices}.") from None


def parse_bits_range(text: str) -> tuple[int, int]:
    """``"4-8"`` -> (4, 8); a single number means a one-level range.

    Raises:
        PlanError: Not of the form LOW-HIGH.
    """
    parts = text.replace(" ", "").split("-")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise PlanError(f"bit range `{text}` is not of the form LOW-HIGH, e.g. `4-8` or `8-16`.") from None
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) != 2:
        raise PlanError(f"bit range `{text}` is not of the form LOW-HIGH, e.g. `4-8` or `8-16`.")
    return numbers[0], numbers[1]


def parse_levels(text: str) -> list[int]:
    """``"8,10,12"`` -> [8, 10, 12] (validated later by ``resolve_levels``)."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise PlanError(f"levels `{text}` must be comma-separated integers, e.g. `8,10,12,14,16`.") from None


def resolve_levels(bits: tuple[int, int] | None, levels: Sequence[int] | None) -> list[int]:
    """The bit levels b_0 < … < b_{L−1} from a range or an explicit list.

    Raises:
        PlanError: Reversed range, bits outside 1..32, or levels not strictly increasing.
    """
    if levels is not None:
        chosen = list(levels)
        if not chosen:
            raise PlanError("--levels is empty; give at least one bit-width, e.g. `--levels 8,10,12`.")
        source = f"levels {chosen}"
    else:
        low, high = bits if bits is not None else DEFAULT_BITS
        if low > high:
            raise PlanError(f"bit range {low}-{high} is reversed; write the smaller width first: {high}-{low}.")
        chosen = list(range(low, high + 1))
        source = f"bit range {low}-{high}"
    if not all(1 <= b <= NOT_QUANTIZED_BITS for b in chosen):
        raise PlanError(f"{source} leaves 1..{NOT_QUANTIZED_BITS}; every width must be between 1 and 32 bits.")
    if any(a >= b for a, b in zip(chosen, chosen[1:])):
        raise PlanError(f"{source} must be strictly increasing without repeats, e.g. `8,10,12`.")
    return chosen


def default_uniform_bits(levels: Sequence[int]) -> int:
    """The level of the menu nearest the middle of its range, ties upward: 6 for 4–8, 7 for 6–8,
    12 for 8–16, 4 for 2,3,4,8 and for 1,2,3,4,8 (the reference is always a width the menu offers)."""
    middle = (levels[0] + levels[-1]) / 2
    return min(levels, key=lambda level: (abs(level - middle), -level))


def make_plan(profile: ModelProfile | str | os.PathLike, request: PlanRequest | None = None, /, **options: Any) -> BitPlan:
    """Plan the bit-width of every weight-bearing GEMM of ``profile``.

    Args:
        profile: The model profile (``bitplan.profile_model``), a model spec, or a saved profile JSON.
        request: A ``PlanRequest``; ``options`` are its fields by keyword (they override it).
        factor: A, F, D, capacity or macs (profile fields accumulation, weight_frequency, depth,
            params, macs).
        strategy: U (one width; needs no factor), C+ (bits rise with the factor), C- (bits fall), R (random).
        bits: Inclusive range of widths (ignored when ``levels`` is given).
        levels: Explicit strictly increasing widths.
        seed: Seed of R.
        mapping: rank, log or quantile (see ``bitplan.plan.mapping``).
        uniform_bits: U's width, a level of the menu (default: the level nearest the middle of the
            range); also the reference for ratios.
        budget: Plan within it (size, mean bits or forward BitOPs); the plan records what it reached.
        budget_rule: How C+, C- and R meet a budget: ``fill`` (their mapping shifted to fit, then filled
            to the budget) or ``order-preserving`` (the seed paper's largest plan following the order).
        keep: ``first``, ``last``, GEMM names, weight FQNs or globs pinned at ``keep_bits``.
        keep_bits: Width of kept layers (32 = not quantized).
        include_activation_gemms: Also plan activation×activation GEMMs (attention's QKᵀ, A·V).
        weight_only: Activations and gradients in fp32 (overrides ``activation_bits`` and ``gradient_bits``).
        activation_bits: Plan-wide activation bits for training (None = fp32).
        gradient_bits: Plan-wide gradient bits for training (None = fp32).
        gradient_quant: sr, luq or none.
        weight_granularity: channel or tensor.
        zero_point: The quantizers' grid: ``float`` (zero point = range minimum) or ``integer``
            (range widened to include 0; the grid torchao, ONNX QDQ and compressed-tensors use).
        preset: ``dpc`` = C- on capacity (``capacity`` picks params, macs or accumulation).
        capacity: DPC's capacity measure.
        model: The model spec to record (default ``profile.model``).
        scores: Measured sensitivities, the values of factor ``S``: ``{GEMM name: score}`` or
            ``MeasuredScores`` (``SensitivityReport.scores()``), which also carries the width they were
            measured at, the profile fingerprint they belong to, and optionally a score per level.
        objective: ``min-sensitivity``: ignore the strategy and choose, exactly, the bits that
            minimise sensitivity-weighted quantization noise within ``budget`` (factor S, strategy opt).

    Returns:
        The plan, with per-layer entries in graph order and its estimates.

    Raises:
        PlanError: Unknown factor or strategy, bad bits, a model without GEMMs, a keep pattern that
            matches nothing, or an unreachable budget (the message gives the reachable sizes).

    Example:
        >>> plan = make_plan(profile, factor="A", strategy="C-", bits=(4, 8))  # doctest: +SKIP
        >>> plan.bits_by_weight()["conv1.weight"]  # doctest: +SKIP
        8
    """
    if not isinstance(profile, ModelProfile):
        profile = load_profile(os.fspath(profile))
    return _plan(profile, PlanRequest.of(request, **options))


def _plan(profile: ModelProfile, request: PlanRequest, chosen: MappingType[str, int] | None = None) -> BitPlan:
    """``make_plan`` on a profile and a validated request; ``chosen`` (unit key -> bits) skips the rule
    and records strategy opt (bits chosen by a method that ``request.source`` names)."""
    factor, strategy, preset, capacity, objective = (
        request.factor, request.strategy, request.preset, request.capacity, request.objective
    )
    if chosen is not None:
        factor, strategy, preset, objective = factor or (Factor.S if request.scores else UNIFORM_FACTOR), Strategy.U, None, None
    bits, levels, uniform_bits, mapping, seed = request.bits, request.levels, request.uniform_bits, request.mapping, request.seed
    budget, keep, keep_bits, include_activation_gemms = (
        request.budget, request.keep, request.keep_bits, request.include_activation_gemms
    )
    activation_bits, gradient_bits = request.activation_bits, request.gradient_bits
    gradient_quant, weight_granularity = request.gradient_quant, request.weight_granularity
    if request.weight_only:
        activation_bits = gradient_bits = None
    sensitivity, model = request.scores, request.model
    if objective is not None:
        if sensitivity is None or budget is None:
            raise PlanError(
                "--objective min-sensitivity needs --sensitivity sens.json and one budget "
                "(--budget-avg-bits, --budget-mbit or --budget-bitops)."
            )
        factor, strategy = Factor.S, Strategy.opt
    elif strategy in (Strategy.opt, Strategy.opt.value):
        raise PlanError("strategy opt comes from --objective min-sensitivity; choose U, C+, C- or R.")
    if objective is not None and sensitivity.bits is None:
        raise PlanError("--objective min-sensitivity needs the width the scores were measured at: pass `MeasuredScores(bits=...)`.")
    if sensitivity is not None and sensitivity.fingerprint not in (None, profile.fingerprint()):
        raise PlanError(
            f"the sensitivity report was measured on another model (`{sensitivity.model}`, fingerprint "
            f"{sensitivity.fingerprint}) than `{profile.model}` ({profile.fingerprint()}); measure this model"
            + (
                f", or plan the model as sized for the data: add {sensitivity.model_options} to its spec."
                if sensitivity.model_options
                else "."
            )
        )
    random_at_budget = budget is not None and request.budget_rule is BudgetRule.fill
    factor, strategy, preset = _resolve_rule(factor, strategy, preset, capacity, random_at_budget=random_at_budget)
    if chosen is not None:
        strategy = Strategy.opt
    chosen_levels = resolve_levels(bits, levels)
    uniform = default_uniform_bits(chosen_levels) if uniform_bits is None else uniform_bits
    for name, value in (("uniform_bits", uniform), ("keep_bits", keep_bits)):
        _check_width(name, value)
    if uniform not in chosen_levels:
        raise PlanError(
            f"--uniform-bits {uniform} is not a level of the menu {chosen_levels}; the uniform plan and the "
            f"reference use one of its widths (default {default_uniform_bits(chosen_levels)})."
        )
    for name, value in (("activation_bits", activation_bits), ("gradient_bits", gradient_bits)):
        if value is not None:
            _check_width(name, value)
    precision = Precision(activation_bits, gradient_bits, gradient_quant)

    scores = sensitivity.by_name if sensitivity is not None else None
    units, left_out = collect_units(
        profile, factor, include_activation_gemms=include_activation_gemms, keep=keep, sensitivity=scores,
        tie_fused=resolve_tie(request.tie, model or profile.model) is Tie.fused,
    )
    planned = [unit for unit in units if not unit.kept]
    objective_value = None
    if chosen is not None:
        planned_bits = _chosen_bits(planned, chosen, chosen_levels)
    elif objective is not None:
        planned_bits, objective_value = optimal_bits(
            budget,
            units,
            chosen_levels,
            measured_bits=sensitivity.bits,
            keep_bits=keep_bits,
            precision=precision,
            other_params=profile.total_params - sum(unit.params for unit in units),
            unplanned_macs=sum(layer.macs for layer in left_out),
            per_level=sensitivity.per_level,
        )
    elif budget is None:
        planned_bits = _unbudgeted_bits(planned, strategy, chosen_levels, mapping, seed, uniform)
    else:
        planned_bits = budgeted_bits(
            budget,
            units,
            strategy,
            chosen_levels,
            mapping=mapping,
            seed=seed,
            keep_bits=keep_bits,
            precision=precision,
            other_params=profile.total_params - sum(unit.params for unit in units),
            unplanned_macs=sum(layer.macs for layer in left_out),
            rule=request.budget_rule,
        )
    bits_of = {unit.key: b for unit, b in zip(planned, planned_bits)}
    layers = _layer_plans(profile, units, bits_of, keep_bits, precision)
    unplanned_macs = sum(layer.macs for layer in left_out)
    estimates = compute_estimates(
        layers, total_params=profile.total_params, unplanned_macs=unplanned_macs, uniform_bits=uniform, precision=precision
    )
    budgeted_by_rule = budget is not None and strategy in (Strategy.C_plus, Strategy.C_minus, Strategy.R)
    reached = None if budget is None else budget_value(estimates, budget.kind)
    if chosen is not None and reached is not None and reached > budget.value * (1 + BUDGET_TOLERANCE):
        raise PlanError(f"the chosen bits reach {reached:.6g}, above the budget {budget.value:g} ({budget.kind.value}).")
    return BitPlan(
        model=model or profile.model,
        fingerprint=profile.fingerprint(),
        batch=profile.batch,
        input_shapes=profile.input_shapes,
        factor=factor,
        strategy=strategy,
        levels=chosen_levels,
        uniform_bits=uniform,
        seed=seed,
        mapping=mapping,
        preset=preset,
        budget=budget,
        keep=list(keep),
        keep_bits=keep_bits,
        include_activation_gemms=include_activation_gemms,
        activation_bits=activation_bits,
        gradient_bits=gradient_bits,
        gradient_quant=gradient_quant,
        weight_granularity=weight_granularity,
        zero_point=request.zero_point,
        total_params=profile.total_params,
        unplanned_macs=unplanned_macs,
        sensitivity_method=sensitivity.method if sensitivity is not None and factor is Factor.S else None,
        sensitivity_bits=sensitivity.bits if sensitivity is not None and factor is Factor.S else None,
        objective=objective,
        objective_value=objective_value,
        budget_rule=request.budget_rule if budgeted_by_rule else None,
        budget_reached=reached,
        source=request.source,
        layers=layers,
        estimates=estimates,
    )


def resolve_tie(tie: Tie | None, model: str) -> Tie:
    """``tie``, or by default ``fused`` for Hugging Face models (``hf:`` specs and checkpoint directories,
    which serving stacks fuse) and ``none`` for the rest.

    Example:
        >>> resolve_tie(None, "hf:llama?hidden_size=64").value, resolve_tie(None, "zoo:resnet20").value
        ('fused', 'none')
    """
    if tie is not None:
        return Tie(tie)
    base = model.partition("?")[0]
    return Tie.fused if base.startswith("hf:") or is_hf_directory(base) else Tie.none


def plan_from_bits(
    profile: ModelProfile, bits: MappingType[str, int], request: PlanRequest | None = None, /, **options: Any
) -> BitPlan:
    """A plan with the bits a method chose: ``bits`` maps each planned unit (weight FQN) to a level.

    The plan records strategy ``opt`` and ``request.source`` (which method chose, from what). With a
    budget, the bits must fit it; the plan records what they reach.

    Raises:
        PlanError: A planned unit missing from ``bits``, bits outside the levels, or over the budget.

    Example:
        >>> plan = plan_from_bits(profile, {"conv1.weight": 8, "fc.weight": 2}, levels=(2, 8))  # doctest: +SKIP
    """
    return _plan(profile, PlanRequest.of(request, **options), chosen=bits)


def _chosen_bits(planned: list[PlanUnit], chosen: MappingType[str, int], levels: list[int]) -> list[int]:
    missing = [unit.key for unit in planned if unit.key not in chosen]
    if missing:
        raise PlanError(f"no bits chosen for `{missing[0]}`; give every planned weight one level of {levels}.")
    outside = [unit.key for unit in planned if chosen[unit.key] not in levels]
    if outside:
        raise PlanError(f"`{outside[0]}` is given {chosen[outside[0]]} bits, not a level of {levels}.")
    return [chosen[unit.key] for unit in planned]


def budget_value(estimates: PlanEstimates, kind: BudgetKind) -> float:
    """A plan's own value in a budget's unit: mean bits, MBit or forward BitOPs."""
    if kind is BudgetKind.avg_bits:
        return estimates.avg_bits
    if kind is BudgetKind.mbit:
        return estimates.mbit
    return float(estimates.bitops_forward)


def _layer_plans(
    profile: ModelProfile, units: list[PlanUnit], bits_of: dict[str, int], keep_bits: int, precision: Precision
) -> list[LayerPlan]:
    """One entry per planned GEMM, in the profile's graph order; a unit's GEMMs share its bits."""
    entries = {}
    for unit in units:
        bits = keep_bits if unit.kept else bits_of[unit.key]
        for layer in unit.layers:
            entries[layer.name] = LayerPlan(
                name=layer.name,
                weight=layer.weight,
                op=layer.op,
                bits=bits,
                factor_value=None if unit.kept else unit.factor_value,
                params=layer.params,
                macs=layer.macs,
                kept=unit.kept,
                activation_elements=activation_elements(layer),
                accumulator_bits=None if layer.op.lookup else layer_accumulator_bits(layer, bits, precision),
                shape=GemmShape(m=layer.m, k=layer.k, n=layer.n, groups=layer.groups),
            )
    return [entries[layer.name] for layer in profile.layers if layer.name in entries]


def _resolve_rule(
    factor: Factor | str | None,
    strategy: Strategy | str | None,
    preset: Preset | str | None,
    capacity: CapacityMeasure | str,
    *,
    random_at_budget: bool,
) -> tuple[Factor, Strategy, Preset | None]:
    if preset is not None:
        preset = parse_choice(Preset, preset, "preset")
        preset_factor = DPC_FACTORS[parse_choice(CapacityMeasure, capacity, "capacity measure")]
        for given, implied, flag in ((factor, preset_factor, "--factor"), (strategy, Strategy.C_minus, "--strategy")):
            if given is not None and given != implied and given != implied.value:
                raise PlanError(
                    f"--preset dpc means --factor {preset_factor.value} --strategy C- (choose the capacity "
                    f"measure with --capacity); drop {flag} {given}."
                )
        return preset_factor, Strategy.C_minus, preset
    if strategy in (Strategy.U, Strategy.U.value) and factor is None:
        return UNIFORM_FACTOR, Strategy.U, None  # one width for every layer: no factor to rank by
    if strategy in (Strategy.R, Strategy.R.value) and factor is None:
        if random_at_budget:  # a random plan filled to the budget: no factor to rank by
            return UNIFORM_FACTOR, Strategy.R, None
        raise PlanError(
            "--strategy R alone is a random plan filled to a budget (--budget-avg-bits, --budget-mbit or "
            "--budget-bitops, with the default --budget-rule fill); without one, or with order-preserving, it "
            "shuffles the levels a factor assigns: add --factor (A, F, D, capacity, macs) or a budget."
        )
    if factor is None or strategy is None:
        raise PlanError(
            "give both --factor (A, F, D, capacity, macs) and --strategy (C+, C-, R), --strategy U alone, "
            "--strategy R with a budget, or --preset dpc."
        )
    return parse_choice(Factor, factor, "factor"), parse_choice(Strategy, strategy, "strategy"), None


def _check_width(name: str, value: int) -> None:
    if not 1 <= value <= NOT_QUANTIZED_BITS:
        raise PlanError(f"`{name}` is {value}; a bit-width must be between 1 and 32 (32 = not quantized).")


def _unbudgeted_bits(
    planned: list[PlanUnit], strategy: Strategy, levels: list[int], mapping: Mapping, seed: int, uniform: int
) -> list[int]:
    """The paper's rule: U one width; C+/C- by the mapping; R a seeded shuffle of C+.

    A unit the factor cannot rank (a table read only by lookups, under A, F or D) takes U's width;
    under R that width is shuffled with the others.
    """
    if strategy is Strategy.U:
        return [uniform] * len(planned)
    ranked = [unit.factor_value for unit in planned if unit.factor_value is not None]
    indices = iter(level_indices(ranked, len(levels), mapping))
    if strategy is Strategy.C_minus:
        return [uniform if unit.factor_value is None else levels[len(levels) - 1 - next(indices)] for unit in planned]
    rising = [uniform if unit.factor_value is None else levels[next(indices)] for unit in planned]
    if strategy is Strategy.R:
        random.Random(seed).shuffle(rising)
    return rising
