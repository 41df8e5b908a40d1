"""Every choice and default bitplan offers, defined once: the schemas, the library and the CLI import them.

Torch-free and pydantic-free on purpose, so ``bitplan --help`` and ``bitplan check --no-model`` can show
and validate choices without importing anything heavy. Choices are string Enums (the CLI lists their
values); a default the library applies when the caller gives ``None`` lives here beside its choice.
"""

from __future__ import annotations

from enum import Enum

# ---------------------------------------------------------------------------------------------- bits

FULL_PRECISION_BITS = 32
"""Bit-width meaning "not quantized": every quantizer returns its input unchanged at 32 bits."""

MIN_BITS = 1
"""The narrowest width any option accepts."""

DEFAULT_BITS = (4, 8)
"""Bit range LOW-HIGH a plan spreads its layers over."""

DEFAULT_ACTIVATION_BITS = 8
DEFAULT_GRADIENT_BITS = 8
DEFAULT_KEEP_BITS = 8


# ------------------------------------------------------------------------------------------ planning


class Factor(str, Enum):
    """The profile statistic a plan ranks layers by (Section 4.1 of the seed paper, plus DPC's capacity)."""

    A = "A"
    F = "F"
    D = "D"
    capacity = "capacity"
    macs = "macs"
    S = "S"  # measured sensitivity, from a `bitplan sensitivity` report

    @property
    def field(self) -> str:
        """The ``GemmLayer`` field this factor reads (S has none: it comes from a sensitivity report)."""
        return _FACTOR_FIELDS[self]

    @property
    def structural(self) -> bool:
        """Read off the profile (A, F, D, capacity, macs), as opposed to measured (S)."""
        return self in _FACTOR_FIELDS


_FACTOR_FIELDS = {
    Factor.A: "accumulation",
    Factor.F: "weight_frequency",
    Factor.D: "depth",
    Factor.capacity: "params",
    Factor.macs: "macs",
}


class Strategy(str, Enum):
    """How bits follow the factor: one width, rising with it, falling with it, or random."""

    U = "U"
    C_plus = "C+"
    C_minus = "C-"
    R = "R"
    opt = "opt"  # the exact optimum of an objective under a budget (--objective), not a ranking rule

    @classmethod
    def paper(cls) -> list[Strategy]:
        """The four strategies of Section 4.1, which a grid compares."""
        return [cls.U, cls.C_plus, cls.C_minus, cls.R]


class Mapping(str, Enum):
    """How factor values become bit levels (definitions in docs/planning.md)."""

    rank = "rank"
    log = "log"
    quantile = "quantile"


class Preset(str, Enum):
    """Named planning rules from the literature."""

    dpc = "dpc"


class CapacityMeasure(str, Enum):
    """What DPC's "layer capacity" is taken to mean (the paper does not publish its measure)."""

    params = "params"
    macs = "macs"
    accumulation = "accumulation"


class BudgetKind(str, Enum):
    """What a budget bounds: mean bits per planned parameter, model size, or forward compute."""

    avg_bits = "avg_bits"
    mbit = "mbit"
    bitops = "bitops"


class Objective(str, Enum):
    """What ``--objective`` optimises exactly under a budget."""

    min_sensitivity = "min-sensitivity"


class BudgetRule(str, Enum):
    """How a factor × strategy plan meets a budget (docs/planning.md, "Size matching: budgets")."""

    fill = "fill"  # the strategy's mapping shifted to fit, then raised one level at a time until nothing fits
    order_preserving = "order-preserving"  # the seed paper's rule: the largest plan whose bits follow the order


DEFAULT_FACTOR = Factor.A
DEFAULT_BUDGET_RULE = BudgetRule.fill
DEFAULT_STRATEGY = Strategy.C_minus
DEFAULT_MAPPING = Mapping.rank
DEFAULT_CAPACITY = CapacityMeasure.params


# ------------------------------------------------------------------------------------- quantization


class GradQuant(str, Enum):
    """How the gradient at a GEMM output, dL/dY, is quantized in the backward pass.

    - ``sr``: per-tensor uniform min/max quantizer with stochastic rounding (CPT, Banner et al.).
    - ``luq``: LUQ's radix-2 FP4 with stochastic underflow and unbiased log rounding (Chmiel et al.).
    - ``none``: the gradient stays in full precision.
    """

    sr = "sr"
    luq = "luq"
    none = "none"


