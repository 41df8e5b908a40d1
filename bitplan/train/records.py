"""The files a run directory holds: config.json, metrics.jsonl lines, final.json, summary.json."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bitplan.train.config import TrainConfig

RUN_SCHEMA_VERSION = 1


class MetricName(str, Enum):
    """What a run reports: accuracy (%) for classification, perplexity for language modelling."""

    accuracy = "accuracy"
    perplexity = "perplexity"


class Versions(BaseModel):
    """Software that produced a run (part of what it takes to reproduce it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str
    torch: str
    bitplan: str
    numpy: str


class RunConfigFile(BaseModel):
    """``config.json``: everything needed to reproduce one seed's run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RUN_SCHEMA_VERSION
    config: TrainConfig = Field(description="The run's configuration; `plan` is the effective plan (or null).")
    seed: int
    model_options: dict[str, str] = Field(description="Options passed to the model spec from the data.")
    device: str = Field(description="The device trained on.")
    world_size: int = Field(ge=1, description="Processes of a distributed run (1 otherwise).")
    threads: int = Field(ge=1, description="torch intra-op threads per process.")
    versions: Versions
    argv: list[str] = Field(description="The command line of the process that started the run.")


class MetricsLine(BaseModel):
    """One line of ``metrics.jsonl``: one finished epoch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch: int = Field(ge=1, description="1-based epoch that just finished.")
    train_loss: float = Field(description="Mean training loss over the epoch's batches.")
    train_metric: float = Field(description="Accuracy (%) or perplexity on the training batches, as trained.")
    test_loss: float
    metric: float = Field(description="Accuracy (%) or perplexity on the test split.")
    lr: float = Field(description="Learning rate at the end of the epoch.")
    seconds: float = Field(description="Wall time of the epoch (training and evaluation).")


class RunResult(BaseModel):
    """``final.json``: how one seed's run ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RUN_SCHEMA_VERSION
    status: Literal["ok", "failed"]
    seed: int
    metric_name: MetricName
    metric: float | None = Field(description="Final test metric (null when no epoch finished).")
    train_loss: float | None
    test_loss: float | None
    epochs_done: int = Field(ge=0)
    epochs: int = Field(ge=1)
    seconds: float = Field(description="Training wall time, summed over resumed segments.")
    message: str = Field(default="", description="Why the run failed (empty when ok).")
    out: str = Field(description="The run directory.")


class SeedStatus(BaseModel):
    """One seed in ``summary.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    status: Literal["ok", "failed"]
    metric: float | None
    epochs_done: int
    message: str = ""
    out: str


class SeedsSummary(BaseModel):
    """``summary.json``: the final metric over seeds (the paper's mean and variance columns).

    ``variance`` is the population variance (ddof = 0, numpy's default) over the seeds that finished
    ``ok``; failed seeds are listed but left out of ``mean`` and ``variance``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RUN_SCHEMA_VERSION
    metric_name: MetricName
    mean: float | None = Field(description="Mean final metric over successful seeds (null if none).")
    variance: float | None = Field(description="Population variance (ddof=0) over successful seeds.")
    std: float | None = Field(description="Square root of `variance`.")
    ok: int = Field(ge=0)
    failed: int = Field(ge=0)
    seeds: list[SeedStatus]
    out: str
