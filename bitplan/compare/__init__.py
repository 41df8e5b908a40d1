"""The paper's experiment grids (Section 4, Tables 1–5, Figure 7): ``bitplan compare`` and ``bitplan report``.

``run_grid`` plans every factor × strategy cell with ``bitplan.plan``, trains every (cell, seed)
with ``bitplan.train`` (cached by configuration, resumable, optionally in parallel processes) and
writes ``results.json/.md/.csv``, figures and a self-contained ``report.html`` (docs/compare.md).

Example:
    >>> from pathlib import Path
    >>> from bitplan.compare import GridConfig, run_grid
    >>> from bitplan.train import TrainConfig
    >>> config = GridConfig(train=TrainConfig(model="zoo:digits_cnn", data="digits", epochs=3),
    ...                     strategies=["U", "C+", "C-"], seeds=[0, 1, 2], out=Path("runs/digits"))
    >>> result = run_grid(config)  # doctest: +SKIP
"""

from bitplan.compare.config import GridConfig
from bitplan.compare.grid import run_grid
from bitplan.compare.report import load_grid, render_report, report
from bitplan.compare.result import CellRow, GridResult, SeedRun
from bitplan.compare.run_report import RunReport, render_run_report
from bitplan.compare.runs import run_key

__all__ = [
    # running
    "run_grid",
    "GridConfig",
    # reporting
    "render_report",
    "render_run_report",
    "report",
    "load_grid",
    # files
    "GridResult",
    "CellRow",
    "SeedRun",
    "RunReport",
    "run_key",
]
