"""The plan file: which bit-width every planned GEMM trains with, and why.

A plan is made once from a profile (``bitplan plan``), committed, checked in CI (``bitplan check``) and read
by training (``bitplan train``). Definitions of every field and estimate are in docs/planning.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from bitplan.choices import (
    DEFAULT_ACTIVATION_BITS,
    DEFAULT_GRADIENT_BITS,
    DEFAULT_GRADIENT_QUANT,
    DEFAULT_KEEP_BITS,
    DEFAULT_MAPPING,
    DEFAULT_WEIGHT_GRANULARITY,
    DEFAULT_ZERO_POINT,
    FULL_PRECISION_BITS,
    BudgetKind,
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
from bitplan.profile.schema import GemmOp

PLAN_SCHEMA_VERSION = 1
NOT_QUANTIZED_BITS = FULL_PRECISION_BITS


class Budget(BaseModel):
    """An upper bound the plan's size (or compute) must not exceed; the largest such plan is chosen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: BudgetKind
    value: float = Field(
        gt=0, allow_inf_nan=False, description="avg bits, MBit (10^6 bits), or forward BitOPs, by `kind`."
    )


class PlanSource(BaseModel):
    """Where a measured plan's numbers came from: method, data, checkpoint and the scores it used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = Field(description="How the bits were chosen, e.g. `recommended` or `fisher`.")
    measure: str = Field(description="What was measured, e.g. `kl per level`, `fisher at 4 bits`.")
    data: str | None = Field(default=None, description="The data spec measured on.")
    checkpoint: str | None = Field(default=None, description="The trained weights measured (null: the model's own).")
    calibration: str = Field(default="", description="Which batches were measured (split, count, size, seed).")
    scores: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Planning unit (weight FQN) -> bits -> measured score (larger = worse)."
    )
    measured: dict[str, float] = Field(
        default_factory=dict, description="Whole-model figures on the calibration batches, e.g. loss before and after refinement."
    )


class AccumulatorBits(BaseModel):
    """Worst-case signed integer accumulator width of a GEMM's three products (docs/accumulation.md).

    ``1 + bit_length(K × max|code_1| × max|code_2|)`` over each product's reduction length K; null where an
    operand stays fp32 (the product is a floating-point GEMM, no integer accumulator).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    forward: int | None = Field(description="Y = X·W: K products of weight and activation codes.")
    grad_input: int | None = Field(description="dX = dY·Wᵀ: N products of gradient and weight codes.")
    grad_weight: int | None = Field(description="dW = Xᵀ·dY: M products of activation and gradient codes.")

    def widest(self) -> int | None:
        """The largest of the three widths (None when all three are fp32)."""
        return max((b for b in (self.forward, self.grad_input, self.grad_weight) if b is not None), default=None)

    def label(self) -> str:
        """``forward/dX/dW`` as shown in tables and messages, ``fp32`` for a floating-point product."""
        return "/".join("fp32" if b is None else str(b) for b in (self.forward, self.grad_input, self.grad_weight))


