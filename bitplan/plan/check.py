"""``check_plan``: is this plan file valid, made for this model, and within these limits?

Every problem becomes one ``Violation`` (what, where, how to fix) so CI can list them all at once.
Usage errors (a missing file, a model spec that does not resolve) raise instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bitplan.choices import BudgetRule
from bitplan.errors import BitplanError, PlanError, SpecError
from bitplan.plan.accumulator import layer_accumulator_bits, shape_accumulator_bits
from bitplan.plan.estimates import BITS_PER_MBIT, plan_estimates, precision_of
from bitplan.plan.io import parse_plan, read_plan_text, regenerate_hint
from bitplan.plan.schema import NOT_QUANTIZED_BITS, BitPlan, BudgetKind, Factor, PlanEstimates, Strategy
from bitplan.plan.units import combined_factor_value
from bitplan.profile.schema import ModelProfile
from bitplan.trust import spec_from_file

RELATIVE_TOLERANCE = 1e-9


class Violation(BaseModel):
    """One thing wrong with a plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(description="Kind of violation, e.g. `fingerprint`, `missing`, `max_mbit`.")
    message: str
    layer: str | None = None


class CheckReport(BaseModel):
    """The result of ``bitplan check``: ok when there is no violation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: str = Field(description="The plan file checked.")
    model: str | None = Field(description="The model spec the plan was checked against (null if unreadable or with --no-model).")
    ok: bool
    violations: list[Violation]
    layers: int | None = Field(default=None, description="GEMMs in the plan.")
    avg_bits: float | None = None
    mbit: float | None = None
    bitops_forward: int | None = None
    min_bits: int | None = None


def check_plan(
    path: str | os.PathLike,
    *,
    model: str | None = None,
    profile: ModelProfile | None = None,
    input_shape: str | None = None,
    max_mbit: float | None = None,
    max_avg_bits: float | None = None,
    min_bits: int | None = None,
    max_bitops: float | None = None,
    against_model: bool = True,
    trust_model_spec: bool = False,
    max_accumulator_bits: int | None = None,
) -> CheckReport:
    """Validate a plan file against its model and optional limits.

    Checks, in order: JSON and schema (with field paths), fingerprint, every weight GEMM of the model
    covered exactly once with its weight and factor value, bits consistent with the plan's strategy,
    each layer's stored shape, params and MACs consistent, stored estimates and accumulator widths
    equal to recomputed ones, the plan's own budget, then the given limits. Every limit is applied
    to values recomputed from the layers, never to stored ones; a limit whose inputs the plan lacks
    raises rather than passes. With ``against_model=False`` the model checks are skipped: nothing
    is profiled and torch is never imported (``bitplan check --no-model``, a fast CI gate on schema
    and budgets).

    Args:
        path: The plan file.
        model: Model spec to check against (default: the spec recorded in the plan).
        profile: An already computed profile (skips profiling; for tests and batch use).
        input_shape: Input shape for specs that need one.
        max_mbit: Largest allowed model size in MBit.
        max_avg_bits: Largest allowed parameter-weighted mean bits.
        min_bits: Smallest allowed width of any layer.
        max_bitops: Largest allowed forward BitOPs.
        against_model: Profile the model and check fingerprint, coverage and factor values.
        trust_model_spec: Resolve the plan's own model spec even when it names code (see bitplan.trust).
        max_accumulator_bits: Widest allowed integer accumulator of any layer's forward, dX or dW GEMM,
            recomputed from the model and the plan's bits (docs/accumulation.md).

    Returns:
        The report; ``ok`` is False when any violation was found. ``model`` is null without a model check.

    Raises:
        PlanError: The file does not exist, is a directory or is not UTF-8 text; or
            ``max_accumulator_bits`` without the model and the plan stores no GEMM shapes to
            recompute widths from (a plan written before they were stored).
        SpecError, TraceError: The model spec cannot be profiled, or the plan's spec names code and
            neither ``model`` nor ``trust_model_spec`` is given.
    """
    check_limits(max_mbit=max_mbit, max_avg_bits=max_avg_bits, min_bits=min_bits, max_bitops=max_bitops)
    _refuse_model_without_check(model, input_shape, against_model)
    file = Path(path)
    text = read_plan_text(file)
    try:
        plan = parse_plan(text, source=f"`{file}`")
    except PlanError as error:
        return CheckReport(
            plan=str(file), model=model, ok=False, violations=[Violation(code="schema", message=str(error))]
        )
    if profile is None and against_model:
        spec = model or spec_from_file(plan.model, f"plan file `{file}`", trusted=trust_model_spec)
        profile = profile_for_plan(plan, spec, input_shape)
    estimates = plan_estimates(plan)
    violations = [
        *(_model_violations(plan, profile) if against_model else []),
        *_strategy_violations(plan),
        *_shape_violations(plan),
        *_estimate_violations(plan.estimates, estimates),
        *_limit_violations(plan, estimates, max_mbit, max_avg_bits, min_bits, max_bitops),
        *_accumulator_violations(plan, profile if against_model else None, max_accumulator_bits, file),
    ]
    return CheckReport(
        plan=str(file),
        model=(model or plan.model) if against_model else None,
        ok=not violations,
        violations=violations,
        layers=len(plan.layers),
        avg_bits=estimates.avg_bits,
        mbit=estimates.mbit,
        bitops_forward=estimates.bitops_forward,
        min_bits=min((layer.bits for layer in plan.layers), default=None),
    )


def check_limits(**limits: float | None) -> None:
    """Refuse limits no plan can be measured against: not positive, NaN or infinite; bits beyond 1..32.

    Raises:
        PlanError: Names the option and its value.
    """
    for name, value in limits.items():
        option = "--" + name.replace("_", "-")
        if value is None:
            continue
        if not math.isfinite(value) or value <= 0:
            raise PlanError(f"`{option} {value}` must be a positive, finite number.")
        if name == "min_bits" and not 1 <= value <= NOT_QUANTIZED_BITS:
            raise PlanError(f"`{option} {value}` must be a bit-width between 1 and {NOT_QUANTIZED_BITS}.")


def _refuse_model_without_check(model: str | None, input_shape: str | None, against_model: bool) -> None:
    if not against_model and (model is not None or input_shape is not None):
        given = "--model" if model is not None else "--input-shape"
        raise PlanError(f"{given} names what to check the plan against, and --no-model checks no model; drop one of them.")


def check_plans(
    paths: Sequence[str | os.PathLike], *, model: str | None = None, against_model: bool = True,
    trust_model_spec: bool = False, **limits: Any
) -> list[CheckReport]:
    """``check_plan`` for several files, profiling each model spec once.

    Args:
        paths: Plan files.
        model: Model spec to check every plan against (default: each plan's own spec).
        against_model: False checks schema, strategy, estimates and budgets only (no profiling, no torch).
        trust_model_spec: Resolve plans' own specs even when they name code (see bitplan.trust).
        **limits: ``input_shape``, ``max_mbit``, ``max_avg_bits``, ``min_bits``, ``max_bitops``,
            ``max_accumulator_bits``.

    Returns:
        One report per file, in order.
    """
    check_limits(**{key: value for key, value in limits.items() if key != "input_shape"})
    _refuse_model_without_check(model, limits.get("input_shape"), against_model)
    profiles: dict[tuple[str, int, str], ModelProfile] = {}
    reports = []
    for path in paths:
        profile = None
        text = read_plan_text(path)
        try:
            plan = parse_plan(text)
        except PlanError:
            plan = None  # check_plan reports it
        if plan is not None and against_model:
            spec = model or spec_from_file(plan.model, f"plan file `{path}`", trusted=trust_model_spec)
            key = (spec, plan.batch, str(plan.input_shapes))
            if key not in profiles:
                profiles[key] = profile_for_plan(plan, spec, limits.get("input_shape"))
            profile = profiles[key]
        reports.append(
            check_plan(path, model=model, profile=profile, against_model=against_model, trust_model_spec=trust_model_spec, **limits)
        )
    return reports


def profile_for_plan(plan: BitPlan, spec: str, input_shape: str | None = None) -> ModelProfile:
    """The model's profile at the plan's batch and, unless ``input_shape`` says otherwise, its input shapes.

    A plan records the shapes it was made for (``bitplan plan --input-shape``), so checking it needs
    no shape again: the inputs keep the dtypes of the model's own example inputs (token ids stay
    int64), float32 for a factory that returns only a module. When the model cannot take the plan's
    shapes, it is profiled at its own and the mismatch is reported as violations.
    """
    from bitplan.spec import load_model, profile_spec

    if input_shape is not None:
        return profile_spec(spec, input_shape=input_shape, batch=plan.batch)
    try:
        own = profile_spec(spec, batch=plan.batch)
    except SpecError:  # a factory that returns only a module: its input is what the plan was made for
        own = None
    if own is not None and own.input_shapes == plan.input_shapes:
        return own
    try:
        dtypes = [str(tensor.dtype).removeprefix("torch.") for tensor in load_model(spec, device="meta").example_inputs]
    except SpecError:
        dtypes = ["float32"] * len(plan.input_shapes)
    shapes = ",".join("x".join(map(str, shape)) + f":{dtype}" for shape, dtype in zip(plan.input_shapes, dtypes))
    try:
        return profile_spec(spec, input_shape=shapes, batch=plan.batch)
    except BitplanError:
        if own is None:
            raise
        return own


def _model_violations(plan: BitPlan, profile: ModelProfile) -> list[Violation]:
    found = []
    if plan.fingerprint != profile.fingerprint():
        found.append(
            Violation(
                code="fingerprint",
                message=f"plan fingerprint {plan.fingerprint} (model `{plan.model}`) differs from the model's "
                f"{profile.fingerprint()}: the plan was made for another architecture. "
                f"{regenerate_hint(profile.model)}",
            )
        )
    gemms = {layer.name: layer for layer in profile.layers}
    planned = {layer.name: layer for layer in plan.layers}
    for layer in profile.weight_layers:
        # a plan without a lookup (made before lookups were layers) keeps its table fp32 and counts it so
        if layer.name not in planned and not layer.op.lookup:
            found.append(
                Violation(code="missing", layer=layer.name, message=f"weight GEMM `{layer.name}` has no entry in the plan.")
            )
    # F and MACs depend on the input; compare them only when the model was profiled on the same shapes
    input_free = profile.input_shapes == plan.input_shapes or plan.factor in (Factor.A, Factor.D, Factor.capacity)
    uses: dict[str, list] = {}
    for layer in profile.weight_layers:
        uses.setdefault(layer.weight, []).append(layer)
    for entry in plan.layers:
        gemm = gemms.get(entry.name)
        if gemm is None:
            found.append(
                Violation(code="unknown_layer", layer=entry.name, message=f"`{entry.name}` is not a GEMM of the model.")
            )
            continue
        if gemm.weight != entry.weight:
            found.append(
                Violation(
                    code="weight",
                    layer=entry.name,
                    message=f"`{entry.name}` uses weight `{gemm.weight}` in the model but `{entry.weight}` in the plan.",
                )
            )
            continue
        if not plan.factor.structural:
            continue  # S values come from a sensitivity report, not from the model
        members = uses.get(gemm.weight, [gemm]) if gemm.weight is not None else [gemm]
        expected = combined_factor_value(plan.factor, members)
        if input_free and entry.factor_value is not None and entry.factor_value != expected:
            found.append(
                Violation(
                    code="factor_value",
                    layer=entry.name,
                    message=f"`{entry.name}` records {plan.factor.value} = {entry.factor_value:g} but the model "
                    f"gives {expected:g}.",
                )
            )
    return found


def _strategy_violations(plan: BitPlan) -> list[Violation]:
    """Bits that the plan's own strategy cannot produce (a hand-edited or tampered plan)."""
    ranked = [layer for layer in plan.layers if not layer.kept]
    found = []
    allowed = {plan.uniform_bits} if plan.strategy is Strategy.U else set(plan.levels)
    for layer in ranked:
        if layer.bits not in allowed:
            found.append(
                Violation(
                    code="level",
                    layer=layer.name,
                    message=f"`{layer.name}` has {layer.bits} bits, not one of {sorted(allowed)} that a "
                    f"{plan.strategy.value} plan on {plan.levels} allows.",
                )
            )
    for layer in plan.layers:
        if layer.kept and layer.bits != plan.keep_bits:
            found.append(
                Violation(
                    code="level",
                    layer=layer.name,
                    message=f"kept layer `{layer.name}` has {layer.bits} bits, not keep_bits {plan.keep_bits}.",
                )
            )
    # the fill rule may part equal factor values, or raise a cheaper unit out of order, to use the budget
    # (docs/planning.md): only an unbudgeted or order-preserving plan promises the strategy's order
    promises_order = plan.budget is None or plan.budget_rule in (None, BudgetRule.order_preserving)
    if promises_order and plan.strategy in (Strategy.C_plus, Strategy.C_minus):
        direction = 1 if plan.strategy is Strategy.C_plus else -1
        ordered = sorted(
            (layer for layer in ranked if layer.factor_value is not None), key=lambda layer: layer.factor_value
        )
        for low, high in zip(ordered, ordered[1:]):
            tie = low.factor_value == high.factor_value
            if (tie and low.bits != high.bits) or (not tie and direction * (high.bits - low.bits) < 0):
                rule = "equal factor values need equal bits" if tie else (
                    "C+ needs bits non-decreasing in the factor" if direction > 0
                    else "C- needs bits non-increasing in the factor"
                )
                found.append(
                    Violation(
                        code="order",
                        layer=high.name,
                        message=f"`{low.name}` ({plan.factor.value} = {low.factor_value:g}, {low.bits} bits) and "
                        f"`{high.name}` ({high.factor_value:g}, {high.bits} bits): {rule}.",
                    )
                )
    return found


