"""From plans and run directories to ``GridResult`` rows: mean and variance over seeds, size, compute.

The same code summarises a grid while it runs and re-renders one from disk (``bitplan report``):
both describe the grid as ``CellRuns`` (a plan file and its run directories) and read every number
from the files — ``final.json`` per run, the plan JSON per cell — never from memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bitplan.compare.config import GridConfig
from bitplan.compare.result import CellRow, GridResult, SeedRun
from bitplan.plan import BitPlan, Factor, Strategy, load_plan
from bitplan.train import MetricName, RunResult, summarize
from bitplan.train.loop import read_result


@dataclass(frozen=True)
class CellRuns:
    """One cell as stored: its plan file and the run directory of each seed (paths relative to the grid)."""

    factor: Factor | None  # None for U, shared by every factor
    strategy: Strategy
    plan_file: str
    runs: tuple[tuple[int, str], ...]  # (seed, run_dir)


def bits_label(plan: BitPlan) -> str:
    """The paper's #Bit column: ``6`` for U, ``4 to 8`` for a contiguous range, ``8,10,12`` otherwise."""
    if plan.strategy is Strategy.U:
        return str(plan.uniform_bits)
    levels = plan.levels
    if levels == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]} to {levels[-1]}"
    return ",".join(str(level) for level in levels)


def seed_run(seed: int, run_dir: str, result: RunResult | None) -> SeedRun:
    """One seed's entry: from its ``final.json``, or pending when there is none."""
    if result is None:
        return SeedRun(seed=seed, status="pending", metric=None, epochs_done=0, seconds=0.0, run_dir=run_dir)
    return SeedRun(
        seed=seed,
        status=result.status,
        metric=result.metric,
        epochs_done=result.epochs_done,
        seconds=result.seconds,
        message=result.message,
        run_dir=run_dir,
    )


def cell_label(cell: CellRuns) -> str:
    """``U`` for the shared uniform cell, else ``A C-``."""
    return cell.strategy.value if cell.factor is None else f"{cell.factor.value} {cell.strategy.value}"


def twins(cells: list[CellRuns], plans: dict[str, BitPlan]) -> dict[str, list[str]]:
    """Plan file -> labels of the other cells whose plans assign every layer the same bits."""
    layout = {cell.plan_file: tuple(layer.bits for layer in plans[cell.plan_file].layers) for cell in cells}
    return {
        cell.plan_file: [
            cell_label(other) for other in cells
            if other.plan_file != cell.plan_file and layout[other.plan_file] == layout[cell.plan_file]
        ]
        for cell in cells
    }


def cell_row(
    factor: Factor, cell: CellRuns, plan: BitPlan, results: list[RunResult | None], same_bits_as: list[str]
) -> CellRow:
    """The row of ``cell`` under ``factor``: mean and population variance over ok seeds, plan estimates."""
    finished = [result for result in results if result is not None]
    stats = summarize(finished, "")
    estimates = plan.estimates
    return CellRow(
        factor=factor,
        strategy=cell.strategy,
        shared=cell.factor is None,
        plan_file=cell.plan_file,
        bits=bits_label(plan),
        mean=stats.mean,
        variance=stats.variance,
        std=stats.std,
        ok=stats.ok,
        failed=stats.failed,
        pending=len(results) - len(finished),
        avg_bits=estimates.avg_bits,
        mbit=estimates.mbit,
        size_ratio_fp32=estimates.size_ratio_fp32,
        size_ratio_uniform=estimates.size_ratio_uniform,
        bitops_forward_ratio_fp32=estimates.bitops_forward_ratio_fp32,
        bitops_training_ratio_fp32=estimates.bitops_training_ratio_fp32,
        bitops_training_ratio_uniform=estimates.bitops_training_ratio_uniform,
        histogram=estimates.histogram,
        same_bits_as=same_bits_as,
        runs=[seed_run(seed, run_dir, result) for (seed, run_dir), result in zip(cell.runs, results)],
    )


def summarize_grid(
    config: GridConfig, cells: list[CellRuns], grid_dir: Path, *, metric_name: MetricName
) -> GridResult:
    """Read every plan and ``final.json`` of the grid and build its rows (U repeated in each factor's row).

    Args:
        config: The grid's configuration.
        cells: Its cells as stored (U once, with ``factor`` None).
        grid_dir: The grid directory the cells' paths are relative to.
        metric_name: The metric to report when no run has finished yet (finished runs take precedence).

    Returns:
        The ``GridResult``, factor-major with strategies in ``config.strategies`` order.
    """
    from bitplan import __version__

    plans = {cell.plan_file: load_plan(grid_dir / cell.plan_file) for cell in cells}
    results = {cell.plan_file: [read_result(grid_dir / run_dir) for _, run_dir in cell.runs] for cell in cells}
    finished = [result for outcomes in results.values() for result in outcomes if result is not None]
    if finished:
        metric_name = finished[0].metric_name
    same = twins(cells, plans)
    by_key = {(cell.factor, cell.strategy): cell for cell in cells}
    rows = []
    for factor in config.factors:
        for strategy in config.strategies:
            cell = by_key.get((None, strategy)) if strategy is Strategy.U else by_key.get((factor, strategy))
            if cell is not None:
                plan_file = cell.plan_file
                rows.append(cell_row(factor, cell, plans[plan_file], results[plan_file], same[plan_file]))
    return GridResult(
        bitplan_version=__version__,
        config=config,
        model=config.train.model,
        data=config.train.data,
        metric_name=metric_name,
        runs_total=sum(len(cell.runs) for cell in cells),
        runs_finished=len(finished),
        rows=rows,
    )


def cells_of(result: GridResult) -> list[CellRuns]:
    """The stored cells of a ``GridResult`` (U rows collapse back into one shared cell)."""
    cells: dict[str, CellRuns] = {}
    for row in result.rows:
        cells.setdefault(
            row.plan_file,
            CellRuns(
                factor=None if row.shared else row.factor,
                strategy=row.strategy,
                plan_file=row.plan_file,
                runs=tuple((run.seed, run.run_dir) for run in row.runs),
            ),
        )
    return list(cells.values())
