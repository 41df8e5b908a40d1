"""``bitplan train``: train a model against a plan (or in fp32) for one or more seeds.

With no arguments it runs the embedded example (digits CNN, digits, C− A 4–8 plan). Every default
lives in ``bitplan.train.TrainConfig``; this command only forwards the options the user gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitplan.cli.common import emit, provided
from bitplan.cli.options import (
    DISTRIBUTED_PANEL,
    OUTPUT_PANEL,
    PLAN_PANEL,
    QUANT_PANEL,
    TRAINING,
    TRAINING_PANEL,
    Bits,
    Data,
    Format,
    InputShape,
    Json,
    OptionalModel,
    PlanFile,
    Progress,
    Seeds,
    cli_command,
    parse_seeds,
    resolve_format,
)
from bitplan.choices import Factor, OutputFormat, Strategy

if TYPE_CHECKING:
    from rich.table import Table

    from bitplan.train.records import SeedsSummary


@cli_command(TRAINING, aliases=("model_option", "act_bits", "grad_bits", "grad_quant", "grad_samples", "batch_size_alias", "out"))
def train(
    model: OptionalModel = None,
    data: Data = None,
    input_shape: InputShape = None,
    plan: PlanFile = None,
    factor: Annotated[Factor | None, typer.Option("--factor", help="Make a plan ranking layers by this factor.", rich_help_panel=PLAN_PANEL)] = None,
    strategy: Annotated[Strategy | None, typer.Option("--strategy", help="Strategy of the plan made with --factor.", rich_help_panel=PLAN_PANEL)] = None,
    bits: Bits = None,
    seeds: Seeds = None,
    cyclic: Annotated[str | None, typer.Option("--cyclic", help="CPT cyclic precision MIN-MAX bits, e.g. 3-8.", rich_help_panel=QUANT_PANEL)] = None,
    cyclic_cycles: Annotated[int | None, typer.Option("--cyclic-cycles", help="Cycles of --cyclic over training.", rich_help_panel=QUANT_PANEL)] = None,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model.", rich_help_panel=TRAINING_PANEL)] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue interrupted seeds from their checkpoints.", rich_help_panel=TRAINING_PANEL)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete the finished results in the run folder and train afresh.", rich_help_panel=OUTPUT_PANEL)] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Launch this many processes with torchrun (see --parallel).", rich_help_panel=DISTRIBUTED_PANEL)] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder (default runs/default).", rich_help_panel=OUTPUT_PANEL)] = None,
    progress: Progress = True,
    format: Format = None,
    json: Json = False,
    *,
    training: dict,
) -> None:
    """Train with fake-quantized weights, activations and gradients (no plan = fp32 baseline).

    With no arguments: the embedded example (digits CNN on scikit-learn's digits, C− A 4–8 plan).
    """
    from bitplan.plan import load_plan
    from bitplan.plan.planner import parse_bits_range
    from bitplan.train import Job, launch, make_config, train_seeds
    from bitplan.train.seeds import preflight

    output_format = resolve_format(format, json)
    loaded_plan = load_plan(plan) if plan is not None else None
    given = {
        "model": model, "data": data, "factor": factor, "strategy": strategy, "out": output,
        "input_shape": input_shape, "cyclic_cycles": cyclic_cycles,
        "bits": parse_bits_range(bits) if bits else None,
        "cyclic": parse_bits_range(cyclic) if cyclic else None,
        "plan": loaded_plan, "compile": compile or None,
        **training,
    }
    given = provided(given)
    bare = not any(key in given for key in ("model", "data", "plan", "factor"))
    config = make_config(given, example=bare)
    seed_list = parse_seeds(seeds) if seeds else [config.seed]
    if nproc > 1:
        preflight(config, seed_list, processes=nproc, resume=resume, overwrite=overwrite)
        job = Job(config=config, seeds=seed_list, resume=resume, overwrite=overwrite, progress=progress, print_json=output_format is OutputFormat.json)
        raise typer.Exit(launch(job, nproc))
    summary = train_seeds(config, seed_list, resume=resume, overwrite=overwrite, progress=progress)
    from bitplan.train.distributed import is_main_process

    if is_main_process():  # under torchrun every rank runs this command; rank 0 reports
        emit(summary, [_table(summary)], output_format)
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
