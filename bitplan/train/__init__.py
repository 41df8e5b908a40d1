"""Quantized training against a plan: one seed (``train_run``), several (``train_seeds``), distributed;
evaluating a trained model with a plan applied after training (``evaluate_model``).

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and ``final.json``;
several seeds add ``seed-<s>/`` folders and ``summary.json`` (docs/training.md).
"""

from bitplan.choices import Device, Optimizer, Schedule
from bitplan.train.allocator import keep_freed_memory
from bitplan.train.config import TrainConfig, make_config
from bitplan.train.distributed import Job, launch
from bitplan.train.evaluate import EvalResult, Evaluation, Evaluator, evaluate_model
from bitplan.train.loop import train_run
from bitplan.train.records import MetricName, MetricsLine, RunConfigFile, RunResult, SeedsSummary, SeedStatus
from bitplan.train.seeds import summarize, train_seeds

__all__ = [
    # running
    "train_run",
    "train_seeds",
    "launch",
    "Job",
    # evaluating a trained model (and a plan applied to it)
    "evaluate_model",
    "Evaluator",
    "Evaluation",
    "EvalResult",
    # configuration
    "TrainConfig",
    "make_config",
    "Optimizer",
    "Schedule",
    "Device",
    # files
    "RunConfigFile",
    "MetricsLine",
    "RunResult",
    "SeedsSummary",
    "SeedStatus",
    "MetricName",
    "summarize",
    # for your own training loop
    "keep_freed_memory",
]
