"""Planning units: what gets one bit-width.

A unit is one weight parameter (all the GEMMs and lookups that use it, e.g. a table tied to the output
head), with ``tie_fused`` one fused group of weights (q/k/v, gate/up: ``bitplan.plan.fused``), or, with
``include_activation_gemms``, one activation×activation GEMM. A shared weight gets one factor value
formed over its uses (docs/planning.md, "Shared weights"). A lookup has no reduction length, frequency
or GEMM depth, so factors A, F and D rank a table only through the GEMMs that share it; a table read
only by lookups is unranked under them (factor value None: docs/planning.md, "Lookups").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from bitplan.errors import PlanError
from bitplan.plan.fused import fused_groups
from bitplan.plan.schema import Factor
from bitplan.profile.schema import GemmLayer, ModelProfile

KEEP_FIRST = "first"
KEEP_LAST = "last"


@dataclass(frozen=True)
class PlanUnit:
    """One thing that gets one bit-width.

    Attributes:
        key: The weight FQN, or the GEMM name of an activation×activation GEMM.
        weight: The weight FQN, or None.
        layers: Every GEMM that uses the weight, in graph order.
        factor_value: The factor value the planner ranks (combined over uses); None when the factor
            cannot rank the unit (a table read only by lookups, under A, F or D).
        params: Weight elements, counted once.
        macs: MACs summed over uses.
        kept: Pinned by ``--keep``.
    """

    key: str
    weight: str | None
    layers: tuple[GemmLayer, ...]
    factor_value: float | None
    params: int
    macs: int
    kept: bool = False


UNRANKED_BY_LOOKUP = frozenset({Factor.A, Factor.F, Factor.D})
"""Factors a lookup has no value for: it sums nothing (A), its rows are read unevenly (F), it starts a path (D)."""


def combined_factor_value(
    factor: Factor, layers: Sequence[GemmLayer], sensitivity: Mapping[str, float] | None = None
) -> float | None:
    """The factor value of a unit used by ``layers``; None when ``factor`` cannot rank it.

    A shared weight is as sensitive as its most sensitive use, so accumulation and depth take the
    minimum; frequency and MACs add up over uses (every use touches every element); capacity is the
    weight's size, counted once. Under A, F and D only the GEMM uses count: a table read only by
    lookups has no value (None), one tied to an output head takes the head's.
    """
    if factor is Factor.S:
        return measured_sensitivity(layers, sensitivity)
    if factor in UNRANKED_BY_LOOKUP:
        layers = [layer for layer in layers if not layer.op.lookup]
        if not layers:
            return None
    field = factor.field
    if len(layers) == 1:
        return float(getattr(layers[0], field))
    return float(_COMBINE[factor]([getattr(layer, field) for layer in layers]))


_COMBINE = {Factor.A: min, Factor.D: min, Factor.capacity: max, Factor.F: sum, Factor.macs: sum}


def measured_sensitivity(layers: Sequence[GemmLayer], sensitivity: Mapping[str, float] | None) -> float:
    """Factor S of a unit: the measured sensitivity summed over the GEMMs that use its weight
    (the quantization noise of a shared weight reaches every use)."""
    if sensitivity is None:
        raise PlanError("--factor S needs measured sensitivities: pass --sensitivity sens.json (from `bitplan sensitivity`).")
    missing = [layer.name for layer in layers if layer.name not in sensitivity]
    if missing:
        raise PlanError(
            f"the sensitivity report has no entry for `{missing[0]}`; measure it on the same model "
            "(`bitplan sensitivity MODEL ...`) or plan by a structural factor."
        )
    return float(sum(sensitivity[layer.name] for layer in layers))


def collect_units(
    profile: ModelProfile,
    factor: Factor,
    *,
    include_activation_gemms: bool = False,
    keep: Sequence[str] = (),
    sensitivity: Mapping[str, float] | None = None,
    tie_fused: bool = False,
) -> tuple[list[PlanUnit], list[GemmLayer]]:
    """Group the profile's GEMMs into planning units.

    Args:
        profile: The model profile.
        factor: Which factor value each unit carries.
        include_activation_gemms: Also plan activation×activation GEMMs (one unit each).
        keep: Patterns pinning units: ``first``/``last`` (the first/last unit in graph order), or an
            ``fnmatch`` glob matched against GEMM names and weight FQNs.
        tie_fused: One unit per fused group (the weights a serving stack fuses get one width).

    Returns:
        The units in graph order of first use, and the GEMMs left out of the plan.

    Raises:
        PlanError: The profile has no weight GEMM, or a keep pattern matches nothing.
    """
    if not profile.weight_layers:
        raise PlanError(
            f"model `{profile.model}` has no GEMM with a weight operand, so there is nothing to plan. "
            "Check the model spec and input shape (`bitplan profile MODEL` lists its GEMMs)."
        )
    groups: dict[str, list[GemmLayer]] = {}
    left_out: list[GemmLayer] = []
    for layer in profile.layers:
        if layer.weight is not None:
            groups.setdefault(layer.weight, []).append(layer)
        elif include_activation_gemms:
            groups[layer.name] = [layer]
        else:
            left_out.append(layer)
    if tie_fused:
        groups = _tie_fused(groups)
    keys = list(groups)
    kept = _resolve_keep(keep, keys, groups)
    units = [
        PlanUnit(
            key=key,
            weight=members[0].weight,
            layers=tuple(members),
            factor_value=_unit_factor_value(factor, members, sensitivity),
            params=_unit_params(members),
            macs=members[0].macs if len(members) == 1 else sum(layer.macs for layer in members),
            kept=key in kept,
        )
        for key, members in groups.items()
    ]
    return units, left_out


def _unit_factor_value(
    factor: Factor, members: Sequence[GemmLayer], sensitivity: Mapping[str, float] | None
) -> float | None:
    """``combined_factor_value`` of each weight, then over the weights of a fused group: their sizes,
    MACs and measured sensitivities add up; accumulation, depth and frequency take the minimum (the
    most sensitive member decides, as for a shared weight)."""
    per_weight: dict[str | None, list[GemmLayer]] = {}
    for layer in members:
        per_weight.setdefault(layer.weight, []).append(layer)
    found = [combined_factor_value(factor, layers, sensitivity) for layers in per_weight.values()]
    values = [value for value in found if value is not None]
    if len(found) == 1 or not values:
        return found[0] if len(found) == 1 else None
    return float(sum(values) if factor in (Factor.capacity, Factor.macs, Factor.S) else min(values))


def _unit_params(members: Sequence[GemmLayer]) -> int:
    """Weight elements of a unit: each weight once (its largest use), summed over the unit's weights."""
    if len(members) == 1:
        return members[0].params
    per_weight: dict[str | None, int] = {}
    for layer in members:
        per_weight[layer.weight] = max(per_weight.get(layer.weight, 0), layer.params)
    return sum(per_weight.values())