class GemmShape(BaseModel):
    """The GEMM's shape for the profiled input: ``groups`` products X[m×k]·W[k×n] (docs/concepts.md).

    Stored so that a plan alone (``bitplan check --no-model``) recomputes its accumulator widths
    (reduction lengths K = k, N = n, M = m) and verifies its params (k·n·groups) and MACs (m·k·n·groups).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    m: int = Field(ge=1, description="Rows of X per group; dW's reduction length M.")
    k: int = Field(ge=1, description="The forward reduction length K.")
    n: int = Field(ge=1, description="Columns of W per group; dX's reduction length N.")
    groups: int = Field(ge=1, description="Independent GEMMs of this shape.")


class LayerPlan(BaseModel):
    """The bit-width of one GEMM's weight operand (or second operand, for activation×activation GEMMs), or
    of one lookup's table (op ``embedding``: no MACs, no accumulator, weight only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="GEMM name from the profile (module path).")
    weight: str | None = Field(description="Weight parameter FQN; null for an activation×activation GEMM.")
    op: GemmOp
    bits: int = Field(ge=1, le=NOT_QUANTIZED_BITS, description="Training bit-width; 32 means not quantized.")
    factor_value: float | None = Field(
        description="The factor value the planner ranked (null when kept, or when the factor cannot rank the layer: "
        "a table read only by lookups, under A, F or D)."
    )
    params: int = Field(ge=0, description="Weight elements of this GEMM (a shared weight repeats them).")
    macs: int = Field(ge=0, description="Multiply-accumulates of this GEMM for the profiled input.")
    kept: bool = Field(default=False, description="Pinned by --keep at the plan's keep_bits.")
    activation_elements: int | None = Field(
        default=None,
        ge=0,
        description="Elements of the GEMM's activation operands a training step keeps for backward, for the "
        "profiled batch (null in older plans); see estimates.activation_bytes_training.",
    )
    accumulator_bits: AccumulatorBits | None = Field(
        default=None, description="Integer accumulator widths at the plan's bits (absent in older plans)."
    )
    shape: GemmShape | None = Field(
        default=None, description="The GEMM's m, k, n, groups, from which checks recompute widths (absent in older plans)."
    )


