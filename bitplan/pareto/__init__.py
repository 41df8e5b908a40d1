"""Accuracy against size for every planning method: ``bitplan pareto`` (docs/pareto.md).

``run_pareto`` makes every method's plans at every mean-bits budget from one profile of a trained
model, scores each by post-training quantization (PTQ) or quantization-aware fine-tuning (QAT),
and writes ``pareto.json`` with tables, a figure and a report section. Uniform and random plans at
the same budgets are the baselines every method is measured against.

Example:
    >>> from pathlib import Path
    >>> from bitplan.pareto import ParetoConfig, run_pareto
    >>> config = ParetoConfig(model="zoo:digits_cnn", data="digits", checkpoint=Path("runs/digits"),
    ...                       levels=[1, 2, 3, 4, 8], budgets=[1.5, 2, 3], methods=["uniform", "random", "A:C-"])
    >>> result = run_pareto(config)  # doctest: +SKIP
"""

from bitplan.pareto.methods import parse_methods
from bitplan.pareto.result import ParetoConfig, ParetoPoint, ParetoResult, SkippedPoint
from bitplan.pareto.sweep import run_pareto

__all__ = [
    "run_pareto",
    "ParetoConfig",
    "ParetoResult",
    "ParetoPoint",
    "SkippedPoint",
    "parse_methods",
]
