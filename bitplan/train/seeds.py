"""``train_seeds``: the same run for several seeds, and the mean and variance of their final metric."""

from __future__ import annotations

import os
import statistics

from bitplan.atomic import atomic_write_text
from bitplan.errors import TrainingError
from bitplan.train import distributed
from bitplan.train.config import Parallel, TrainConfig
from bitplan.train.folder import SEED_PREFIX, SUMMARY_FILE, check_train_folder, clear_train_folder, hold_folder
from bitplan.train.loop import train_run
from bitplan.train.setup import resolve_device
from bitplan.train.records import MetricName, RunResult, SeedsSummary, SeedStatus


def seed_dir_name(seed: int) -> str:
    """``seed-<s>``: where seed ``s`` of a multi-seed run lives inside ``out``."""
    return f"{SEED_PREFIX}{seed}"


def summarize(results: list[RunResult], out: str) -> SeedsSummary:
    """Mean and population variance (ddof = 0) of the final metric over the seeds that finished ok.

    Example:
        >>> summarize([], "runs/x").mean is None
        True
    """
    good = [result.metric for result in results if result.status == "ok" and result.metric is not None]
    mean = statistics.fmean(good) if good else None
    variance = statistics.pvariance(good, mu=mean) if good else None
    name = results[0].metric_name if results else MetricName.accuracy
    return SeedsSummary(
        metric_name=name,
        mean=mean,
        variance=variance,
        std=variance**0.5 if variance is not None else None,
        ok=sum(result.status == "ok" for result in results),
        failed=sum(result.status == "failed" for result in results),
        seeds=[
            SeedStatus(
                seed=result.seed,
                status=result.status,
                metric=result.metric,
                epochs_done=result.epochs_done,
                message=result.message,
                out=result.out,
            )
            for result in results
        ],
        out=out,
    )


def train_seeds(
    config: TrainConfig,
    seeds: list[int],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> SeedsSummary:
    """Run ``config`` once per seed in ``config.out/seed-<s>/`` and write ``config.out/summary.json``.

    A seed that fails (non-finite loss) is recorded as failed and the remaining seeds still run.

    Args:
        config: The run; its ``seed`` is replaced by each of ``seeds``.
        seeds: Seeds to run, in order (e.g. ``[0, 1, 2, 3]``, the paper's four runs).
        resume: Skip finished seeds and continue interrupted ones from their checkpoints.
        overwrite: Delete the finished results in ``config.out`` first (see ``bitplan.train.folder``).
        progress: Show progress bars (rank 0 only).

    Returns:
        The ``SeedsSummary`` also written to ``summary.json``.

    Raises:
        FolderBusyError: Another process holds ``config.out`` (rank 0 locks it for the call).
        TrainingError: ``seeds`` is empty or repeats a seed; or ``config.out`` holds finished results
            and neither ``resume`` nor ``overwrite`` is given; or resuming would leave seed folders
            out of the summary.
        SpecError, DataError, PlanError, TrainingError: As ``train_run``.

    Example:
        >>> summary = train_seeds(TrainConfig.example(epochs=2), [0, 1])  # doctest: +SKIP
        >>> summary.ok, round(summary.mean, 1)  # doctest: +SKIP
        (2, 96.4)
    """
    if not seeds:
        raise TrainingError("`seeds` is empty; give at least one seed, e.g. `--seeds 0`")
    if len(set(seeds)) != len(seeds):
        raise TrainingError(f"`seeds` {seeds} repeats a seed; give each seed once, e.g. `--seeds 0,1`")
    if resume and overwrite:
        raise TrainingError("`--resume` keeps a folder's results and `--overwrite` deletes them; pass one of them")
    check_parallel(config, int(os.environ.get("WORLD_SIZE", "1")))
    if not distributed.is_main_process():  # under torchrun rank 0 holds the folder for every rank
        return _train_seeds(config, seeds, resume=resume, progress=progress)
    check_train_folder(config.out, seeds, resume=resume, overwrite=overwrite)  # before anything is written
    with hold_folder(config.out, "this training run (`-o`)"):
        check_train_folder(config.out, seeds, resume=resume, overwrite=overwrite)  # a run may have ended meanwhile
        if overwrite:
            clear_train_folder(config.out)
        return _train_seeds(config, seeds, resume=resume, progress=progress)


def _train_seeds(config: TrainConfig, seeds: list[int], *, resume: bool, progress: bool) -> SeedsSummary:
    results: list[RunResult] = []
    with distributed.process_group(resolve_device(config).type):  # one group for all seeds
        for seed in seeds:
            seed_config = config.model_copy(update={"seed": seed, "out": config.out / seed_dir_name(seed)})
            results.append(train_run(seed_config, resume=resume, progress=progress))
            _write_summary(results, config)
    return summarize(results, str(config.out))


def _write_summary(results: list[RunResult], config: TrainConfig) -> None:
    if results and distributed.is_main():
        summary = summarize(results, str(config.out))
        atomic_write_text(config.out / SUMMARY_FILE, summary.model_dump_json(indent=2) + "\n")


def check_parallel(config: TrainConfig, processes: int) -> None:
    """Refuse ``--parallel fsdp`` where it cannot run, before any file is written.

    Raises:
        TrainingError: FSDP2 with a single process, or on a torch without ``fully_shard``.
    """
    if config.parallel is not Parallel.fsdp:
        return
    from bitplan.train.fsdp import fully_shard_api

    fully_shard_api()
    if processes < 2:
        raise TrainingError(
            "`--parallel fsdp` shards the model over several processes, but this run has one; pass `--nproc 2` "
            "or more (one per GPU, or CPU processes), or drop `--parallel fsdp` to train in one process"
        )


def preflight(config: TrainConfig, seeds: list[int], *, processes: int, resume: bool, overwrite: bool) -> None:
    """What the launcher checks before starting processes: the parallel mode and the run folder.

    A resumed seed's checkpoint must come from the same settings (model, plan, recipe), so a
    mismatch is one error here instead of a failure inside every rank.

    Raises:
        TrainingError: As ``check_parallel``, ``check_train_folder`` and a resume with other settings.
    """
    from bitplan.train.loop import check_resumable

    check_parallel(config, processes)
    check_train_folder(config.out, seeds, resume=resume, overwrite=overwrite)
    if resume:
        for seed in seeds:
            check_resumable(config.model_copy(update={"seed": seed, "out": config.out / seed_dir_name(seed)}))
