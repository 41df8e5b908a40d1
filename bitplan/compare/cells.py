"""The cells of a grid: one plan per factor × strategy, made by ``bitplan.plan.make_plan``.

The model is profiled exactly as training builds it — sized to the data (classes, channels, input
size, vocabulary) with ``bitplan.train.setup.model_options`` — so every plan's fingerprint matches
the model it trains. U does not depend on the factor: it is planned once and shared by every
factor's row. With ``match_size`` every other strategy is planned with an average-bits budget equal
to U's, which makes the planner pick the largest order-preserving assignment not above U's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bitplan.compare.config import GridConfig
from bitplan.plan import BitPlan, Budget, BudgetKind, Factor, Strategy, make_plan
from bitplan.profile.schema import ModelProfile
from bitplan.train import MetricName

STRATEGY_SLUGS = {Strategy.U: "U", Strategy.C_plus: "Cplus", Strategy.C_minus: "Cminus", Strategy.R: "R"}


@dataclass(frozen=True)
class Cell:
    """One plan of the grid; ``factor`` is None for U, which every factor shares."""

    factor: Factor | None
    strategy: Strategy
    plan: BitPlan

    @property
    def slug(self) -> str:
        """File-name-safe label: ``U``, ``A_Cminus``, ``F_R``."""
        strategy = STRATEGY_SLUGS[self.strategy]
        return strategy if self.factor is None else f"{self.factor.value}_{strategy}"

    @property
    def label(self) -> str:
        """Human label: ``U``, ``A C-``."""
        return self.strategy.value if self.factor is None else f"{self.factor.value} {self.strategy.value}"


def grid_profile(config: GridConfig) -> tuple[ModelProfile, MetricName]:
    """Profile the grid's model as training will build it (sized to the data), on the meta device.

    Returns:
        The profile, and the metric the runs will report (accuracy, or perplexity for language models).

    Raises:
        SpecError, DataError, TraceError: The model or data cannot be loaded or traced.
    """
    from bitplan.data import Task, load_data
    from bitplan.frontends.torch import trace as profile_model
    from bitplan.spec import load_model, split_spec
    from bitplan.train.setup import model_options

    spec = config.train.model
    on_meta = split_spec(spec)[0].startswith("zoo:")
    probe = load_model(spec, device="meta" if on_meta else None)
    data = load_data(config.train.data, seed=config.seeds[0], example_inputs=probe.example_inputs)
    options = model_options(spec, data)
    metric = MetricName.perplexity if data.task is Task.language_model else MetricName.accuracy
    with torch.no_grad():
        loaded = load_model(spec, options=options, device="meta" if on_meta else None)
        return profile_model(loaded.model, loaded.example_inputs, name=spec), metric


def plan_cells(config: GridConfig, profile: ModelProfile) -> list[Cell]:
    """Every distinct cell of the grid: U once (if asked for), then each factor's other strategies.

    Args:
        config: The grid.
        profile: The model's profile (``grid_profile``).

    Returns:
        Cells in table order: U first, then factor-major in the order of ``config.strategies``.

    Raises:
        PlanError: Bad bits or levels, or (with ``match_size``) a budget no plan of a strategy reaches.
    """
    options = {
        "bits": config.bits,
        "levels": config.levels,
        "uniform_bits": config.uniform_bits,
        "mapping": config.mapping,
        "seed": config.plan_seed,
        "model": config.train.model,
    }
    # U is planned even when not asked for: it is the size the other strategies match.
    uniform = make_plan(profile, factor=config.factors[0], strategy=Strategy.U, **options)
    budget = Budget(kind=BudgetKind.avg_bits, value=uniform.estimates.avg_bits) if config.match_size else None
    cells = [Cell(None, Strategy.U, uniform)] if Strategy.U in config.strategies else []
    for factor in config.factors:
        for strategy in config.strategies:
            if strategy is Strategy.U:
                continue
            plan = make_plan(profile, factor=factor, strategy=strategy, budget=budget, **options)
            cells.append(Cell(factor, strategy, plan))
    return cells
