"""``train_run``: one seed, from a config to a run directory — the epoch loop, evaluation, resume.

Each step: forward (planned GEMMs quantized by ``bitplan.apply``), loss, backward (gradients
quantized at every planned GEMM's output), optional gradient clipping, optimizer and scheduler
step. A loss that turns non-finite stops the run at once: the last good checkpoint stays, and
``final.json`` says ``failed`` with the epoch and batch. After every epoch the test split is
evaluated, a line is added to ``metrics.jsonl`` and ``checkpoint.pt`` is replaced atomically.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from bitplan.qat import quant_runtime
from bitplan.atomic import atomic_write_text
from bitplan.data import Task, make_loader, set_epoch
from bitplan.errors import TrainingError
from bitplan.quant import cyclic_bits
from bitplan.train import distributed
from bitplan.train.allocator import keep_freed_memory
from bitplan.train.config import Optimizer, Schedule, TrainConfig
from bitplan.train.folder import CHECKPOINT_FILE, CONFIG_FILE, FINAL_FILE, METRICS_FILE
from bitplan.train.progress import TrainingProgress
from bitplan.train.records import MetricName, MetricsLine, RunConfigFile, RunResult, Versions
from bitplan.train.setup import RunSetup, build_run, resolve_device
from bitplan.train.state import load_checkpoint, quant_state, restore, rng_state, save_checkpoint


def sr_seed(seed: int, rank: int) -> int:
    """Seed of a rank's stochastic-rounding stream: distinct per (seed, rank), stable across runs."""
    return seed * 1_000_003 + rank


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's recipe) or AdamW, decaying every parameter."""
    if config.optimizer is Optimizer.adamw:
        return torch.optim.AdamW(
            model.parameters(), lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay
        )
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """Multiplier of the peak learning rate after ``step`` of ``total`` steps (see ``Schedule``)."""
    progress = min(step / max(total, 1), 1.0)
    if schedule is Schedule.cosine:
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule is Schedule.step:
        return 0.1 ** min(int(progress * 3), 2)
    if schedule is Schedule.multistep:
        return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    return 1.0


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """A per-step ``LambdaLR`` following ``config.schedule``."""
    schedule = config.schedule
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(schedule, step, total_steps))


def batch_loss(output: object, target: torch.Tensor, task: Task) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean cross-entropy, number of correct predictions (classification) and of predictions.

    Classification: output [B, C], target [B]. Language model: output [B, T, V], target [B, T].
    """
    logits = output[0] if isinstance(output, (tuple, list)) else output
    if task is Task.language_model:
        logits, target = logits.flatten(0, -2), target.flatten()  # [B·T, V], [B·T]
    loss = F.cross_entropy(logits, target)
    correct = (logits.detach().argmax(-1) == target).sum()
    return loss, correct, target.numel()


def metric_of(name: MetricName, loss_sum: float, correct: float, count: float) -> float:
    """Accuracy (%) or perplexity from summed loss (per prediction), correct count and count."""
    if name is MetricName.perplexity:
        return math.exp(min(loss_sum / max(count, 1), 50.0))
    return 100.0 * correct / max(count, 1)


@torch.no_grad()
def split_totals(model: nn.Module, loader: DataLoader, task: Task, device: torch.device) -> tuple[float, float, float]:
    """(summed loss, correct predictions, predictions) of ``model`` over ``loader``, summed across ranks.

    The model runs in eval mode (fixed batch-norm statistics, no dropout, quantizers on their running
    ranges) and is put back in training mode afterwards. A prediction is one image (classification)
    or one next token (language model).
    """
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for inputs, target in loader:
        inputs, target = inputs.to(device), target.to(device)
        loss, correct, count = batch_loss(model(inputs), target, task)
        totals += _stats(loss * count, correct, count)
    loss_sum, correct, count = distributed.sum_across_ranks(totals).tolist()
    model.train()
    return loss_sum, correct, count


def evaluate(
    model: nn.Module, loader: DataLoader, task: Task, name: MetricName, device: torch.device
) -> tuple[float, float]:
    """Mean test loss (cross-entropy per prediction) and the metric, accuracy (%) or perplexity.

    This is the evaluation of every epoch of training; ``bitplan.train.evaluate_model`` evaluates a
    trained checkpoint (and a plan applied to it) the same way.
    """
    loss_sum, correct, count = split_totals(model, loader, task, device)
    return loss_sum / max(count, 1), metric_of(name, loss_sum, correct, count)


def _versions() -> Versions:
    import platform

    import numpy

    from bitplan import __version__

    return Versions(
        python=platform.python_version(), torch=torch.__version__, bitplan=__version__, numpy=numpy.__version__
    )


def _config_key(config: TrainConfig) -> dict:
    """The parts of a config a checkpoint must agree with to be resumed (all but where it lives)."""
    return config.model_dump(mode="json", exclude={"out"})


def train_run(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train one seed (``config.seed``) and write its run directory ``config.out``.

    Files: ``config.json``, ``metrics.jsonl`` (one ``MetricsLine`` per epoch), ``checkpoint.pt``
    (every epoch, atomically) and ``final.json`` (``RunResult``). Under torchrun the ranks train
    together and only rank 0 writes.

    Args:
        config: The run.
        resume: Continue from ``checkpoint.pt`` if present (a finished run is returned as is).
        progress: Show rich progress bars on stderr (rank 0 only).

    Returns:
        The ``RunResult``; ``status`` is ``failed`` when the loss turned non-finite.

    Raises:
        SpecError, DataError, PlanError: The model, data or plan cannot be used.
        TrainingError: A checkpoint to resume from belongs to another configuration.

    Example:
        >>> result = train_run(TrainConfig.example(epochs=1, out=Path("runs/demo")))  # doctest: +SKIP
        >>> result.status, result.metric_name.value  # doctest: +SKIP
        ('ok', 'accuracy')
    """
    device = resolve_device(config)
    with distributed.process_group(device.type):
        return _train(config, device, resume=resume, progress=progress)


