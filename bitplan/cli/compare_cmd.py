"""``bitplan compare``: the paper's experiment grid — every factor × strategy plan, trained for every seed.

Every default lives in ``bitplan.compare.GridConfig`` and ``bitplan.train.TrainConfig``; this
command forwards only the options the user gave, calls ``run_grid`` and prints Table 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.cli.common import JsonFlag, console, guarded, write_or_print
from bitplan.choices import Device, Factor, ForwardQuant, GradQuant, Mapping, Optimizer, Schedule, Strategy, WeightGranularity

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.compare import GridResult


def parse_choices(text: str, kind: type, option: str) -> list:
    """``"U,C+,C-"`` -> [Strategy.U, ...]; a Unicode minus (C−) is read as ``-``."""
    names = [part.strip().replace("−", "-") for part in text.split(",") if part.strip()]
    choices = ",".join(member.value for member in kind)
    try:
        values = [kind(name) for name in names]
    except ValueError:
        values = []
    if not values:
        raise typer.BadParameter(f"`{option} {text}` must be a comma-separated subset of {choices}")
    return values


@guarded
def compare(
    model: Annotated[str, typer.Argument(help="Model spec, e.g. zoo:digits_cnn or 'zoo:resnet20?in_channels=1&input_size=8'.")],
    data: Annotated[str | None, typer.Option("--data", help="Data spec: digits, cifar10:PATH, text:PATH, synthetic, ...")] = None,
    factors: Annotated[str | None, typer.Option("--factors", help="Factors, comma-separated (default A,F,D).")] = None,
    strategies: Annotated[str | None, typer.Option("--strategies", help="Strategies, comma-separated (default U,C+,C-,R).")] = None,
    bits: Annotated[str | None, typer.Option("--bits", help="Bit range LOW-HIGH (default 4-8).")] = None,
    levels: Annotated[str | None, typer.Option("--levels", help="Explicit bit levels, e.g. 8,10,12,14,16.")] = None,
    uniform_bits: Annotated[int | None, typer.Option("--uniform-bits", help="U's width (default middle of the range).")] = None,
    mapping: Annotated[Mapping | None, typer.Option("--mapping", help="How factor values become bit levels.")] = None,
    plan_seed: Annotated[int | None, typer.Option("--plan-seed", help="Seed of R's random plan.")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Training seeds of every cell (default 0,1,2,3).")] = None,
    match_size: Annotated[
        bool, typer.Option("--match-size/--no-match-size", help="Plan C+, C-, R within U's average bits (similar size).")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Runs trained at once, each in its own process.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Grid directory (default runs/compare).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per run.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option("--optimizer", help="Optimizer.")] = None,
    schedule: Annotated[Schedule | None, typer.Option("--schedule", help="Learning-rate schedule.")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Weight decay.")] = None,
    momentum: Annotated[float | None, typer.Option("--momentum", help="SGD momentum (AdamW beta1).")] = None,
    clip_grad_norm: Annotated[float | None, typer.Option("--clip-grad-norm", help="Clip the gradient norm.")] = None,
    device: Annotated[Device | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    act_bits: Annotated[int | None, typer.Option("--act-bits", help="Activation bits (32 = fp32); overrides the plans.")] = None,
    grad_bits: Annotated[int | None, typer.Option("--grad-bits", help="Gradient bits (32 = fp32); overrides the plans.")] = None,
    grad_quant: Annotated[GradQuant | None, typer.Option("--grad-quant", help="Gradient quantizer.")] = None,
    weight_granularity: Annotated[WeightGranularity | None, typer.Option("--weight-granularity", help="Per channel or tensor.")] = None,
    keep_last_fp32: Annotated[
        bool, typer.Option("--keep-last-fp32/--no-keep-last-fp32", help="Keep the last weight GEMM in fp32 (CPT).")
    ] = False,
    forward_quant: Annotated[ForwardQuant | None, typer.Option("--forward-quant", help="uniform or sawb.")] = None,
    grad_samples: Annotated[int | None, typer.Option("--grad-samples", help="LUQ SMP: gradient samples averaged.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress on stderr.")] = True,
    json: JsonFlag = False,
) -> None:
    """Train every factor × strategy plan for every seed; write Tables 1–2, figures and report.html."""
    from bitplan.compare import GridConfig, run_grid
    from bitplan.plan.planner import parse_bits_range, parse_levels
    from bitplan.train import make_config

    from bitplan.cli.train_cmd import parse_seeds

    train_options = {
        "model": model, "data": data, "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
        "schedule": schedule, "weight_decay": weight_decay, "momentum": momentum, "clip_grad_norm": clip_grad_norm,
        "device": device, "activation_bits": act_bits, "gradient_bits": grad_bits, "gradient_quant": grad_quant,
        "weight_granularity": weight_granularity, "forward_quant": forward_quant, "gradient_samples": grad_samples,
        "keep_last_fp32": keep_last_fp32 or None,
    }
    grid_options = {
        "factors": parse_choices(factors, Factor, "--factors") if factors else None,
        "strategies": parse_choices(strategies, Strategy, "--strategies") if strategies else None,
        "bits": parse_bits_range(bits) if bits else None,
        "levels": parse_levels(levels) if levels else None,
        "uniform_bits": uniform_bits, "mapping": mapping, "plan_seed": plan_seed,
        "seeds": parse_seeds(seeds) if seeds else None, "match_size": match_size, "out": out,
    }
    template = make_config({key: value for key, value in train_options.items() if value is not None})
    config = GridConfig(train=template, **{key: value for key, value in grid_options.items() if value is not None})
    result = run_grid(config, jobs=jobs, progress=progress)
    if json:
        write_or_print(result.model_dump_json(indent=2), None)
    else:
        console.print(grid_table(result))


def grid_table(result: GridResult) -> Table:
    """Table 1 and 2 in one terminal table: mean (variance) and MBit per strategy and factor."""
    from rich.table import Table

    from bitplan.compare.tables import best_rows, metric_short

    short = metric_short(result.metric_name)
    factors = [factor.value for factor in result.config.factors]
    best = best_rows(result)
    table = Table(title=f"{result.model} on {result.data}: {result.runs_finished}/{result.runs_total} runs finished")
    table.add_column("#Bit")
    table.add_column("Strategy")
    for factor in factors:
        table.add_column(f"{short}-{factor} (var)", justify="right")
        table.add_column(f"MBit-{factor}", justify="right")
    by_cell = {(row.factor.value, row.strategy.value): row for row in result.rows}
    for strategy in (strategy.value for strategy in result.config.strategies):
        cells = [by_cell.get((factor, strategy)) for factor in factors]
        bits = next((row.bits for row in cells if row is not None), "")
        values = []
        for factor, row in zip(factors, cells):
            if row is None:
                values += ["", ""]
                continue
            if row.mean is None:
                outcome = "pending" if row.pending else "failed"
            else:
                outcome = f"{row.mean:.2f} ({row.variance:.3f})"
                outcome = f"[bold green]{outcome}[/]" if (factor, strategy) in best else outcome
            if row.failed:
                outcome += f" [red]{row.failed} failed[/]"
            values += [outcome, f"{row.mbit:.4g}"]
        table.add_row(bits, strategy, *values)
    table.caption = f"variance: {result.variance}; files in {result.config.out}"
    return table


def register(app: typer.Typer) -> None:
    """Add ``bitplan compare`` to ``app``."""
    app.command("compare")(compare)
