"""Distributed data parallel training: process group, per-rank helpers, and the ``--nproc`` launcher.

Under ``torchrun`` (which sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) training joins a process group
(gloo on CPU, nccl on CUDA), wraps the model in ``DistributedDataParallel``, shards batches with
``DistributedSampler`` and lets only rank 0 write files. ``launch`` starts that itself: it writes the
job (config, seeds, flags) to a JSON file and runs ``python -m torch.distributed.run --standalone
--nproc-per-node N -m bitplan.train.worker JOB``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict

from bitplan.train.config import TrainConfig


class Job(BaseModel):
    """What ``launch`` hands every worker process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: TrainConfig
    seeds: list[int]
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    print_json: bool = False
    error_file: str | None = None  # where rank 0 reports a BitplanError to the launcher (set by ``launch``)


def world_size() -> int:
    """Processes in the run (1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def local_rank() -> int:
    """This process's rank on its machine (picks its GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process writes files and shows progress."""
    return rank() == 0


def is_main_process() -> bool:
    """Whether this process is rank 0 of its launch, also before or after the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process run."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def process_group(device_type: str) -> Iterator[None]:
    """Join the process group torchrun describes (if any) for the duration of the block.

    Nested uses share the group; only the outermost one that created it destroys it.
    """
    created = False
    if launched_by_torchrun() and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend)
        created = True
    try:
        yield
    finally:
        if created:
            dist.destroy_process_group()


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all ranks (unchanged in a single process)."""
    if world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def max_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum of ``values`` over all ranks (unchanged in a single process)."""
    if world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def gather_to_all(value: object) -> list[object]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` in a single process."""
    if world_size() == 1:
        return [value]
    gathered: list[object] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        dist.barrier()


def broadcast_from_main(value: object) -> object:
    """Rank 0's ``value`` on every rank."""
    if world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def launch(job: Job, nproc: int) -> int:
    """Run ``job`` in ``nproc`` processes with torchrun and wait for them.

    Args:
        job: Configuration, seeds and flags; rank 0 writes the run directory as usual.
        nproc: Processes on this machine (one per GPU, or CPU processes sharing the cores).

    Returns:
        torchrun's exit code (0 when every rank succeeded).

    Raises:
        BitplanError: A rank refused its input (the same error, raised here once instead of per rank).
    """
    with tempfile.TemporaryDirectory(prefix="bitplan-launch-") as tmp:
        job_file, error_file = Path(tmp) / "job.json", Path(tmp) / "error.json"
        job_file.write_text(job.model_copy(update={"error_file": str(error_file)}).model_dump_json(), encoding="utf-8")
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "bitplan.train.worker", str(job_file),
        ]
        code = subprocess.run(command, check=False).returncode
        if error_file.is_file():
            import json

            from bitplan import errors

            reported = json.loads(error_file.read_text(encoding="utf-8"))
            kind = getattr(errors, reported["kind"], errors.TrainingError)
            raise (kind if isinstance(kind, type) and issubclass(kind, errors.BitplanError) else errors.TrainingError)(reported["message"])
        return code
