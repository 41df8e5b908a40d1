"""The CLI's vocabulary: one option per concept, defined once, shared by every command.

Every option defaults to ``None`` so the library decides the default (``bitplan.choices`` and the
config models). Old spellings stay one release as hidden aliases (``ALIASES``); option groups that
several commands take (the training recipe) are added to a command's signature by ``cli_command``,
so they are written once here rather than pasted into each command.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from bitplan.choices import (
    Device,
    ForwardQuant,
    GradQuant,
    Mapping,
    Optimizer,
    OutputFormat,
    Parallel,
    RoutingChoice,
    Schedule,
    WeightGranularity,
)

MODEL_PANEL = "Model and data"
PLAN_PANEL = "Plan"
BUDGET_PANEL = "Budget and objective"
QUANT_PANEL = "Quantization"
TRAINING_PANEL = "Training"
DISTRIBUTED_PANEL = "Processes and memory"
OUTPUT_PANEL = "Output"

SPEC_HELP = "zoo:NAME[?k=v], file.py:factory, pkg.module:factory, torchvision:NAME, hf:TYPE or model.onnx."

# ------------------------------------------------------------------------------------ model and data
Model = Annotated[str, typer.Argument(metavar="MODEL", help=f"Model spec: {SPEC_HELP}", show_default=False)]
OptionalModel = Annotated[
    str | None, typer.Argument(metavar="MODEL", help=f"Model spec (default zoo:digits_cnn): {SPEC_HELP}", show_default=False)
]
InputShape = Annotated[
    str | None,
    typer.Option("--input-shape", help="Example input, e.g. 1x3x32x32 or 1x128:int64 (several joined by ',').", rich_help_panel=MODEL_PANEL),
]
Batch = Annotated[
    int | None, typer.Option("--batch", min=1, help="Batch size: leading dimension of the input.", rich_help_panel=MODEL_PANEL)
]
Data = Annotated[
    str | None,
    typer.Option("--data", help="Data spec: digits, cifar10:PATH, imagefolder:PATH, text:PATH, synthetic.", rich_help_panel=MODEL_PANEL),
]
Routing = Annotated[
    RoutingChoice,
    typer.Option(
        "--routing",
        help="Mixture-of-experts tokens: uniform (expected share per expert) or measured (the router's real choice; real weights, --data inputs).",
        rich_help_panel=MODEL_PANEL,
    ),
]
Checkpoint = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="A `bitplan train` run folder, seed folder or checkpoint.pt (default: the model's own weights).", rich_help_panel=MODEL_PANEL),
]
Device_ = Annotated[Device | None, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.", rich_help_panel=MODEL_PANEL)]
Threads = Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads per process.", rich_help_panel=MODEL_PANEL)]

# ---------------------------------------------------------------------------------------------- plan
WeightOnly = Annotated[
    bool,
    typer.Option("--weight-only/--no-weight-only", help="Quantize weights only: activations and gradients stay fp32.", rich_help_panel=PLAN_PANEL),
]
PlanFile = Annotated[Path | None, typer.Option("--plan", help="A plan file (from `bitplan plan`).", rich_help_panel=PLAN_PANEL)]
Seeds = Annotated[str | None, typer.Option("--seeds", help="Seeds, comma-separated, e.g. 0,1,2,3.", rich_help_panel=TRAINING_PANEL)]
Levels = Annotated[
    str | None, typer.Option("--levels", help="Explicit bit levels instead of --bits, e.g. 8,10,12,14,16.", rich_help_panel=PLAN_PANEL)
]
UniformBits = Annotated[
    int | None, typer.Option("--uniform-bits", help="Width of U and of the reference plan (default: middle of the range).", rich_help_panel=PLAN_PANEL)
]
MappingOption = Annotated[Mapping | None, typer.Option("--mapping", help="How factor values become bit levels.", rich_help_panel=PLAN_PANEL)]
PlanSeed = Annotated[int | None, typer.Option("--plan-seed", min=0, help="Seed of R's random plan (default 0).", rich_help_panel=PLAN_PANEL)]
Bits = Annotated[str | None, typer.Option("--bits", help="Bit range LOW-HIGH, e.g. 4-8 (default 4-8).", rich_help_panel=PLAN_PANEL)]

# -------------------------------------------------------------------------------------- quantization
ActivationBits = Annotated[
    int | None, typer.Option("--activation-bits", help="Activation bits (32 = full precision).", rich_help_panel=QUANT_PANEL)
]
GradientBits = Annotated[
    int | None, typer.Option("--gradient-bits", help="Gradient bits (32 = full precision).", rich_help_panel=QUANT_PANEL)
]
GradientQuant = Annotated[GradQuant | None, typer.Option("--gradient-quant", help="Gradient quantizer.", rich_help_panel=QUANT_PANEL)]
WeightGranularity_ = Annotated[
    WeightGranularity | None,
    typer.Option("--weight-granularity", help="Weight ranges per output channel or per tensor.", rich_help_panel=QUANT_PANEL),
]

# -------------------------------------------------------------------------------------------- output
TrustModelSpec = Annotated[
    bool,
    typer.Option(
        "--trust-model-spec",
        help="Run a code model spec (file.py:factory) read from a plan or checkpoint; only for files you trust.",
        rich_help_panel=MODEL_PANEL,
    ),
]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Write the result here (atomically).", rich_help_panel=OUTPUT_PANEL)]
Format = Annotated[
    OutputFormat | None, typer.Option("--format", "-f", help="table (default), json, csv or md.", rich_help_panel=OUTPUT_PANEL)
]
Json = Annotated[bool, typer.Option("--json", help="Short for --format json.", rich_help_panel=OUTPUT_PANEL)]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.", rich_help_panel=OUTPUT_PANEL)]
Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.", rich_help_panel=OUTPUT_PANEL)]


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2,3"`` → [0, 1, 2, 3]: distinct non-negative integers."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise typer.BadParameter(f"`--seeds {text}` must be distinct non-negative integers joined by commas, e.g. `--seeds 0,1,2,3`")
    return seeds


def resolve_format(format: OutputFormat | None, json: bool) -> OutputFormat:
    """``--json`` is ``--format json``; asking for both json and another format is a usage error."""
    if json and format not in (None, OutputFormat.json):
        raise typer.BadParameter(f"`--json` and `--format {format.value}` disagree; give one of them.")
    return OutputFormat.json if json else (format or OutputFormat.table)


# --------------------------------------------------------------------------------- option groups


@dataclass(frozen=True)
class OptionGroup:
    """Options several commands take, collected into one dict argument named ``name``.

    ``options`` maps a parameter (and library field) name to its ``Annotated`` type; a value the
    user did not give (``None``) is left out of the dict, so the library's default applies.
    """

    name: str
    options: dict[str, Any]


TRAINING = OptionGroup(
    "training",
    {
        "epochs": Annotated[int | None, typer.Option("--epochs", min=1, help="Passes over the training split.", rich_help_panel=TRAINING_PANEL)],
        "batch_size": Annotated[int | None, typer.Option("--batch", min=1, help="Global batch size.", rich_help_panel=TRAINING_PANEL)],
        "lr": Annotated[float | None, typer.Option("--lr", help="Peak learning rate.", rich_help_panel=TRAINING_PANEL)],
        "optimizer": Annotated[Optimizer | None, typer.Option("--optimizer", help="sgd or adamw.", rich_help_panel=TRAINING_PANEL)],
        "schedule": Annotated[Schedule | None, typer.Option("--schedule", help="Learning-rate schedule.", rich_help_panel=TRAINING_PANEL)],
        "weight_decay": Annotated[float | None, typer.Option("--weight-decay", help="Weight decay.", rich_help_panel=TRAINING_PANEL)],
        "momentum": Annotated[float | None, typer.Option("--momentum", help="SGD momentum (AdamW beta1).", rich_help_panel=TRAINING_PANEL)],
        "clip_grad_norm": Annotated[float | None, typer.Option("--clip-grad-norm", help="Clip the gradient norm.", rich_help_panel=TRAINING_PANEL)],
        "device": Device_,
        "threads": Threads,
        "activation_bits": ActivationBits,
        "gradient_bits": GradientBits,
        "gradient_quant": GradientQuant,
        "weight_granularity": WeightGranularity_,
        "forward_quant": Annotated[
            ForwardQuant | None, typer.Option("--forward-quant", help="uniform (min/max) or sawb (LUQ's 4-bit forward).", rich_help_panel=QUANT_PANEL)
        ],
        "gradient_samples": Annotated[
            int | None, typer.Option("--gradient-samples", min=1, help="LUQ SMP: gradient samples averaged.", rich_help_panel=QUANT_PANEL)
        ],
        "parallel": Annotated[
            Parallel | None,
            typer.Option("--parallel", help="With --nproc: ddp (replicas) or fsdp (FSDP2, sharded weights).", rich_help_panel=DISTRIBUTED_PANEL),
        ],
        "activation_checkpointing": Annotated[
            bool | None,
            typer.Option(
                "--activation-checkpointing/--no-activation-checkpointing",
                help="Recompute each block's activations in backward (less memory).", rich_help_panel=DISTRIBUTED_PANEL, show_default=False,
            ),
        ],
        "keep_last_fp32": Annotated[
            bool | None,
            typer.Option("--keep-last-fp32/--no-keep-last-fp32", help="Keep the last weight GEMM in fp32 (CPT).", rich_help_panel=QUANT_PANEL, show_default=False),
        ],
    },
)
"""The training recipe of ``bitplan train`` and ``bitplan compare``: ``TrainConfig`` field -> option."""

LEVELS = OptionGroup(
    "widths",
    {"bits": Bits, "levels": Levels, "uniform_bits": UniformBits, "mapping": MappingOption, "plan_seed": PlanSeed},
)
"""Which widths a plan may use and how factor values map onto them: ``bitplan plan`` and ``bitplan compare``."""


def parse_levels_group(given: dict[str, Any]) -> dict[str, Any]:
    """The ``LEVELS`` options the user gave, parsed (``"4-8"`` -> (4, 8), ``"8,12,16"`` -> [8, 12, 16])."""
    from bitplan.errors import PlanError
    from bitplan.plan.planner import parse_bits_range, parse_levels

    if "bits" in given and "levels" in given:
        raise PlanError("give either --bits LOW-HIGH or --levels A,B,C, not both.")
    parsed = dict(given)
    if "bits" in parsed:
        parsed["bits"] = parse_bits_range(parsed["bits"])
    if "levels" in parsed:
        parsed["levels"] = parse_levels(parsed["levels"])
    return parsed


ALIAS_OPTIONS: dict[str, Any] = {
    "act_bits": Annotated[int | None, typer.Option("--act-bits", hidden=True)],
    "grad_bits": Annotated[int | None, typer.Option("--grad-bits", hidden=True)],
    "grad_quant": Annotated[GradQuant | None, typer.Option("--grad-quant", hidden=True)],
    "grad_samples": Annotated[int | None, typer.Option("--grad-samples", hidden=True)],
    "batch_size_alias": Annotated[int | None, typer.Option("--batch-size", hidden=True)],
    "out": Annotated[Path | None, typer.Option("--out", hidden=True)],
    "model_option": Annotated[str | None, typer.Option("--model", hidden=True)],
    "seed_alias": Annotated[int | None, typer.Option("--seed", hidden=True)],
    "per_channel": Annotated[bool | None, typer.Option("--per-channel/--per-tensor", hidden=True)],
}
"""Spellings of release 0.1, accepted for one release and not shown in ``--help``."""

ALIAS_TARGETS = {
    "act_bits": "activation_bits",
    "grad_bits": "gradient_bits",
    "grad_quant": "gradient_quant",
    "grad_samples": "gradient_samples",
    "batch_size_alias": "batch_size",
    "out": "output",
    "model_option": "model",
    "seed_alias": "plan_seed",
    "per_channel": "weight_granularity",
}
"""Old spelling's parameter -> the parameter (or group field) it now means."""

