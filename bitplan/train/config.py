"""What one training run does: a frozen, validated ``TrainConfig``; its defaults live here, once.

``TrainConfig()`` with no arguments is the embedded example ``bitplan train`` runs with no
arguments: the digits CNN on scikit-learn's digits with a C− A 4–8 plan, under two minutes on two
CPU cores. Any other model runs in full precision unless it is given a plan (``plan``) or a recipe
to make one (``factor``/``strategy``/``bits``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bitplan.choices import (
    DEFAULT_BITS,
    DEFAULT_DATA,
    DEFAULT_FACTOR,
    DEFAULT_FORWARD_QUANT,
    DEFAULT_MODEL,
    DEFAULT_STRATEGY,
    FULL_PRECISION_BITS,
    Device,
    Factor,
    ForwardQuant,
    GradQuant,
    Optimizer,
    Schedule,
    Strategy,
    WeightGranularity,
)
from bitplan.plan import BitPlan

MAX_BITS = FULL_PRECISION_BITS


class TrainConfig(BaseModel):
    """One training run (one seed). ``train_seeds`` runs it for several seeds.

    Quantization: ``plan`` (or a plan made from ``factor``/``strategy``/``bits``) gives each GEMM's
    weight bits; ``activation_bits``, ``gradient_bits``, ``gradient_quant`` and ``weight_granularity``
    override the plan's settings when given (32 bits = keep in full precision). No plan and no factor
    = full-precision baseline.

    Example:
        >>> TrainConfig(model="zoo:resnet20", data="synthetic", epochs=1).plan is None
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(default=DEFAULT_MODEL, description="Model spec (zoo:NAME, file.py:factory, ...).")
    input_shape: str | None = Field(
        default=None, description="Example input for specs that need one, e.g. 1x3x32x32 (see `bitplan profile --input-shape`)."
    )
    data: str = Field(default=DEFAULT_DATA, description="Data spec (digits, cifar10:PATH, text:PATH, synthetic).")
    plan: BitPlan | None = Field(default=None, description="The plan to train with; None = see `factor`.")
    factor: Factor | None = Field(default=None, description="Make a plan by this factor when `plan` is None.")
    strategy: Strategy = Field(default=DEFAULT_STRATEGY, description="Strategy of the plan made from `factor`.")
    bits: tuple[int, int] = Field(default=DEFAULT_BITS, description="Bit range of the plan made from `factor`.")
    init: Path | None = Field(
        default=None,
        description="Start from these weights (a `bitplan train` run or seed folder, its checkpoint.pt, or a plain "
        "state_dict) instead of a "
        "random initialisation: fine-tuning, e.g. quantization-aware training of a trained model.",
    )
    epochs: int = Field(default=6, ge=1, description="Passes over the training split.")
    batch_size: int = Field(default=32, ge=1, description="Global batch (split across ranks when distributed).")
    lr: float = Field(default=0.05, gt=0, description="Peak learning rate.")
    optimizer: Optimizer = Optimizer.sgd
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum (AdamW: beta1).")
    schedule: Schedule = Schedule.cosine
    weight_decay: float = Field(default=5e-4, ge=0)
    clip_grad_norm: float | None = Field(default=None, gt=0, description="Clip the gradient norm (LSTMs).")
    seed: int = Field(default=0, ge=0, description="Seed of initialisation, shuffling, augmentation and SR.")
    device: Device = Device.auto
    activation_bits: int | None = Field(default=None, ge=1, le=MAX_BITS, description="Override; 32 = fp32.")
    gradient_bits: int | None = Field(default=None, ge=1, le=MAX_BITS, description="Override; 32 = fp32.")
    gradient_quant: GradQuant | None = Field(default=None, description="Override the plan's quantizer.")
    weight_granularity: WeightGranularity | None = Field(default=None, description="Override the plan's granularity.")
    keep_last_fp32: bool = Field(default=False, description="Train the plan's last weight GEMM in fp32 (CPT).")
    forward_quant: ForwardQuant = Field(default=DEFAULT_FORWARD_QUANT, description="uniform, or sawb (LUQ).")
    gradient_samples: int = Field(default=1, ge=1, le=16, description="LUQ SMP: gradient samples averaged.")
    cyclic: tuple[int, int] | None = Field(default=None, description="CPT cyclic precision: (min, max) bits.")
    cyclic_cycles: int = Field(default=8, ge=1, description="Cosine cycles of the cyclic schedule over training.")
    compile: bool = Field(default=False, description="torch.compile the model.")
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads (None: torch default).")
    out: Path = Field(default=Path("runs/default"), description="Run directory.")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        low, high = self.bits
        if not 1 <= low <= high <= MAX_BITS:
            raise ValueError(f"`bits` {self.bits} must be (low, high) with 1 <= low <= high <= {MAX_BITS}")
        if self.cyclic is not None and not 1 <= self.cyclic[0] <= self.cyclic[1] <= MAX_BITS:
            raise ValueError(f"`cyclic` {self.cyclic} must be (min, max) with 1 <= min <= max <= {MAX_BITS}")
        if self.plan is not None and self.factor is not None:
            raise ValueError("give either `plan` or `factor` (a recipe to make one), not both")
        return self

    @property
    def quantized(self) -> bool:
        """Whether this run trains against a plan (given or made)."""
        return self.plan is not None or self.factor is not None

    @classmethod
    def example(cls, **overrides: object) -> TrainConfig:
        """The embedded default: digits CNN, digits, C− A 4–8 plan (what `bitplan train` runs bare).

        One thread: the model is tiny, and a second thread only adds synchronisation (and stalls
        badly when the cores are shared).
        """
        values: dict[str, object] = {
            "factor": DEFAULT_FACTOR, "strategy": DEFAULT_STRATEGY, "bits": DEFAULT_BITS, "threads": 1,
        }
        values.update(overrides)
        return cls(**values)


def make_config(options: dict[str, object], *, example: bool = False) -> TrainConfig:
    """A ``TrainConfig`` from user options, with one clear error for invalid ones.

    Args:
        options: Field values the user gave (absent fields keep their defaults).
        example: Start from ``TrainConfig.example()`` instead of the plain defaults.

    Raises:
        TrainingError: An option is invalid; the message names each offending field.
    """
    from pydantic import ValidationError

    from bitplan.errors import TrainingError

    try:
        return TrainConfig.example(**options) if example else TrainConfig(**options)
    except ValidationError as error:
        problems = "; ".join(
            f"`{'.'.join(str(part) for part in item['loc']) or 'options'}`: {item['msg']}" for item in error.errors()
        )
        raise TrainingError(f"invalid training options: {problems}. Fix them and run again.") from None
