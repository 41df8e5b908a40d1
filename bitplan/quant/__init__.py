"""Fake quantizers for low-precision training (docs/quantizers.md has the formulas).

Each quantizer is a function that returns dequantized values, plus an autograd wrapper:

    >>> import torch
    >>> from bitplan import quant
    >>> w = torch.randn(16, 8, requires_grad=True)
    >>> w_q = quant.fake_quant_ste(w, 4, channel_dim=0)      # GEMMLOWP, per channel, STE
    >>> y = quant.quantize_gradient(w_q @ torch.randn(8, 2), 8, quant.GradQuant.sr)
    >>> y.sum().backward()                                     # dL/dy quantized on the way back

Large tensors run as one fused compiled kernel (see ``kernels``); results are the same either way.
"""

from bitplan.quant.gradient import DEFAULT_GRADIENT_BITS, quantize_gradient
from bitplan.quant.kernels import KernelPolicy, get_kernel_policy, kernel_policy, set_kernel_policy
from bitplan.quant.kept import KeepCodes, KeptCodes
from bitplan.quant.luq import SAWB_COEFFICIENTS, luq_quantize, sawb_clip, sawb_kept, sawb_quantize, sawb_ste
from bitplan.quant.observer import ActivationObserver, ActivationQuantizer
from bitplan.quant.options import FULL_PRECISION_BITS, GradQuant, WeightGranularity
from bitplan.quant.schedule import cyclic_bits
from bitplan.quant.uniform import (
    SCALE_FLOOR,
    dequantize_codes,
    fake_quant_kept,
    fake_quant_ste,
    uniform_codes,
    uniform_quantize,
)

__all__ = [
    # uniform affine (GEMMLOWP)
    "uniform_quantize",
    "fake_quant_ste",
    "uniform_codes",
    "dequantize_codes",
    "SCALE_FLOOR",
    # operands kept for backward as codes
    "fake_quant_kept",
    "sawb_kept",
    "KeepCodes",
    "KeptCodes",
    # activations
    "ActivationObserver",
    "ActivationQuantizer",
    # gradients
    "quantize_gradient",
    "DEFAULT_GRADIENT_BITS",
    # LUQ and SAWB
    "luq_quantize",
    "sawb_quantize",
    "sawb_ste",
    "sawb_clip",
    "SAWB_COEFFICIENTS",
    # schedules and choices
    "cyclic_bits",
    "GradQuant",
    "WeightGranularity",
    "FULL_PRECISION_BITS",
    # kernel selection
    "KernelPolicy",
    "get_kernel_policy",
    "set_kernel_policy",
    "kernel_policy",
]
