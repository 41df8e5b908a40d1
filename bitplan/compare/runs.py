"""Run directories keyed by configuration: what makes a grid resumable and its cache exact.

Every (cell, seed) run lives in ``<grid>/runs/<cell>-seed<s>-<key>/`` where ``key`` hashes the run's
whole configuration: model spec, data spec, plan content, seed, every training option, the torch
thread count (floating-point sums depend on it, so runs with other ``--jobs`` are other runs) and
the bitplan version. So a finished run (``final.json`` present, ``ok`` or ``failed``) is never trained
again; a run with a checkpoint but no ``final.json`` is resumed by the train engine; and changing
any option changes the key, so only the runs it affects train again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from bitplan.compare.cells import Cell
from bitplan.train import TrainConfig
from bitplan.train.folder import FINAL_FILE

RUNS_DIR = "runs"
KEY_LENGTH = 12


class RunState(str, Enum):
    """Where a run stands on disk."""

    finished = "finished"  # final.json present (status ok or failed)
    partial = "partial"  # started, not finished: train_run(resume=True) continues from its checkpoint, if any
    new = "new"  # never started


@dataclass(frozen=True)
class PlannedRun:
    """One (cell, seed) training run of a grid, with its fully resolved configuration."""

    cell: Cell
    seed: int
    config: TrainConfig

    @property
    def directory(self) -> Path:
        return self.config.out

    def state(self) -> RunState:
        """Finished, partial or new, from the files in the run directory."""
        if (self.directory / FINAL_FILE).is_file():
            return RunState.finished
        if self.directory.exists():
            return RunState.partial
        return RunState.new


def run_key(config: TrainConfig) -> str:
    """Hash of everything a run's outcome depends on (all of ``config`` but where it is written).

    Example:
        >>> a = TrainConfig(model="zoo:digits_cnn", data="digits", seed=0)
        >>> run_key(a) == run_key(a.model_copy(update={"out": Path("elsewhere")}))
        True
        >>> run_key(a) == run_key(a.model_copy(update={"seed": 1}))
        False
    """
    from bitplan import __version__

    payload = {"train": config.model_dump(mode="json", exclude={"out"}), "bitplan": __version__}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def plan_runs(
    template: TrainConfig, cells: list[Cell], seeds: list[int], grid_dir: Path, *, threads: int
) -> list[PlannedRun]:
    """Resolve every (cell, seed) run: the template with the cell's plan and the seed, keyed directory.

    Args:
        template: The grid's training template (its plan/factor unset).
        cells: The grid's cells.
        seeds: Training seeds.
        grid_dir: The grid directory; runs go in its ``runs/`` folder.
        threads: torch threads of every run, unless the template pins its own; part of the key.

    Returns:
        Runs cell-major, seeds in the given order.
    """
    runs = []
    for cell in cells:
        for seed in seeds:
            config = template.model_copy(
                update={"plan": cell.plan, "factor": None, "seed": seed, "threads": template.threads or threads}
            )
            # Validate the copy: model_copy skips validation, and the key must hash a valid config.
            config = TrainConfig.model_validate(config.model_dump())
            name = f"{cell.slug}-seed{seed}-{run_key(config)}"
            runs.append(PlannedRun(cell, seed, config.model_copy(update={"out": grid_dir / RUNS_DIR / name})))
    return runs