def _estimate_violations(stored: PlanEstimates, actual: PlanEstimates) -> list[Violation]:
    different = [
        name
        for name, value in actual.model_dump().items()
        if not _close(value, getattr(stored, name))
    ]
    if not different:
        return []
    return [
        Violation(
            code="estimates",
            message=f"stored estimates ({', '.join(different)}) do not match the per-layer bits; the file was "
            "edited after planning. Regenerate it with `bitplan plan`.",
        )
    ]


def _limit_violations(
    plan: BitPlan,
    estimates: PlanEstimates,
    max_mbit: float | None,
    max_avg_bits: float | None,
    min_bits: int | None,
    max_bitops: float | None,
) -> list[Violation]:
    found = []
    limits: list[tuple[str, float | None, float, Callable[[float], str]]] = [
        ("max_mbit", max_mbit, estimates.mbit, lambda v: f"{v:.6g} MBit"),
        ("max_avg_bits", max_avg_bits, estimates.avg_bits, lambda v: f"{v:.6g} avg bits"),
        ("max_bitops", max_bitops, float(estimates.bitops_forward), lambda v: f"{v:.6g} forward BitOPs"),
    ]
    if plan.budget is not None:
        own = {
            BudgetKind.avg_bits: estimates.avg_bits,
            BudgetKind.mbit: estimates.size_bits / BITS_PER_MBIT,
            BudgetKind.bitops: float(estimates.bitops_forward),
        }[plan.budget.kind]
        limits.append(("budget", plan.budget.value, own, lambda v: f"{v:.6g} ({plan.budget.kind.value})"))
    for code, limit, value, show in limits:
        if limit is not None and value > limit * (1 + RELATIVE_TOLERANCE):
            found.append(Violation(code=code, message=f"the plan needs {show(value)}, above the limit {show(limit)}."))
    if min_bits is not None:
        for layer in plan.layers:
            if layer.bits < min_bits:
                found.append(
                    Violation(
                        code="min_bits",
                        layer=layer.name,
                        message=f"`{layer.name}` has {layer.bits} bits, below --min-bits {min_bits}.",
                    )
                )
    return found


