"""``bitplan train``: train a model against a plan (or in fp32) for one or more seeds.

With no arguments it runs the embedded example (digits CNN, digits, C− A 4–8 plan). Every default
lives in ``bitplan.train.TrainConfig``; this command only forwards the options the user gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.cli.common import JsonFlag, console, guarded, write_or_print
from bitplan.choices import Device, Factor, ForwardQuant, GradQuant, Optimizer, Schedule, Strategy, WeightGranularity

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.train.records import SeedsSummary


def parse_range(text: str, option: str) -> tuple[int, int]:
    """``"4-8"`` → (4, 8); a single number ``"6"`` → (6, 6)."""
    parts = text.split("-")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise typer.BadParameter(f"`{option} {text}` must be LOW-HIGH bits, e.g. `{option} 4-8`")
    return (values[0], values[-1])


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2,3"`` → [0, 1, 2, 3]."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise typer.BadParameter(f"`--seeds {text}` must be non-negative integers joined by commas, e.g. `--seeds 0,1,2,3`")
    return seeds


@guarded
def train(
    model: Annotated[str | None, typer.Option("--model", help="Model spec (default zoo:digits_cnn).")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Data spec: digits, cifar10:PATH, text:PATH, synthetic, ...")] = None,
    plan: Annotated[Path | None, typer.Option("--plan", help="Plan file to train with.")] = None,
    factor: Annotated[Factor | None, typer.Option("--factor", help="Make a plan ranking layers by this factor.")] = None,
    strategy: Annotated[Strategy | None, typer.Option("--strategy", help="Strategy of the plan made with --factor.")] = None,
    bits: Annotated[str | None, typer.Option("--bits", help="Bit range of the plan made with --factor, e.g. 4-8.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option("--optimizer", help="Optimizer.")] = None,
    schedule: Annotated[Schedule | None, typer.Option("--schedule", help="Learning-rate schedule.")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Weight decay.")] = None,
    momentum: Annotated[float | None, typer.Option("--momentum", help="SGD momentum (AdamW beta1).")] = None,
    clip_grad_norm: Annotated[float | None, typer.Option("--clip-grad-norm", help="Clip the gradient norm.")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Seeds to run, e.g. 0,1,2,3.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/default).")] = None,
    device: Annotated[Device | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    act_bits: Annotated[int | None, typer.Option("--act-bits", help="Activation bits (32 = fp32); overrides the plan.")] = None,
    grad_bits: Annotated[int | None, typer.Option("--grad-bits", help="Gradient bits (32 = fp32); overrides the plan.")] = None,
    grad_quant: Annotated[GradQuant | None, typer.Option("--grad-quant", help="Gradient quantizer; overrides the plan.")] = None,
    weight_granularity: Annotated[WeightGranularity | None, typer.Option("--weight-granularity", help="Weight ranges per channel or tensor.")] = None,
    keep_last_fp32: Annotated[bool, typer.Option("--keep-last-fp32/--no-keep-last-fp32", help="Keep the last weight GEMM in fp32 (CPT).")] = False,
    forward_quant: Annotated[ForwardQuant | None, typer.Option("--forward-quant", help="uniform (min/max) or sawb (LUQ's 4-bit forward).")] = None,
    grad_samples: Annotated[int | None, typer.Option("--grad-samples", help="LUQ SMP: gradient samples averaged.")] = None,
    cyclic: Annotated[str | None, typer.Option("--cyclic", help="CPT cyclic precision MIN-MAX bits, e.g. 3-8.")] = None,
    cyclic_cycles: Annotated[int | None, typer.Option("--cyclic-cycles", help="Cycles of --cyclic over training.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads per process.")] = None,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue interrupted seeds from their checkpoints.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete the finished results in --out and train afresh.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", help="Launch this many processes with torchrun (DDP).")] = 1,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars on stderr.")] = True,
    json: JsonFlag = False,
) -> None:
    """Train with fake-quantized weights, activations and gradients (no plan = fp32 baseline)."""
    from bitplan.plan import load_plan
    from bitplan.train import Job, launch, make_config, train_seeds

    given = {
        "model": model, "data": data, "factor": factor, "strategy": strategy, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "schedule": schedule,
        "weight_decay": weight_decay, "momentum": momentum, "clip_grad_norm": clip_grad_norm, "out": out,
        "device": device, "activation_bits": act_bits, "gradient_bits": grad_bits, "gradient_quant": grad_quant,
        "weight_granularity": weight_granularity, "forward_quant": forward_quant, "gradient_samples": grad_samples,
        "cyclic_cycles": cyclic_cycles, "threads": threads,
        "bits": parse_range(bits, "--bits") if bits else None,
        "cyclic": parse_range(cyclic, "--cyclic") if cyclic else None,
        "plan": load_plan(plan) if plan is not None else None,
        "keep_last_fp32": keep_last_fp32 or None, "compile": compile or None,
    }
    given = {key: value for key, value in given.items() if value is not None}
    bare = not any(key in given for key in ("model", "data", "plan", "factor"))
    config = make_config(given, example=bare)
    seed_list = parse_seeds(seeds) if seeds else [config.seed]
    if nproc > 1:
        code = launch(Job(config=config, seeds=seed_list, resume=resume, overwrite=overwrite, progress=progress, print_json=json), nproc)
        raise typer.Exit(code)
    summary = train_seeds(config, seed_list, resume=resume, overwrite=overwrite, progress=progress)
    from bitplan.train.distributed import is_main_process

    if is_main_process():  # under torchrun every rank runs this command; rank 0 reports
        if json:
            write_or_print(summary.model_dump_json(indent=2), None)
        else:
            console.print(_table(summary))
    if summary.failed:
        raise typer.Exit(1)


def _table(summary: SeedsSummary) -> Table:

    from rich.table import Table

    table = Table(title=f"{summary.metric_name.value} over {len(summary.seeds)} seed(s) → {summary.out}")
    for column in ("seed", "status", summary.metric_name.value, "epochs", "message"):
        table.add_column(column)
    for seed in summary.seeds:
        value = "-" if seed.metric is None else f"{seed.metric:.2f}"
        table.add_row(str(seed.seed), seed.status, value, str(seed.epochs_done), seed.message)
    if summary.mean is not None:
        table.caption = f"mean {summary.mean:.3f}, variance {summary.variance:.4f} (population, over {summary.ok} ok seed(s))"
    return table


def register(app: typer.Typer) -> None:
    app.command("train")(train)
