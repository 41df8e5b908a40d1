"""Two plans side by side: each layer's bits in A and B, and how size and compute change from A to B.

Layers are matched by GEMM name. Every delta is B − A, so a negative ``mbit_delta`` means B is
smaller. Sizes and BitOPs are recomputed from each plan's layers (``plan_estimates``, defined in
docs/planning.md), never read from the stored ``estimates`` a hand edit may have left stale, and a
diff never re-profiles a model. Plans of two architectures are refused unless asked for: their
layers match by name only, and a row's params and MACs come from one plan (B's where B has it).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bitplan.errors import PlanError
from bitplan.plan.estimates import BITS_PER_MBIT, plan_estimates
from bitplan.plan.io import load_plan
from bitplan.plan.schema import BitPlan

PLAN_DIFF_SCHEMA_VERSION = 1


class LayerBitsDiff(BaseModel):
    """One GEMM's bits in both plans (null where a plan does not cover the layer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="GEMM name (module path), the key layers are matched by.")
    index_a: int | None = Field(description="0-based position in A's `layers` (null: not in A).")
    index_b: int | None = Field(description="0-based position in B's `layers` (null: not in B).")
    bits_a: int | None = Field(description="Bits in A (32 = not quantized; null: not in A).")
    bits_b: int | None = Field(description="Bits in B (32 = not quantized; null: not in B).")
    params: int = Field(ge=0, description="Weight elements of the GEMM (B's when B has the layer, else A's).")
    macs: int = Field(ge=0, description="Multiply-accumulates of the GEMM (from the same plan as params).")

    @property
    def changed(self) -> bool:
        return self.bits_a != self.bits_b


class PlanTotals(BaseModel):
    """A plan's size and compute, recomputed from its layers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    avg_bits: float
    size_bits: int = Field(description="Model size in bits.")
    mbit: float = Field(description="Model size in MBit (10^6 bits).")
    bitops_forward: int
    bitops_training: int


class PlanDiff(BaseModel):
    """``bitplan diff A.json B.json``: per-layer bits side by side and the size and BitOPs deltas (B − A)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = PLAN_DIFF_SCHEMA_VERSION
    a: str = Field(description="Label of plan A (its file name, or its model).")
    b: str = Field(description="Label of plan B.")
    same_architecture: bool = Field(description="Both plans carry the same fingerprint (GEMM names and shapes).")
    notes: list[str] = Field(default_factory=list, description="Why the comparison may mislead (other model, batch).")
    layers: list[LayerBitsDiff] = Field(description="A's layers in A's order, then layers only B has.")
    changed: int = Field(ge=0, description="Layers whose bits differ (including layers only one plan has).")
    totals_a: PlanTotals
    totals_b: PlanTotals
    avg_bits_delta: float
    mbit_delta: float
    bitops_forward_delta: int
    bitops_training_delta: int


def diff_plans(
    a: BitPlan,
    b: BitPlan,
    *,
    label_a: str | None = None,
    label_b: str | None = None,
    across_architectures: bool = False,
) -> PlanDiff:
    """Compare two plans layer by layer.

    Args:
        a, b: The plans; deltas are ``b − a``.
        label_a, label_b: How to name them in tables (default: each plan's model).
        across_architectures: Compare plans whose fingerprints differ (layers matched by name only).

    Returns:
        The per-layer bits of both plans and the size and BitOPs deltas.

    Raises:
        PlanError: The plans are for two architectures and ``across_architectures`` is False.

    Example:
        >>> from bitplan.plan import make_plan
        >>> from bitplan.plan.synthetic import resnet20_profile
        >>> low = make_plan(resnet20_profile(), factor="A", strategy="U", levels=[4])
        >>> high = make_plan(resnet20_profile(), factor="A", strategy="U", levels=[8])
        >>> result = diff_plans(low, high)
        >>> result.changed, result.layers[0].bits_a, result.layers[0].bits_b
        (20, 4, 8)
    """
    if a.fingerprint != b.fingerprint and not across_architectures:
        raise PlanError(
            f"{label_a or 'A'} (model `{a.model}`, fingerprint {a.fingerprint}) and {label_b or 'B'} (model `{b.model}`, "
            f"fingerprint {b.fingerprint}) are plans for two architectures: their layers match by name only. Pass "
            "--across-architectures to compare them anyway."
        )
    in_b = {layer.name: (index, layer) for index, layer in enumerate(b.layers)}
    in_a = {layer.name for layer in a.layers}
    rows = []
    for index, layer in enumerate(a.layers):
        index_b, other = in_b.get(layer.name, (None, None))
        rows.append(LayerBitsDiff(
            name=layer.name, index_a=index, index_b=index_b, bits_a=layer.bits,
            bits_b=None if other is None else other.bits, params=(other or layer).params, macs=(other or layer).macs,
        ))
    rows += [
        LayerBitsDiff(name=layer.name, index_a=None, index_b=index, bits_a=None, bits_b=layer.bits,
                      params=layer.params, macs=layer.macs)
        for index, layer in enumerate(b.layers) if layer.name not in in_a
    ]
    totals_a, totals_b = _totals(a), _totals(b)
    return PlanDiff(
        a=label_a or a.model,
        b=label_b or b.model,
        same_architecture=a.fingerprint == b.fingerprint,
        notes=_notes(a, b),
        layers=rows,
        changed=sum(row.changed for row in rows),
        totals_a=totals_a,
        totals_b=totals_b,
        avg_bits_delta=totals_b.avg_bits - totals_a.avg_bits,
        mbit_delta=(totals_b.size_bits - totals_a.size_bits) / BITS_PER_MBIT,
        bitops_forward_delta=totals_b.bitops_forward - totals_a.bitops_forward,
        bitops_training_delta=totals_b.bitops_training - totals_a.bitops_training,
    )


def diff_plan_files(path_a: str | os.PathLike, path_b: str | os.PathLike, *, across_architectures: bool = False) -> PlanDiff:
    """``diff_plans`` of two plan files, labelled by their file names.

    Raises:
        PlanError: A file is missing or not a valid plan, or they are for two architectures (unless
            ``across_architectures``).
    """
    a, b = Path(path_a), Path(path_b)
    return diff_plans(load_plan(a), load_plan(b), label_a=a.name, label_b=b.name, across_architectures=across_architectures)


def _totals(plan: BitPlan) -> PlanTotals:
    estimates = plan_estimates(plan)
    return PlanTotals(
        avg_bits=estimates.avg_bits, size_bits=estimates.size_bits, mbit=estimates.mbit,
        bitops_forward=estimates.bitops_forward, bitops_training=estimates.bitops_training,
    )


def _notes(a: BitPlan, b: BitPlan) -> list[str]:
    notes = []
    if a.fingerprint != b.fingerprint:
        notes.append(f"the plans are for different architectures ({a.model} vs {b.model}); layers are matched by name")
    if a.batch != b.batch:
        notes.append(f"the plans were profiled at batch {a.batch} and {b.batch}; BitOPs scale with the batch")
    precision_a = (a.activation_bits, a.gradient_bits, a.gradient_quant)
    precision_b = (b.activation_bits, b.gradient_bits, b.gradient_quant)
    if precision_a != precision_b:
        notes.append("activation/gradient precision differs, so BitOPs change even where weight bits do not")
    return notes
