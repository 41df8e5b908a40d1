"""A plan as an NVIDIA ModelOpt ``quant_cfg`` (for TensorRT / TensorRT-LLM), JSON without ModelOpt installed.

ModelOpt matches quantizer names with wildcards; each planned module gets exact keys
``<module>.weight_quantizer`` (``num_bits`` = the layer's bits, ``axis`` 0 per output channel or
None per tensor) and, when the plan has activation bits, ``<module>.input_quantizer``
(``num_bits``, ``axis`` None: one range per tensor). ``"default": {"enable": false}`` leaves every
other quantizer off. ModelOpt calibrates its own scales (symmetric, max calibration): the widths
carry over, the values are ModelOpt's. The config goes to ``mtq.quantize(model, config, forward_loop)``.
Its integer grid is symmetric (largest code 2^(b−1) − 1), so it holds no 1-bit weights: those are
widened to 2 bits with a warning (``--strict`` refuses).
"""

from __future__ import annotations

from bitplan.choices import FULL_PRECISION_BITS, WeightGranularity
from bitplan.export.weights import widen
from bitplan.plan import BitPlan

ALGORITHM = "max"
MODELOPT_BITS = list(range(2, FULL_PRECISION_BITS))
"""Integer widths ModelOpt's symmetric quantizer holds (1 bit would leave it no nonzero code)."""
TARGET = "ModelOpt"


def to_modelopt(plan: BitPlan, *, strict: bool = False) -> dict:
    """The ModelOpt quantization config of ``plan``: ``{"quant_cfg": {...}, "algorithm": "max"}``.

    Args:
        plan: The plan.
        strict: Refuse a width ModelOpt cannot hold instead of widening it.

    Returns:
        A JSON-serialisable dict, per-layer ``num_bits`` and ``axis``.

    Raises:
        ExportError: With ``strict``, a 1-bit weight.

    Example:
        >>> to_modelopt(plan)["quant_cfg"]["fc.weight_quantizer"]  # doctest: +SKIP
        {'num_bits': 4, 'axis': 0}
    """
    axis = 0 if plan.weight_granularity is WeightGranularity.channel else None
    quant_cfg: dict[str, dict] = {}
    for entry in plan.layers:
        if entry.weight is None or entry.bits >= FULL_PRECISION_BITS:
            continue
        module, _, attribute = entry.weight.rpartition(".")
        quantizer = f"{module}.weight_quantizer" if attribute == "weight" else f"{module}.{attribute}_quantizer"
        quant_cfg[quantizer] = {"num_bits": widen(entry.bits, MODELOPT_BITS, entry.weight, TARGET, strict=strict), "axis": axis}
        if plan.activation_bits is not None:
            quant_cfg[f"{module}.input_quantizer"] = {"num_bits": plan.activation_bits, "axis": None}
    quant_cfg["default"] = {"enable": False}
    return {"quant_cfg": quant_cfg, "algorithm": ALGORITHM}
