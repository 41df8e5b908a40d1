"""What a Pareto sweep is (``ParetoConfig``) and what it wrote (``ParetoResult``, ``pareto.json``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bitplan.choices import DEFAULT_EVAL_MODE, DEFAULT_RANDOM_PLANS, Device, EvalMode
from bitplan.train import MetricName, TrainConfig
from bitplan.train.evaluate import DEFAULT_EVAL_BATCH, Evaluation

PARETO_SCHEMA_VERSION = 1


class ParetoConfig(BaseModel):
    """One sweep: methods × mean-bits budgets on one trained model, scored by PTQ or QAT.

    Example:
        >>> config = ParetoConfig(model="zoo:digits_cnn", data="digits", levels=[1, 2, 3, 4, 8],
        ...                       budgets=[1.5, 2], methods=["uniform", "random", "A:C-"], out=Path("runs/p"))
        >>> config.eval.value, config.random_plans
        ('ptq', 9)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="Model spec, as trained.")
    data: str = Field(description="Data spec; plans are scored on its test split.")
    checkpoint: Path | None = Field(default=None, description="The trained weights: a run or seed folder, or a checkpoint.pt; None = the model's own.")
    input_shape: str | None = None
    levels: list[int] = Field(min_length=1, description="The bit menu every plan chooses from, strictly increasing.")
    budgets: list[float] = Field(min_length=1, description="Mean-bits budgets (parameter-weighted over every planned weight).")
    methods: list[str] = Field(min_length=1, description="Method names (see bitplan.pareto.methods).")
    random_plans: int = Field(default=DEFAULT_RANDOM_PLANS, ge=1, description="Random plans per budget.")
    eval: EvalMode = Field(default=DEFAULT_EVAL_MODE, description="ptq: apply each plan to the checkpoint; qat: fine-tune first.")
    seeds: list[int] = Field(default=[0], min_length=1, description="Fine-tuning seeds (qat); ptq has no seed.")
    weight_only: bool = Field(default=False, description="Plans quantize weights only (activations and gradients fp32).")
    sensitivity_batches: int = Field(default=8, ge=1, description="Training batches each sensitivity measure averages over.")
    batch_size: int = Field(default=DEFAULT_EVAL_BATCH, ge=1, description="Test batch of PTQ evaluation.")
    device: Device = Device.auto
    train: TrainConfig | None = Field(
        default=None, description="qat: the fine-tuning recipe (epochs, lr, ...); its model, data, plan and seed are set per run."
    )
    out: Path = Field(default=Path("runs/pareto"), description="Sweep folder.")

    @model_validator(mode="after")
    def _consistent(self) -> ParetoConfig:
        if any(b <= a for a, b in zip(self.levels, self.levels[1:])):
            raise ValueError(f"`levels` {self.levels} must be strictly increasing")
        if not 1 <= self.levels[0] or self.levels[-1] > 8:
            raise ValueError(f"`levels` {self.levels} must lie within 1..8 bits")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"`seeds` {self.seeds} must be distinct and non-negative")
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"`budgets` {self.budgets} repeat a value")
        return self


class ParetoPoint(BaseModel):
    """One scored plan: a method's plan at a budget (one random plan, one fine-tuning seed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    budget: float = Field(description="The mean-bits budget the plan was made for.")
    seed: int | None = Field(description="qat: the fine-tuning seed; ptq: null.")
    plan_seed: int | None = Field(description="random: the plan's seed; otherwise null.")
    avg_bits: float = Field(description="Mean bits the plan reached: Σ params × bits / Σ params over every planned weight.")
    mbit: float = Field(description="Model size in MBit (10^6 bits), unplanned parameters at 32 bits.")
    bitops: int = Field(description="Forward BitOPs: Σ MACs × weight bits × activation bits.")
    metric: float | None = Field(description="Test accuracy (%) or perplexity; null when the point failed or is pending.")
    metric_name: MetricName
    loss: float | None = Field(description="Mean test cross-entropy per prediction.")
    correct: int | None = Field(default=None, description="Correct test predictions (for intervals over the test set).")
    predictions: int | None = Field(default=None, description="Test predictions scored.")
    status: str = Field(description="ok, failed (qat loss not finite) or pending.")
    plan: str = Field(description="The point's plan file, relative to the sweep folder.")
    run: str | None = Field(default=None, description="qat: the fine-tuning run folder, relative to the sweep folder.")


class SkippedPoint(BaseModel):
    """A (method, budget) without a plan, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    budget: float
    reason: str


class ParetoResult(BaseModel):
    """``pareto.json``: every point of a sweep and what it was run with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = PARETO_SCHEMA_VERSION
    config: ParetoConfig
    model: str = Field(description="The model spec with the options that size it to the data.")
    metric_name: MetricName
    baseline: Evaluation = Field(description="The checkpoint in full precision, no plan.")
    points: list[ParetoPoint]
    skipped: list[SkippedPoint] = Field(default_factory=list)
    bitplan_version: str

    def of(self, method: str) -> list[ParetoPoint]:
        """The points of one method, in budget order."""
        return sorted((p for p in self.points if p.method == method), key=lambda p: (p.budget, p.plan_seed or 0, p.seed or 0))
