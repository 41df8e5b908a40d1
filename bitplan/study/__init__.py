"""The matrix experiments of the seed paper's Section 3: how accumulation, usage frequency and depth
change the error a low-precision operand puts into a product. See docs/study.md."""

from bitplan.study.config import Distribution, QuantizedOperand, StudyConfig, StudyError, StudyFactor
from bitplan.study.report import render_factor_png, write_study
from bitplan.study.result import FactorResult, StudyPoint, StudyResult, points_to_csv
from bitplan.study.runner import run_study
from bitplan.study.sampling import PointOperands, point_seed, sample_operands

__all__ = [
    # configuration
    "StudyConfig",
    "StudyFactor",
    "Distribution",
    "QuantizedOperand",
    "StudyError",
    # running and writing
    "run_study",
    "write_study",
    "render_factor_png",
    "points_to_csv",
    # results
    "StudyResult",
    "FactorResult",
    "StudyPoint",
    # reproducing a single point
    "sample_operands",
    "point_seed",
    "PointOperands",
]