@dataclass
class _Run:
    """One seed's training objects, shared by the epoch loop's steps."""

    config: TrainConfig
    setup: RunSetup
    device: torch.device
    model: nn.Module  # the quantized model (checkpointed, evaluated)
    trained: nn.Module  # what training calls: the model, wrapped in DDP and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DataLoader
    test_loader: DataLoader
    metrics: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    start_epoch: int = 0

    @property
    def checkpoint(self) -> Path:
        return self.config.out / CHECKPOINT_FILE


def _prepare(config: TrainConfig, device: torch.device) -> _Run:
    """Data, model, plan, loaders, optimizer and schedule for this rank."""
    rank, world = distributed.rank(), distributed.world_size()
    if config.batch_size % world:
        raise TrainingError(
            f"`--batch-size {config.batch_size}` is the global batch and must divide evenly over "
            f"{world} processes; use a multiple of {world}"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    keep_freed_memory()  # quantized activations would otherwise be page-faulted back in every step
    setup = build_run(config, device=device, sr_seed=sr_seed(config.seed, rank))
    per_rank = config.batch_size // world
    train_loader = make_loader(
        setup.data.train, batch_size=per_rank, shuffle=True, seed=config.seed, distributed=world > 1
    )
    # each rank evaluates every world-th test sample, in batches as large as the training ones
    test_shard = Subset(setup.data.test, range(rank, len(setup.data.test), world))
    test_loader = make_loader(test_shard, batch_size=per_rank, shuffle=False, seed=config.seed)
    optimizer = make_optimizer(config, setup.model)
    scheduler = make_scheduler(config, optimizer, len(train_loader) * config.epochs)
    trained: nn.Module = setup.model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(trained, device_ids=ids)
    if config.compile:
        runtime = quant_runtime(setup.model)
        if runtime is not None:  # rounding seeds from the global generator, seeded per rank (see QuantRuntime)
            runtime.global_rng = True
            torch.manual_seed(sr_seed(config.seed, rank))
        trained = torch.compile(trained)
    return _Run(config, setup, device, setup.model, trained, optimizer, scheduler, train_loader, test_loader)


def _resume_or_start(run: _Run, resume: bool) -> None:
    """Load the checkpoint when resuming (refusing one from other settings), else write config.json."""
    config = run.config
    if resume and run.checkpoint.is_file():
        checkpoint = load_checkpoint(run.checkpoint, map_location=run.device)
        _same_settings(config, checkpoint)
        restore(
            checkpoint, rank=distributed.rank(), model=run.model, optimizer=run.optimizer,
            scheduler=run.scheduler, loader=run.train_loader,
        )
        run.start_epoch, run.seconds = checkpoint["epoch"], checkpoint["seconds"]
        run.metrics = list(checkpoint["metrics"])
    elif distributed.is_main():
        record = RunConfigFile(
            config=config.model_copy(update={"plan": run.setup.plan, "factor": None}),
            seed=config.seed,
            model_options=run.setup.model_options,
            device=str(run.device),
            world_size=distributed.world_size(),
            threads=torch.get_num_threads(),
            versions=_versions(),
            argv=list(sys.argv),
        )
        atomic_write_text(config.out / CONFIG_FILE, record.model_dump_json(indent=2) + "\n")
        atomic_write_text(config.out / METRICS_FILE, "")


def _train_epoch(run: _Run, epoch: int, bar: TrainingProgress) -> list[float] | str:
    """One pass over this rank's batches: summed (loss, correct, count) over all ranks, or why it failed."""
    config, task = run.config, run.setup.data.task
    runtime = quant_runtime(run.model)
    steps = len(run.train_loader)
    set_epoch(run.train_loader, epoch)
    run.trained.train()
    totals = [0.0, 0.0, 0.0]
    for step, (inputs, target) in enumerate(run.train_loader):
        if runtime is not None and config.cyclic is not None:
            runtime.bit_cap = cyclic_cap(config, epoch * steps + step, steps * config.epochs)
        inputs, target = inputs.to(run.device, non_blocking=True), target.to(run.device, non_blocking=True)
        loss, correct, count = batch_loss(run.trained(inputs), target, task)
        # summed over ranks, so every rank sees the same loss and stops together when it is not finite
        stats = distributed.sum_across_ranks(_stats(loss.detach() * count, correct, count)).tolist()
        batch_mean = stats[0] / stats[2]
        if not math.isfinite(batch_mean):
            return (
                f"the training loss became {batch_mean} at epoch {epoch + 1}, batch {step + 1}; the run stopped "
                f"and its last good checkpoint ({_last_good(run.checkpoint, epoch)}) is kept. Lower the learning "
                "rate (`--lr`) or raise the bits (`--bits`, `--grad-bits`)"
            )
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(run.model.parameters(), config.clip_grad_norm)
        run.optimizer.step()
        run.scheduler.step()
        totals = [a + b for a, b in zip(totals, stats)]
        bar.batch(batch_mean)
    return totals


def _stats(loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> torch.Tensor:
    """[loss sum, correct, count] as one float64 tensor (one all-reduce for all three)."""
    count_tensor = torch.tensor(float(count), dtype=torch.float64, device=correct.device)
    return torch.stack([loss_sum.double(), correct.double(), count_tensor])


def read_result(directory: Path) -> RunResult | None:
    """The ``final.json`` of a run directory, or None when the run has not finished.

    Raises:
        TrainingError: ``final.json`` exists but is not a valid run result (corrupt or hand-edited).
    """
    path = directory / FINAL_FILE
    if not path.is_file():
        return None
    try:
        return RunResult.model_validate_json(path.read_bytes())
    except ValueError as error:  # pydantic's ValidationError (bad JSON, bad fields) is a ValueError
        reason = str(error).splitlines()[-1].strip() if str(error) else type(error).__name__
        raise TrainingError(
            f"`{path}` is not a valid run result ({reason}); the run's files were damaged. Delete `{path}` to "
            "continue the run from its checkpoint with `--resume`, or pass `--overwrite` to train it afresh"
        ) from None


def read_metrics(directory: Path) -> list[dict]:
    """The ``metrics.jsonl`` lines of a run directory (one dict per finished epoch), validated.

    Raises:
        TrainingError: A line is not a valid ``MetricsLine`` (the file was damaged or edited).
    """
    path = directory / METRICS_FILE
    lines = []
    for number, text in enumerate(path.read_bytes().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            lines.append(MetricsLine.model_validate_json(text).model_dump(mode="json"))
        except ValueError as error:
            reason = str(error).splitlines()[-1].strip()
            raise TrainingError(
                f"line {number} of `{path}` is not a valid metrics line ({reason}); the run's files were damaged. "
                "Rerun the training with `--overwrite` (or restore the file)"
            ) from None
    return lines


def _same_settings(config: TrainConfig, checkpoint: dict) -> None:
    """Refuse a checkpoint written with other settings (named, with both values): its results are not this run's."""
    saved, now = checkpoint.get("config"), _config_key(config)
    if saved != now:
        differing = _differences(saved if isinstance(saved, dict) else {}, now)
        shown = "; ".join(differing[:6]) + (f"; and {len(differing) - 6} more" if len(differing) > 6 else "")
        raise TrainingError(
            f"`{config.out / CHECKPOINT_FILE}` was written by a run with other settings ({shown or 'an older format'}); "
            "resume with the same arguments, pass `--overwrite` to replace its results, or choose another output folder"
        )


def _differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """``setting (checkpoint X, now Y)`` for each leaf setting that differs, nested keys joined by dots."""
    found = []
    for key in dict.fromkeys([*saved, *now]):
        old, new = saved.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
            continue
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and all(isinstance(v, dict) for v in old + new):
            for index, (a, b) in enumerate(zip(old, new)):
                found += _differences(a, b, f"{prefix}{key}.{index}.")
            continue
        found.append(f"{prefix}{key} (checkpoint {_short(old)}, now {_short(new)})")
    return found


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _train(config: TrainConfig, device: torch.device, *, resume: bool, progress: bool) -> RunResult:
    finished = read_result(config.out) if resume else None
    if finished is not None:
        if (config.out / CHECKPOINT_FILE).is_file():  # a run that failed before its first epoch has none
            _same_settings(config, load_checkpoint(config.out / CHECKPOINT_FILE))
        return finished
    run = _prepare(config, device)
    _resume_or_start(run, resume)
    name = run.setup.metric_name
    with TrainingProgress(
        enabled=progress and distributed.is_main(), title=f"seed {config.seed}", epochs=config.epochs,
        start_epoch=run.start_epoch, batches=len(run.train_loader),
    ) as bar:
        for epoch in range(run.start_epoch, config.epochs):
            began = time.perf_counter()
            bar.start_epoch(epoch + 1)
            totals = _train_epoch(run, epoch, bar)
            if isinstance(totals, str):
                return _finish(run, "failed", totals)
            test_loss, metric = evaluate(run.model, run.test_loader, run.setup.data.task, name, device)
            if not math.isfinite(test_loss):
                return _finish(run, "failed", (
                    f"the test loss became {test_loss} after epoch {epoch + 1}; the run stopped and its last good "
                    f"checkpoint ({_last_good(run.checkpoint, epoch)}) is kept. Lower the learning rate (`--lr`)"
                ))
            elapsed = time.perf_counter() - began
            run.seconds += elapsed
            line = MetricsLine(
                epoch=epoch + 1, train_loss=totals[0] / totals[2], train_metric=metric_of(name, *totals),
                test_loss=test_loss, metric=metric, lr=run.scheduler.get_last_lr()[0], seconds=elapsed,
            )
            run.metrics.append(line.model_dump(mode="json"))
            _end_of_epoch(run, epoch + 1)
            label = f"accuracy {metric:.2f}" if name is MetricName.accuracy else f"ppl {metric:.2f}"
            bar.end_epoch(f"test loss {test_loss:.4f}, {label}")
    return _finish(run, "ok", "")


def _finish(run: _Run, status: str, message: str) -> RunResult:
    """Write ``final.json`` (rank 0) and return it."""
    result = _result(run.config, status, run.setup.metric_name, run.metrics, run.seconds, message)
    if distributed.is_main():
        atomic_write_text(run.config.out / FINAL_FILE, result.model_dump_json(indent=2) + "\n")
    return result


def cyclic_cap(config: TrainConfig, step: int, total_steps: int) -> int:
    """CPT's cyclic bit-width at ``step`` (``config.cyclic_cycles`` cosine cycles over training)."""
    low, high = config.cyclic
    period = max(total_steps // config.cyclic_cycles, 1)
    return cyclic_bits(step, period, low, high)


def _last_good(checkpoint: Path, epoch: int) -> str:
    return f"`{checkpoint}`, epoch {epoch}" if epoch > 0 else "none: no epoch finished"


def _end_of_epoch(run: _Run, epoch: int) -> None:
    """Every rank contributes its RNG and quantizer state; rank 0 writes metrics and the checkpoint."""
    rng_per_rank = distributed.gather_to_all(rng_state(run.train_loader))
    quant_per_rank = distributed.gather_to_all(quant_state(run.model))
    if distributed.is_main():
        out = run.config.out
        atomic_write_text(out / METRICS_FILE, "".join(json.dumps(line) + "\n" for line in run.metrics))
        save_checkpoint(
            run.checkpoint,
            epoch=epoch,
            model=run.model,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            rng_per_rank=rng_per_rank,
            quant_per_rank=quant_per_rank,
            metrics=run.metrics,
            seconds=run.seconds,
            config=_config_key(run.config),
            model_spec=run.config.model,
            model_options=run.setup.model_options,
        )
    distributed.barrier()


def _result(
    config: TrainConfig, status: str, name: MetricName, metrics: list[dict], seconds: float, message: str
) -> RunResult:
    last = metrics[-1] if metrics else None
    return RunResult(
        status=status,
        seed=config.seed,
        metric_name=name,
        metric=last["metric"] if last else None,
        train_loss=last["train_loss"] if last else None,
        test_loss=last["test_loss"] if last else None,
        epochs_done=len(metrics),
        epochs=config.epochs,
        seconds=seconds,
        message=message,
        out=str(config.out),
    )