class PlanEstimates(BaseModel):
    """Model size and compute of a plan, beside fp32 and the uniform plan at the same range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    planned_params: int = Field(description="Parameters of the planned weights, each shared weight once.")
    other_params: int = Field(description="Every other parameter (biases, norms, unplanned weights): 32 bits.")
    avg_bits: float = Field(description="Parameter-weighted mean bits over the weights the strategy assigns (not kept).")
    size_bits: int = Field(description="Σ planned params × bits + other params × 32.")
    mbit: float = Field(description="size_bits / 10^6.")
    mbit_fp32: float
    mbit_uniform: float
    size_ratio_fp32: float
    size_ratio_uniform: float
    bitops_forward: int = Field(description="Σ MACs × b_w × b_a over every GEMM of the profile.")
    bitops_training: int = Field(description="Forward plus dX (b_w·b_g) and dW (b_a·b_g) GEMMs.")
    bitops_forward_fp32: int
    bitops_training_fp32: int
    bitops_forward_uniform: int
    bitops_training_uniform: int
    bitops_forward_ratio_fp32: float
    bitops_training_ratio_fp32: float
    bitops_forward_ratio_uniform: float
    bitops_training_ratio_uniform: float
    histogram: dict[int, int] = Field(description="Bits -> number of planned GEMMs and lookups at that width.")
    activation_bytes_training: int | None = Field(
        default=None,
        description="Bytes the GEMMs' activation operands keep for backward in one training step: b-bit codes "
        "at the activation bits (fp32 for GEMMs at 32 bits); null when a layer lacks activation_elements.",
    )
    activation_bytes_training_fp32: int | None = Field(default=None, description="The same, every GEMM in fp32.")
    activation_bytes_training_ratio_fp32: float | None = None
    activation_bytes_by_layer: dict[str, int] | None = Field(
        default=None, description="activation_bytes_training per planned GEMM (layer name -> bytes)."
    )


class BitPlan(BaseModel):
    """A per-layer bit-width plan for one model architecture (identified by its fingerprint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = PLAN_SCHEMA_VERSION
    model: str = Field(description="The model spec that was profiled.")
    fingerprint: str = Field(description="ModelProfile.fingerprint(): hash of GEMM names and weight shapes.")
    batch: int = Field(ge=1, description="Batch of the profiled input (MACs and F are counted for it).")
    input_shapes: list[list[int]] = Field(description="Shapes of the profiled inputs.")
    factor: Factor
    strategy: Strategy
    levels: list[int] = Field(min_length=1, description="Allowed bit levels, strictly increasing.")
    uniform_bits: int = Field(ge=1, le=NOT_QUANTIZED_BITS, description="Width of U (and of the reference plan).")
    seed: int = 0
    mapping: Mapping = DEFAULT_MAPPING
    preset: Preset | None = None
    budget: Budget | None = None
    keep: list[str] = Field(default_factory=list, description="--keep patterns (first, last, names, globs).")
    keep_bits: int = Field(default=DEFAULT_KEEP_BITS, ge=1, le=NOT_QUANTIZED_BITS)
    include_activation_gemms: bool = False
    activation_bits: int | None = Field(default=DEFAULT_ACTIVATION_BITS, ge=1, le=NOT_QUANTIZED_BITS)
    gradient_bits: int | None = Field(default=DEFAULT_GRADIENT_BITS, ge=1, le=NOT_QUANTIZED_BITS)
    gradient_quant: GradQuant = DEFAULT_GRADIENT_QUANT
    weight_granularity: WeightGranularity = DEFAULT_WEIGHT_GRANULARITY
    zero_point: ZeroPoint = Field(
        default=DEFAULT_ZERO_POINT,
        description="Grid of every weight and activation quantizer: float (zero point = range minimum) or "
        "integer (range widened to include 0, integer zero point; docs/quantizers.md).",
    )
    total_params: int = Field(ge=0, description="All parameters of the model, each counted once.")
    unplanned_macs: int = Field(default=0, ge=0, description="MACs of GEMMs the plan leaves out (run at 32×32).")
    sensitivity_method: str | None = Field(default=None, description="Method of the sensitivity report (factor S).")
    sensitivity_bits: int | None = Field(default=None, description="Bits the sensitivity was measured at.")
    objective: Objective | None = Field(
        default=None, description="min-sensitivity: Σ s·((2^b0−1)/(2^b−1))² minimised exactly under the budget."
    )
    objective_value: float | None = Field(default=None, description="The objective at the chosen bits.")
    budget_rule: BudgetRule | None = Field(
        default=None, description="How a factor × strategy plan met its budget: fill or order-preserving (null: no budget)."
    )
    budget_reached: float | None = Field(
        default=None, description="The plan's own value in the budget's unit (avg bits, MBit or forward BitOPs), ≤ budget."
    )
    source: PlanSource | None = Field(default=None, description="Measured plans: method, data, checkpoint and scores.")
    layers: list[LayerPlan] = Field(min_length=1, description="One entry per planned GEMM and lookup (at least one).")
    estimates: PlanEstimates

    @model_validator(mode="after")
    def _consistent(self) -> BitPlan:
        if self.schema_version != PLAN_SCHEMA_VERSION:
            raise ValueError(f"`schema_version` {self.schema_version} is not {PLAN_SCHEMA_VERSION}")
        if any(low >= high for low, high in zip(self.levels, self.levels[1:])):
            raise ValueError(f"`levels` {self.levels} must be strictly increasing")
        if not all(1 <= level <= NOT_QUANTIZED_BITS for level in self.levels):
            raise ValueError(f"`levels` {self.levels} must lie within 1..{NOT_QUANTIZED_BITS}")
        names: set[str] = set()
        weight_bits: dict[str, int] = {}
        for layer in self.layers:
            if layer.name in names:
                raise ValueError(f"layer `{layer.name}` appears twice in `layers`")
            names.add(layer.name)
            if layer.weight is not None and weight_bits.setdefault(layer.weight, layer.bits) != layer.bits:
                raise ValueError(
                    f"weight `{layer.weight}` is shared by several GEMMs with different bits; a weight has one width"
                )
        return self

    @model_serializer(mode="wrap")
    def _omit_default_grid(self, handler: SerializerFunctionWrapHandler) -> dict:
        """Leave ``zero_point`` out when it is the default float grid, and the budget and source records
        when null: plan files made before those fields existed stay byte for byte what a fresh plan writes."""
        data = handler(self)
        if self.zero_point is ZeroPoint.float:
            data.pop("zero_point", None)
        for optional in ("budget_rule", "budget_reached", "source"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data

    def bits_by_weight(self) -> dict[str, int]:
        """Weight FQN -> bits, for every planned weight (a shared weight appears once)."""
        return {layer.weight: layer.bits for layer in self.layers if layer.weight is not None}

    def bits_by_name(self) -> dict[str, int]:
        """GEMM name -> bits, including activation×activation GEMMs when the plan covers them."""
        return {layer.name: layer.bits for layer in self.layers}
