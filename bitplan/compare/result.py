"""``results.json``: a grid's outcome per factor × strategy (Tables 1 and 2 of the seed paper in one).

Each row pairs the trained outcome (mean final test metric over seeds and its variance) with the
plan's size and compute (average bits, MBit, BitOPs ratios). ``variance`` is the population
variance (ddof = 0, numpy's default ``np.var``) over the seeds that finished ``ok``, the same
definition ``bitplan train``'s ``summary.json`` uses; failed and pending seeds are counted but left
out of mean and variance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bitplan.compare.config import GridConfig
from bitplan.plan import Factor, Strategy
from bitplan.train import MetricName

COMPARE_SCHEMA_VERSION = 1
VARIANCE_DEFINITION = "population variance (ddof=0) of the final test metric over the seeds that finished ok"


class SeedRun(BaseModel):
    """One seed of one cell."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    status: Literal["ok", "failed", "pending"] = Field(description="pending: not finished (yet).")
    metric: float | None = Field(description="Final test metric (null unless some epoch finished).")
    epochs_done: int = Field(ge=0)
    seconds: float = Field(ge=0, description="Training wall time of the run.")
    message: str = ""
    run_dir: str = Field(description="The run directory, relative to the grid directory.")


class CellRow(BaseModel):
    """One factor × strategy cell: outcome over seeds beside the plan's size and compute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: Factor = Field(description="The factor whose row this is (U appears in every factor's row).")
    strategy: Strategy
    shared: bool = Field(description="True for U: one plan and one set of runs shown in every factor's row.")
    plan_file: str = Field(description="The plan, relative to the grid directory.")
    bits: str = Field(description="The #Bit column: U's width, or the range of the plan's levels, e.g. `4 to 8`.")
    mean: float | None = Field(description="Mean final test metric over ok seeds (null if none).")
    variance: float | None = Field(description="Population variance (ddof=0) over ok seeds.")
    std: float | None
    ok: int = Field(ge=0)
    failed: int = Field(ge=0)
    pending: int = Field(ge=0)
    avg_bits: float = Field(description="Parameter-weighted mean bits of the planned weights.")
    mbit: float = Field(description="Model size in MBit (10^6 bits).")
    size_ratio_fp32: float
    size_ratio_uniform: float
    bitops_forward_ratio_fp32: float
    bitops_training_ratio_fp32: float
    bitops_training_ratio_uniform: float
    histogram: dict[int, int] = Field(description="Bits -> planned GEMMs at that width.")
    same_bits_as: list[str] = Field(
        default_factory=list,
        description="Other cells whose plan gives every layer the same bits (e.g. an R plan that happens to equal C-).",
    )
    runs: list[SeedRun]


class GridResult(BaseModel):
    """``results.json`` of ``bitplan compare``: the grid's configuration and one row per factor × strategy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = COMPARE_SCHEMA_VERSION
    bitplan_version: str
    config: GridConfig
    model: str
    data: str
    metric_name: MetricName = Field(description="accuracy (%, higher is better) or perplexity (lower is better).")
    variance: str = Field(default=VARIANCE_DEFINITION, description="Which variance the rows report.")
    runs_total: int = Field(ge=0)
    runs_finished: int = Field(ge=0)
    rows: list[CellRow] = Field(description="Factor-major, strategies in the grid's order.")

    @property
    def complete(self) -> bool:
        """Every run of the grid has finished (ok or failed)."""
        return self.runs_finished == self.runs_total

    def row(self, factor: Factor | str, strategy: Strategy | str) -> CellRow:
        """The row of ``factor`` × ``strategy``.

        Raises:
            KeyError: The grid has no such cell.
        """
        wanted = (Factor(factor), Strategy(strategy))
        for row in self.rows:
            if (row.factor, row.strategy) == wanted:
                return row
        raise KeyError(f"no row {wanted[0].value} × {wanted[1].value} in this grid")
