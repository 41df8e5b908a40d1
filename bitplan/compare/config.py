"""What one experiment grid is: a frozen, validated ``GridConfig``; its defaults live here, once.

A grid trains one model on one data set for every factor × strategy cell and every seed (Section 4
of the seed paper, Tables 1–5). Everything about a single training run — epochs, optimizer,
learning rate, activation and gradient bits — is a ``TrainConfig`` template, so the grid and
``bitplan train`` share their defaults; the grid replaces its plan, seed and run directory per run.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bitplan.plan import Factor, Mapping, Strategy
from bitplan.train import TrainConfig

PAPER_FACTORS = (Factor.A, Factor.F, Factor.D)
PAPER_STRATEGIES = (Strategy.U, Strategy.C_plus, Strategy.C_minus, Strategy.R)
PAPER_SEEDS = (0, 1, 2, 3)  # "the results are averaged over four runs"


class GridConfig(BaseModel):
    """One experiment grid: factors × strategies × seeds of one model on one data set.

    Example:
        >>> config = GridConfig(train=TrainConfig(model="zoo:digits_cnn", data="digits", epochs=3),
        ...                     strategies=["U", "C-"], seeds=[0, 1], out=Path("runs/grid"))
        >>> [s.value for s in config.strategies], config.bits
        (['U', 'C-'], (4, 8))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: TrainConfig = Field(
        description="Template of every run: model, data and training options. Its plan/factor must be unset; "
        "its seed and out are replaced per run."
    )
    factors: list[Factor] = Field(default=list(PAPER_FACTORS), min_length=1, description="Factors to rank layers by.")
    strategies: list[Strategy] = Field(default=list(PAPER_STRATEGIES), min_length=1)
    bits: tuple[int, int] = Field(default=(4, 8), description="Inclusive bit range of the plans.")
    levels: list[int] | None = Field(default=None, description="Explicit bit levels (instead of `bits`).")
    uniform_bits: int | None = Field(default=None, ge=1, le=32, description="U's width (default: middle of range).")
    mapping: Mapping = Field(default=Mapping.rank, description="How factor values become bit levels.")
    plan_seed: int = Field(default=0, ge=0, description="Seed of R's random assignment (one R plan for all seeds).")
    seeds: list[int] = Field(default=list(PAPER_SEEDS), min_length=1, description="Training seeds of every cell.")
    match_size: bool = Field(
        default=False,
        description="Plan C+, C- and R with an average-bits budget equal to U's, so cells compare at similar size.",
    )
    out: Path = Field(default=Path("runs/compare"), description="Grid directory.")

    @model_validator(mode="after")
    def _consistent(self) -> GridConfig:
        for name in ("factors", "strategies", "seeds"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"`{name}` repeats an entry: {[getattr(v, 'value', v) for v in values]}")
        if min(self.seeds) < 0:
            raise ValueError(f"`seeds` must be non-negative, got {self.seeds}")
        if self.train.plan is not None or self.train.factor is not None:
            raise ValueError("`train` is a template: leave its `plan` and `factor` unset; the grid plans every cell")
        return self

    @property
    def cell_count(self) -> int:
        """Distinct cells: U once (it does not depend on the factor), every other strategy per factor."""
        shared = Strategy.U in self.strategies
        return int(shared) + len(self.factors) * (len(self.strategies) - int(shared))

    @property
    def run_count(self) -> int:
        """Training runs of the grid: cells × seeds."""
        return self.cell_count * len(self.seeds)
