"""``--grid``: every factor × strategy plan for one range, and one table comparing them (Tables 1–2)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bitplan.atomic import atomic_write_text
from bitplan.errors import PlanError
from bitplan.plan.io import save_plan
from bitplan.plan.planner import make_plan
from bitplan.plan.schema import BitPlan, Budget, Factor, Strategy
from bitplan.profile.schema import ModelProfile

GRID_SCHEMA_VERSION = 1
GRID_FILE = "grid.json"
_STRATEGY_SLUGS = {Strategy.U: "U", Strategy.C_plus: "Cplus", Strategy.C_minus: "Cminus", Strategy.R: "R"}


class GridRow(BaseModel):
    """One plan of the grid, summarised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: Factor
    strategy: Strategy
    file: str = Field(description="File name of the plan, relative to the grid's directory.")
    avg_bits: float
    mbit: float
    size_ratio_fp32: float
    size_ratio_uniform: float
    bitops_forward: int
    bitops_training: int
    bitops_training_ratio_fp32: float
    bitops_training_ratio_uniform: float
    histogram: dict[int, int]


class GridResult(BaseModel):
    """Every factor × strategy plan of one model and range, side by side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = GRID_SCHEMA_VERSION
    model: str
    fingerprint: str
    levels: list[int]
    uniform_bits: int
    budget: Budget | None = None
    rows: list[GridRow]


def model_slug(spec: str) -> str:
    """A file-name-safe name for a model spec: ``zoo:resnet20`` -> ``resnet20``."""
    name = spec.removeprefix("zoo:")
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "model"


def levels_slug(levels: Sequence[int]) -> str:
    """``4-8`` for a contiguous range, ``8.10.12`` for an explicit list."""
    if list(levels) == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]}-{levels[-1]}"
    return ".".join(str(level) for level in levels)


def plan_filename(plan: BitPlan) -> str:
    """The conventional file name of a plan: ``<model>_<factor>_<strategy>_<range>[_<budget>].json``."""
    rule = f"dpc-{plan.factor.value}" if plan.preset else f"{plan.factor.value}_{_STRATEGY_SLUGS[plan.strategy]}"
    parts = [model_slug(plan.model), rule, levels_slug(plan.levels)]
    if plan.budget is not None:
        parts.append(f"{plan.budget.kind.value}{plan.budget.value:g}")
    return "_".join(parts) + ".json"


def make_grid(
    profile: ModelProfile,
    *,
    factors: Sequence[Factor | str] = tuple(f for f in Factor if f.structural),
    strategies: Sequence[Strategy | str] = tuple(Strategy.paper()),
    **plan_options: Any,
) -> tuple[list[BitPlan], GridResult]:
    """Plan every factor × strategy combination with the same options.

    Args:
        profile: The model profile.
        factors: Factors to plan by (default all five).
        strategies: Strategies (default U, C+, C-, R).
        **plan_options: Passed to ``make_plan`` (bits, levels, seed, budget, keep, ...).

    Returns:
        The plans in factor-major order and the comparison table.
    """
    if not factors or not strategies:
        raise PlanError("a grid needs at least one factor and one strategy.")
    plans = [
        make_plan(profile, factor=factor, strategy=strategy, **plan_options)
        for factor in factors
        for strategy in strategies
    ]
    first = plans[0]
    rows = [
        GridRow(
            factor=plan.factor,
            strategy=plan.strategy,
            file=plan_filename(plan),
            avg_bits=plan.estimates.avg_bits,
            mbit=plan.estimates.mbit,
            size_ratio_fp32=plan.estimates.size_ratio_fp32,
            size_ratio_uniform=plan.estimates.size_ratio_uniform,
            bitops_forward=plan.estimates.bitops_forward,
            bitops_training=plan.estimates.bitops_training,
            bitops_training_ratio_fp32=plan.estimates.bitops_training_ratio_fp32,
            bitops_training_ratio_uniform=plan.estimates.bitops_training_ratio_uniform,
            histogram=plan.estimates.histogram,
        )
        for plan in plans
    ]
    grid = GridResult(
        model=first.model,
        fingerprint=first.fingerprint,
        levels=first.levels,
        uniform_bits=first.uniform_bits,
        budget=first.budget,
        rows=rows,
    )
    return plans, grid


def save_grid(plans: Sequence[BitPlan], grid: GridResult, directory: str | os.PathLike) -> list[Path]:
    """Write every plan under its conventional name and ``grid.json`` into ``directory`` (atomically)."""
    folder = Path(directory)
    written = [save_plan(plan, folder / plan_filename(plan)) for plan in plans]
    written.append(atomic_write_text(folder / GRID_FILE, grid.model_dump_json(indent=2) + "\n"))
    return written
