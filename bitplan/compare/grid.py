"""``run_grid``: plan every cell, train every (cell, seed) run that has not finished, write the report.

Layout of a grid directory::

    results.json  results.md  results.csv  report.html  figure7.png  bars_<factor>.png
    plans/<cell>.json                  one plan per cell (U once: plans/U.json)
    runs/<cell>-seed<s>-<key>/         one train_run directory per (cell, seed), keyed by its configuration
    sections/*.html                    optional extra report sections (see bitplan.compare.html)

``results.*`` are rewritten after every finished run, so an interrupted grid can be reported with
``bitplan report DIR`` and resumed by running the same ``bitplan compare`` command again.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from bitplan.compare.cells import Cell, grid_profile, plan_cells
from bitplan.compare.config import GridConfig
from bitplan.compare.executor import execute, threads_per_job
from bitplan.compare.report import write_report, write_tables
from bitplan.compare.result import GridResult
from bitplan.compare.runs import PlannedRun, RunState, plan_runs
from bitplan.compare.summarize import CellRuns, summarize_grid
from bitplan.compare.tables import twin_notes
from bitplan.plan import save_plan
from bitplan.train import RunResult
from bitplan.train.folder import check_grid_folder, hold_folder

PLANS_DIR = "plans"


def run_grid(config: GridConfig, *, jobs: int = 1, progress: bool = True) -> GridResult:
    """Run the experiment grid of ``config`` and write its tables, figures and report into ``config.out``.

    Finished runs (``final.json`` present, ok or failed) are read, never trained again; runs that
    were interrupted resume from their checkpoints; runs whose configuration changed get a new
    directory and train from scratch. The thread count (``cores // jobs`` unless the template sets
    ``threads``) is part of each run's key. ``config.out`` is locked for the call.

    Args:
        config: The grid: training template, factors, strategies, bits, seeds, size matching, out.
        jobs: Runs to train at once in separate processes (each with ``cores // jobs`` threads).
        progress: Show progress on stderr (the train engine's bars when ``jobs`` is 1).

    Returns:
        The grid's ``GridResult`` (also written to ``results.json``).

    Raises:
        FolderBusyError: Another process holds ``config.out``.
        TrainingError: ``config.out`` is a ``bitplan train`` run folder.
        SpecError, DataError, TraceError, PlanError: The model, data or a plan cannot be made.
        TrainingError: A run cannot train (e.g. a checkpoint from another configuration).

    Example:
        >>> from bitplan.train import TrainConfig
        >>> config = GridConfig(train=TrainConfig(model="zoo:digits_cnn", data="digits", epochs=3),
        ...                     factors=["A"], strategies=["U", "C+", "C-"], seeds=[0, 1, 2])
        >>> result = run_grid(config, jobs=2)  # doctest: +SKIP
        >>> result.row("A", "C-").mean, result.row("A", "C-").variance  # doctest: +SKIP
        (96.9, 0.11)
    """
    check_grid_folder(config.out)
    with hold_folder(config.out, "this grid (`-o`)"):
        return _run_grid(config, jobs=jobs, progress=progress)


def _run_grid(config: GridConfig, *, jobs: int, progress: bool) -> GridResult:
    out = config.out
    console = Console(stderr=True, quiet=not progress)
    profile, metric_name = grid_profile(config)
    cells = plan_cells(config, profile)
    runs = plan_runs(config.train, cells, config.seeds, out, threads=threads_per_job(jobs))
    stored = [_store_cell(cell, [run for run in runs if run.cell is cell], out) for cell in cells]
    initial = summarize_grid(config, stored, out, metric_name=metric_name)
    write_tables(initial, out)
    for note in twin_notes(initial):
        console.print(f"[yellow]note:[/] {note}")

    pending = [run for run in runs if run.state() is not RunState.finished]
    console.print(
        f"[bold]bitplan compare[/]: {len(cells)} cells × {len(config.seeds)} seeds = {len(runs)} runs; "
        f"{len(runs) - len(pending)} already finished, {len(pending)} to train"
        f"{f' in {jobs} processes' if jobs > 1 and len(pending) > 1 else ''} → {out}"
    )
    done = len(runs) - len(pending)

    def finished(run: PlannedRun, result: RunResult) -> None:
        nonlocal done
        done += 1
        value = "-" if result.metric is None else f"{result.metric:.3f}"
        console.print(
            f"[{done}/{len(runs)}] {run.cell.label} seed {run.seed}: {result.status}, "
            f"{result.metric_name.value} {value} ({result.seconds:.0f} s)"
        )
        write_tables(summarize_grid(config, stored, out, metric_name=metric_name), out)

    execute(pending, jobs=jobs, progress=progress, on_finished=finished)
    result = summarize_grid(config, stored, out, metric_name=metric_name)
    write_report(result, out)
    console.print(f"wrote {out / 'results.md'} and {out / 'report.html'}")
    return result


def _store_cell(cell: Cell, runs: list[PlannedRun], out: Path) -> CellRuns:
    """Save the cell's plan under ``plans/`` and describe the cell by paths relative to ``out``."""
    relative = f"{PLANS_DIR}/{cell.slug}.json"
    save_plan(cell.plan, out / relative)
    directories = tuple((run.seed, run.directory.relative_to(out).as_posix()) for run in runs)
    return CellRuns(factor=cell.factor, strategy=cell.strategy, plan_file=relative, runs=directories)
