"""One exception hierarchy, so the CLI can turn any known failure into one clear paragraph.

Every message states what went wrong, the offending name, and the fix.
"""

from __future__ import annotations


class BitplanError(Exception):
    """Base class of every error bitplan raises on purpose (exit code 2 in the CLI)."""

    exit_code = 2


class SpecError(BitplanError):
    """A model or data spec that cannot be resolved (unknown name, missing file, bad option)."""


class TraceError(BitplanError):
    """A model that could not be traced by any tracer."""


class OnnxError(BitplanError):
    """An ONNX file that is corrupt, shape-less, or uses an unsupported construct."""


class PlanError(BitplanError):
    """A plan that cannot be made, read, or applied (bad factor, unreachable budget, wrong model)."""


class DataError(BitplanError):
    """A dataset that cannot be read from the path given."""


class TrainingError(BitplanError):
    """Training that cannot proceed (non-finite loss, unusable checkpoint)."""


class ExportError(BitplanError):
    """A model that cannot be exported: a missing optional dependency, a width the format cannot hold."""


class NonFiniteWeightsError(BitplanError):
    """A model whose weights hold NaN or Inf: no quantization grid, and no export, represents them."""