def _tie_fused(groups: dict[str, list[GemmLayer]]) -> dict[str, list[GemmLayer]]:
    """Merge the weight groups of each fused group into the group of its first weight (graph order kept)."""
    weight_layers = [
        (layer.name, layer.k) for members in groups.values() for layer in members if layer.weight and not layer.op.lookup
    ]
    leader: dict[str, str] = {}
    for names in fused_groups(weight_layers):
        by_name = {layer.name: key for key, members in groups.items() for layer in members if layer.name in names}
        keys = list(dict.fromkeys(by_name[name] for name in names))
        leader.update({key: keys[0] for key in keys})
    merged: dict[str, list[GemmLayer]] = {}
    for key, members in groups.items():
        merged.setdefault(leader.get(key, key), []).extend(members)
    return merged


def _resolve_keep(patterns: Sequence[str], keys: list[str], groups: dict[str, list[GemmLayer]]) -> set[str]:
    kept: set[str] = set()
    for pattern in patterns:
        if pattern == KEEP_FIRST:
            matched = {keys[0]}
        elif pattern == KEEP_LAST:
            matched = {keys[-1]}
        else:
            matched = {
                key
                for key in keys
                if fnmatchcase(key, pattern) or any(fnmatchcase(layer.name, pattern) for layer in groups[key])
            }
        if not matched:
            raise PlanError(
                f"--keep pattern `{pattern}` matches no planned GEMM or weight. Use `first`, `last`, a GEMM "
                f"name such as `{groups[keys[0]][0].name}`, a weight FQN, or a glob such as `layer1.*`."
            )
        kept |= matched
    return kept