ALIAS_VALUES: dict[str, Callable[[Any], Any]] = {
    "per_channel": lambda per_channel: WeightGranularity.channel if per_channel else WeightGranularity.tensor,
}
"""How an old spelling's value becomes the new option's value, where they differ."""


def cli_command(*groups: OptionGroup, aliases: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a function a bitplan command: shared option groups, old spellings, ``--debug``, error boundary.

    Each group's options are added to the signature and passed to the command as one dict named
    after the group, holding only the values the user gave. Old spellings (``aliases``, keys of
    ``ALIAS_OPTIONS``) are folded into the parameter or group field they now mean; the new spelling
    wins when both are given. Uses only ``inspect``: typer reads the resulting signature as written.

    Example:
        >>> @cli_command(TRAINING, aliases=("act_bits",))
        ... def train(model: str, training: dict) -> dict:
        ...     return training
        >>> given = {name: None for name in TRAINING.options}
        >>> train("zoo:x", **{**given, "epochs": 2}, act_bits=4, debug=False)
        {'epochs': 2, 'activation_bits': 4}
    """
    from bitplan.cli.common import DebugState, guarded

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        extra = {name: annotation for group in groups for name, annotation in group.options.items()}
        extra.update({name: ALIAS_OPTIONS[name] for name in aliases})
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=None) for name, kind in extra.items()]
        added.append(inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, annotation=Debug, default=False))
        own = [parameter for parameter in signature.parameters.values() if parameter.name not in {g.name for g in groups}]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs.pop("debug", False):
                DebugState.enabled = True
            old = {name: kwargs.pop(name, None) for name in aliases}
            for group in groups:
                kwargs[group.name] = {name: kwargs.pop(name, None) for name in group.options}
            for name, value in old.items():
                if value is not None:
                    _fold(ALIAS_TARGETS[name], ALIAS_VALUES.get(name, lambda v: v)(value), kwargs, groups)
            for group in groups:
                kwargs[group.name] = {name: value for name, value in kwargs[group.name].items() if value is not None}
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=_ordered(own + added))  # type: ignore[attr-defined]
        return guarded(wrapper)

    return decorate


def _fold(target: str, value: Any, kwargs: dict[str, Any], groups: tuple[OptionGroup, ...]) -> None:
    """Give ``target`` (a parameter, or a field of a group) the old spelling's value unless it has one."""
    holder = kwargs if target in kwargs else next(kwargs[g.name] for g in groups if target in g.options)
    if holder.get(target) is None:
        holder[target] = value


def _ordered(parameters: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Positional parameters first, then keyword-only, as ``inspect.Signature`` requires."""
    positional = [p for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return positional + keyword
