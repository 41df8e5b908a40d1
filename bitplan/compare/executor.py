"""Run a grid's pending training runs, one after another or in parallel processes.

Parallel runs use a ``ProcessPoolExecutor`` with the ``spawn`` start method (no forked torch
state). Every run's ``TrainConfig.threads`` is ``max(1, cores // jobs)`` (``plan_runs``), so ``jobs``
runs never oversubscribe the machine's cores; workers also set ``OMP_NUM_THREADS`` to it for anything
they start. The thread count is in the run's cache key: floating-point reductions split over another
number of threads sum in another order, so a grid resumed with another ``--jobs`` trains new runs
instead of mixing results computed differently.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from bitplan.compare.runs import PlannedRun, RunState
from bitplan.train import RunResult, TrainConfig, train_run

OnFinished = Callable[[PlannedRun, RunResult], None]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """``max(1, cores // jobs)``: torch threads each of ``jobs`` parallel runs gets.

    Example:
        >>> threads_per_job(2, cores=2), threads_per_job(3, cores=8), threads_per_job(4, cores=2)
        (1, 2, 1)
    """
    return max(1, (cores if cores is not None else available_cores()) // max(jobs, 1))


def execute(runs: Sequence[PlannedRun], *, jobs: int = 1, progress: bool = True, on_finished: OnFinished) -> None:
    """Train every run in ``runs`` (resuming partial ones) and report each result as it ends.

    Args:
        runs: Runs that have not finished (the caller skips finished ones).
        jobs: Processes to train in at once; 1 trains in this process (with the engine's progress bars).
        progress: Show the train engine's progress bars (only when ``jobs`` is 1: parallel bars clash).
        on_finished: Called in this process with each run and its ``RunResult``, in completion order.

    Raises:
        ValueError: ``jobs`` below 1.
        SpecError, DataError, PlanError, TrainingError: From the train engine; pending parallel runs
            are cancelled; an interrupted run resumes from its last epoch's checkpoint next time.
    """
    if jobs < 1:
        raise ValueError(f"`jobs` must be at least 1, got {jobs}")
    if jobs == 1 or len(runs) <= 1:
        for run in runs:
            result = train_run(run.config, resume=run.state() is not RunState.new, progress=progress)
            on_finished(run, result)
        return
    workers = min(jobs, len(runs))
    context = multiprocessing.get_context("spawn")
    initargs = (max(run.config.threads or 1 for run in runs),)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_limit_threads, initargs=initargs) as pool:
        pending: dict[Future, PlannedRun] = {
            pool.submit(_train_in_worker, run.config.model_dump_json(), run.state() is not RunState.new): run
            for run in runs
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    run = pending.pop(future)
                    on_finished(run, RunResult.model_validate_json(future.result()))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # queued runs never start; running ones finish
            raise


def _limit_threads(threads: int) -> None:
    """Worker initializer: ``threads`` torch intra-op threads, and the same for OpenMP children."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _train_in_worker(config_json: str, resume: bool) -> str:
    """One run in a worker process; JSON in and out so nothing torch-specific is pickled."""
    result = train_run(TrainConfig.model_validate_json(config_json), resume=resume, progress=False)
    return result.model_dump_json()