class WeightGranularity(str, Enum):
    """Which elements share one weight range: the whole tensor (Banner) or each output channel (CPT)."""

    tensor = "tensor"
    channel = "channel"


class ForwardQuant(str, Enum):
    """How weights and activations are quantized in the forward pass."""

    uniform = "uniform"
    sawb = "sawb"


class ZeroPoint(str, Enum):
    """The uniform grid: ``float`` keeps the range's minimum exactly (GEMMLOWP/CPT); ``integer`` widens
    the range to include 0 and rounds the zero point to an integer code (torchao, ONNX QDQ,
    compressed-tensors). Formulas in docs/quantizers.md."""

    float = "float"
    integer = "integer"


DEFAULT_GRADIENT_QUANT = GradQuant.sr
DEFAULT_WEIGHT_GRANULARITY = WeightGranularity.channel
DEFAULT_FORWARD_QUANT = ForwardQuant.uniform
DEFAULT_ZERO_POINT = ZeroPoint.float


# ------------------------------------------------------------------------------------------ training


class Optimizer(str, Enum):
    """The optimizer: SGD with (Nesterov-free) momentum, as in the paper's recipe, or AdamW."""

    sgd = "sgd"
    adamw = "adamw"


class Schedule(str, Enum):
    """Learning-rate schedule, stepped every batch.

    cosine: lr·½(1 + cos(π·t/T)); step: ×0.1 after each third of training; multistep: ×0.1 at 50%
    and 75% of training (SkipNet/CPT's 32k and 48k of 64k iterations); constant: lr throughout.
    """

    cosine = "cosine"
    step = "step"
    multistep = "multistep"
    constant = "constant"


class Device(str, Enum):
    """Where to run: ``auto`` picks CUDA when available."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DEFAULT_MODEL = "zoo:digits_cnn"
DEFAULT_DATA = "digits"


# --------------------------------------------------------------------------------------- sensitivity


class SensitivityMethod(str, Enum):
    """How sensitivity is measured (docs/sensitivity.md)."""

    fisher = "fisher"
    loss_delta = "loss-delta"
    sqnr = "sqnr"
    hessian = "hessian"


# ---------------------------------------------------------------------------------------------- study


class StudyFactor(str, Enum):
    """Which property of a GEMM a study sweeps."""

    accumulation = "accumulation"
    frequency = "frequency"
    depth = "depth"


class Distribution(str, Enum):
    """Where every matrix entry is drawn from (independently, for every operand and trial).

    normal: N(0, 1); uniform: U(−1, 1); relu: max(0, N(0, 1)), a rectified, non-zero-mean activation.
    """

    normal = "normal"
    uniform = "uniform"
    relu = "relu"


class QuantizedOperand(str, Enum):
    """Which operand of Y = X·W is quantized: left (X), right (W, the weight) or both."""

    left = "left"
    right = "right"
    both = "both"


class StudySweep(str, Enum):
    """What ``bitplan study`` sweeps: one factor, or all three."""

    accumulation = "accumulation"
    frequency = "frequency"
    depth = "depth"
    all = "all"


# -------------------------------------------------------------------------------------------- profile


class TracerChoice(str, Enum):
    """Which tracer profiles a torch model: ``auto`` records first and falls back to torch.export."""

    auto = "auto"
    record = "record"
    export = "export"


class RoutingChoice(str, Enum):
    """How mixture-of-experts GEMMs count tokens: the uniform expectation, or what a real router chose."""

    uniform = "uniform"
    measured = "measured"


# --------------------------------------------------------------------------------------------- pareto


class EvalMode(str, Enum):
    """How ``bitplan pareto`` scores a plan: applied to the trained weights, or fine-tuned with it first."""

    ptq = "ptq"  # post-training quantization: the plan applied to the checkpoint, evaluated
    qat = "qat"  # quantization-aware fine-tuning from the checkpoint for --epochs, per seed, then evaluated


DEFAULT_EVAL_MODE = EvalMode.ptq
DEFAULT_RANDOM_PLANS = 9
"""Random plans per budget: the best of 9 is the bar the issue's evidence sets (docs/pareto.md)."""


# --------------------------------------------------------------------------------------------- output


class OutputFormat(str, Enum):
    """How a command renders its result."""

    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


class ExportFormat(str, Enum):
    """Where an exported model goes (docs/export.md)."""

    packed = "packed"
    onnx = "onnx"
    torchao = "torchao"
    compressed_tensors = "compressed-tensors"
    modelopt = "modelopt"