def _shape_violations(plan: BitPlan) -> list[Violation]:
    """Stored shapes that do not give the layer's stored params (k·n·groups) and MACs (m·k·n·groups; 0 for a lookup)."""
    found = []
    for entry in plan.layers:
        shape = entry.shape
        if shape is None:
            continue
        params = shape.k * shape.n * shape.groups if entry.weight is not None else 0
        macs = 0 if entry.op.lookup else shape.m * shape.k * shape.n * shape.groups
        if (params, macs) != (entry.params, entry.macs):
            found.append(
                Violation(
                    code="shape",
                    layer=entry.name,
                    message=f"`{entry.name}` records m, k, n, groups = {shape.m}, {shape.k}, {shape.n}, {shape.groups}, "
                    f"which give {params:,} params and {macs:,} MACs, but it records {entry.params:,} and "
                    f"{entry.macs:,}; the file was edited. Regenerate it with `bitplan plan`.",
                )
            )
    return found


def _accumulator_violations(plan: BitPlan, profile: ModelProfile | None, limit: int | None, file: Path) -> list[Violation]:
    """Stored accumulator widths that differ from recomputed ones, and layers wider than ``limit``.

    Widths are recomputed from the profile, or without one (``--no-model``) from each entry's stored
    shape; the limit is applied to recomputed widths only. Stored ones are compared where the
    recomputation used the plan's own input (dW's length is M). A limit that cannot be recomputed
    for some layer raises: a gate never passes on data it does not have.

    Raises:
        PlanError: ``limit`` without a profile, and some quantized layer stores no shape.
    """
    gemms = {layer.name: layer for layer in profile.layers} if profile is not None else {}
    same_input = profile is None or (profile.input_shapes == plan.input_shapes and profile.batch == plan.batch)
    precision = precision_of(plan)
    unknown = [entry.name for entry in plan.layers if profile is None and entry.shape is None and entry.bits < NOT_QUANTIZED_BITS]
    if limit is not None and unknown:
        shown = ", ".join(f"`{name}`" for name in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise PlanError(
            f"--max-accumulator-bits {limit} cannot be checked without the model: plan `{file}` stores no GEMM shape "
            f"(m, k, n) for {len(unknown)} quantized layer(s) ({shown}), so their accumulator widths cannot be "
            "recomputed (stored widths are not trusted). Drop --no-model to recompute them from the model, or "
            "regenerate the plan with `bitplan plan`, which stores the shapes."
        )
    found = []
    for entry in plan.layers:
        if profile is not None:
            gemm = gemms.get(entry.name)
            if gemm is None:
                continue  # reported as unknown_layer
            widths = layer_accumulator_bits(gemm, entry.bits, precision)
        elif entry.shape is not None:
            widths = shape_accumulator_bits(entry.shape, entry.bits, precision, lookup=entry.op.lookup)
        else:
            continue  # a 32-bit layer, or no limit asked: nothing to recompute
        if same_input and entry.accumulator_bits is not None and entry.accumulator_bits != widths:
            found.append(
                Violation(
                    code="accumulator_bits",
                    layer=entry.name,
                    message=f"`{entry.name}` records accumulator bits {entry.accumulator_bits.label()} but its "
                    f"{entry.bits} bits on this model give {widths.label()}. Regenerate it with `bitplan plan`.",
                )
            )
        widest = widths.widest()
        if limit is not None and widest is not None and widest > limit:
            found.append(
                Violation(
                    code="max_accumulator_bits",
                    layer=entry.name,
                    message=f"`{entry.name}` at {entry.bits} bits needs {widest}-bit integer accumulators "
                    f"(forward/dX/dW {widths.label()}), above --max-accumulator-bits {limit}.",
                )
            )
    return found


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= RELATIVE_TOLERANCE * max(1.0, abs(float(a)))
    return a == b
