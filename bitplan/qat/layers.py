"""Quantized twins of torch's GEMM layers, swapped in by changing ``module.__class__``.

A twin subclasses the original class and only overrides ``forward``: parameters, buffers and
state_dict keys stay exactly those of the plain layer, so a plain model loads the checkpoint of a
quantized one and ``strip`` just swaps the class back. Each forward quantizes the input, computes
with the quantized weight (once per call, however many time steps an RNN runs), and wraps the
output so its gradient is quantized in backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from bitplan.qat.runtime import LayerQuant, kept_while

CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE_FUNCTIONS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class QuantizedLinear:
    """``nn.Linear`` (or a subclass that keeps its forward) computing with quantized operands."""

    bitplan_quant: LayerQuant

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., in] -> [..., out]
        q = self.bitplan_quant
        keep = q.keeper(self, x)
        x, weight = q.input(self, x, keep), q.weight(self, "weight", keep)
        with kept_while(keep):
            return q.output(F.linear(x, weight, self.bias))


class QuantizedConv:
    """``nn.Conv1d/2d/3d`` (any groups, padding mode) computing with quantized operands."""

    bitplan_quant: LayerQuant

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, *spatial]
        q = self.bitplan_quant
        keep = q.keeper(self, x)
        conv = CONV_FUNCTIONS[len(self.kernel_size)]
        padding = self.padding
        if self.padding_mode != "zeros":
            # torch's own Conv forward pads with this attribute; there is no public accessor for it.
            # Reflect, replicate and circular padding copy values of x, so quantizing after padding
            # gives the same range and values, and the GEMM's saved input is the quantized tensor.
            x, padding = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0
        x, weight = q.input(self, x, keep), q.weight(self, "weight", keep)
        with kept_while(keep):
            y = conv(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return q.output(y)  # [B, C_out, *spatial']


class QuantizedConvTranspose:
    """``nn.ConvTranspose1d/2d/3d`` computing with quantized operands (weight: [C_in, C_out/g, *k])."""

    bitplan_quant: LayerQuant

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        q = self.bitplan_quant
        spatial = len(self.kernel_size)
        if output_size is None:
            output_padding = self.output_padding
        else:
            # the only way to turn an output_size into output_padding the way torch does it
            output_padding = self._output_padding(
                x, output_size, self.stride, self.padding, self.kernel_size, spatial, self.dilation
            )
        conv = CONV_TRANSPOSE_FUNCTIONS[spatial]
        keep = q.keeper(self, x)
        x, weight = q.input(self, x, keep), q.weight(self, "weight", keep)
        with kept_while(keep):
            y = conv(x, weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation)
        return q.output(y)


class QuantizedRNN:
    """``nn.LSTM/GRU/RNN`` computing with each planned ``weight_ih_l{k}``/``weight_hh_l{k}`` quantized.

    The weights are quantized once per call and substituted with ``torch.func.functional_call``
    (which refreshes the RNN's flattened weight list); the sequence input is quantized on entry and
    the output sequence's gradient in backward. The recurrence saves its own outputs for backward,
    so its operands are kept as autograd keeps them (floats), not as codes. The hidden state inside the recurrence runs in the
    layer's own kernel and stays in full precision.
    """

    bitplan_quant: LayerQuant
    bitplan_substituting: bool = False

    def forward(self, x: Any, hx: Any = None) -> Any:
        if self.bitplan_substituting:  # re-entered from functional_call below: the plain forward
            return super().forward(x, hx)
        q = self.bitplan_quant
        weights = {name: q.weight(self, name) for name in q.weight_bits}
        if isinstance(x, PackedSequence):
            x = x._replace(data=q.input(self, x.data))  # a namedtuple: _replace is its public API
        else:
            x = q.input(self, x)
        self.bitplan_substituting = True
        try:
            out, state = torch.func.functional_call(self, weights, (x, hx))
        finally:
            self.bitplan_substituting = False
            # functional_call puts the parameters back without refreshing the RNN's list of flattened
            # weights, which would keep this call's quantized weights alive until the next call
            self._init_flat_weights()
        if isinstance(out, PackedSequence):
            return out._replace(data=q.output(out.data)), state
        return q.output(out), state


# plain class -> twin mixin; subclasses of these (NonDynamicallyQuantizableLinear, ...) qualify
# when they do not override forward.
TWINS: dict[type[nn.Module], type] = {
    nn.Linear: QuantizedLinear,
    nn.Conv1d: QuantizedConv,
    nn.Conv2d: QuantizedConv,
    nn.Conv3d: QuantizedConv,
    nn.ConvTranspose1d: QuantizedConvTranspose,
    nn.ConvTranspose2d: QuantizedConvTranspose,
    nn.ConvTranspose3d: QuantizedConvTranspose,
    nn.LSTM: QuantizedRNN,
    nn.GRU: QuantizedRNN,
    nn.RNN: QuantizedRNN,
}

_twin_classes: dict[type[nn.Module], type[nn.Module]] = {}


def twin_base(module: nn.Module) -> type[nn.Module] | None:
    """The torch layer class whose forward ``module`` runs, or None when it has no quantized twin."""
    for base in TWINS:
        if isinstance(module, base) and type(module).forward is base.forward:
            return base
    return None


def twin_class(cls: type[nn.Module], base: type[nn.Module]) -> type[nn.Module]:
    """The quantized subclass of ``cls`` (cached, so every swap of one class gives the same twin)."""
    if cls not in _twin_classes:
        _twin_classes[cls] = type(f"Quantized{cls.__name__}", (TWINS[base], cls), {"__module__": __name__})
    return _twin_classes[cls]


def channel_dim_of(base: type[nn.Module]) -> int:
    """The output-channel dimension of the weight of ``base``: 1 for transposed convs, else 0."""
    return 1 if TWINS[base] is QuantizedConvTranspose else 0
