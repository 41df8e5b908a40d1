"""What a quantized layer computes with: its bits, its input-range observer, and the model's shared RNG.

``apply`` attaches one ``LayerQuant`` to every planned module (as a plain attribute, so it never
reaches the state_dict) and one ``QuantRuntime`` shared by all of them. The three quantization
points of a GEMM Y = X·W live here, each a call into ``bitplan.quant``:

- ``weight``: W fake-quantized to the planned bits (per output channel or per tensor, nearest, STE);
- ``input``: X fake-quantized to the activation bits, range = batch min/max in training and the
  running average (0.9·running + 0.1·batch) in eval;
- ``output``: identity forward; in backward dL/dY quantized to the gradient bits (SR, LUQ or none).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from bitplan import quant
from bitplan.choices import ForwardQuant, ZeroPoint
from bitplan.quant.kept import KeepCodes, Requantized, keeping_possible, keeps_codes

OBSERVER = "bitplan_observer"
"""Attribute of a quantized layer's input observer (``quant.ActivationObserver``, non-persistent buffers)."""

NOT_QUANTIZED = 32
"""Bit-width meaning "keep in full precision" (plans use 32 for layers they leave alone)."""


class QuantRuntime:
    """State shared by every quantized layer of one model: stochastic-rounding RNG and a bit cap.

    One generator per device, seeded from ``seed``; distributed training passes a per-rank seed so
    each rank draws its own stream. ``global_rng`` makes rounding draw from torch's global
    generator instead: ``torch.compile`` cannot trace a ``torch.Generator`` argument (each use
    would split the compiled graph), so compiled training sets it and seeds the global generator
    per rank. ``bit_cap`` (set by the cyclic-precision schedule) lowers every planned
    weight/activation width to at most that many bits.
    """

    def __init__(self, seed: int, *, gradient_samples: int = 1) -> None:
        self.seed = seed
        self.gradient_samples = gradient_samples
        self.bit_cap: int | None = None
        self.global_rng = False
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The generator for tensors on ``device`` (created on first use); None with ``global_rng``."""
        if self.global_rng:
            return None
        key = _device_key(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=key).manual_seed(self.seed)
        return self._generators[key]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Generator states by device, for checkpoints (resuming draws the same numbers)."""
        return {key: generator.get_state() for key, generator in self._generators.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore generator states saved by ``state_dict``."""
        for key, generator_state in state.items():
            self._generators.setdefault(key, torch.Generator(device=key)).set_state(generator_state)


def _device_key(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


@dataclass
class LayerQuant:
    """How one module's GEMMs are quantized (see the module docstring for the three points).

    Attributes:
        original_class: The module's class before ``apply`` (``strip`` restores it).
        weight_bits: Planned bits per parameter attribute, e.g. ``{"weight": 4}`` or
            ``{"weight_ih_l0": 6, "weight_hh_l0": 8}``; only widths below 32.
        activation_bits: Bits of the GEMM input, None to keep it in full precision.
        gradient_bits: Bits of dL/dY in backward (SR), None to keep it in full precision.
        gradient_quant: Which gradient quantizer runs in backward.
        channel_dim: Output-channel dimension of the weight for per-channel ranges, None per tensor.
        forward_quant: Uniform min/max (Banner, CPT) or SAWB (LUQ's 4-bit forward).
        runtime: The model's shared RNG and bit cap.
        grid: The plan's uniform grid (float or integer zero point) for weights and activations.
    """

    original_class: type[nn.Module]
    weight_bits: dict[str, int]
    activation_bits: int | None
    gradient_bits: int | None
    gradient_quant: quant.GradQuant
    channel_dim: int | None
    forward_quant: ForwardQuant
    runtime: QuantRuntime
    grid: ZeroPoint = ZeroPoint.float

    def capped(self, bits: int) -> int:
        """``bits`` lowered to the runtime's cap (cyclic precision), never below 1."""
        cap = self.runtime.bit_cap
        return bits if cap is None else max(1, min(bits, cap))

    def keeper(self, module: nn.Module, x: object) -> KeepCodes | None:
        """Where this forward's quantized operands go to be kept as codes for backward: a fresh
        ``KeepCodes`` when the GEMM will save anything (grad mode on, ``x`` or a planned weight
        requires grad) and hooks can run, else None (the operands are kept as autograd keeps them)."""
        wants_grad = isinstance(x, torch.Tensor) and x.requires_grad
        wants_grad = wants_grad or any(getattr(module, name).requires_grad for name in self.weight_bits)
        return KeepCodes() if wants_grad and keeping_possible() else None

    def weight(self, module: nn.Module, name: str, keep: KeepCodes | None = None) -> torch.Tensor:
        """The parameter ``name`` of ``module`` as the GEMM sees it (fake-quantized when planned);
        with ``keep``, its quantized value is kept for backward as codes."""
        tensor = getattr(module, name)
        bits = self.weight_bits.get(name)
        if bits is None:
            return tensor
        return quantize_weight(tensor, self.capped(bits), self.forward_quant, self.channel_dim, self.grid, keep)

    def input(self, module: nn.Module, x: torch.Tensor, keep: KeepCodes | None = None) -> torch.Tensor:
        """The GEMM input ``x`` (any shape) fake-quantized to the activation bits (kept as codes with ``keep``)."""
        if self.activation_bits is None or not x.is_floating_point():
            return x
        bits = self.capped(self.activation_bits)
        return quantize_activation(x, bits, getattr(module, OBSERVER), self.forward_quant, self.grid, keep)

    def output(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` unchanged; its gradient is quantized in the backward pass."""
        if self.gradient_quant is quant.GradQuant.none or not y.requires_grad:
            return y
        return quantize_output_gradient(y, self)


def quantize_output_gradient(y: torch.Tensor, layer: LayerQuant) -> torch.Tensor:
    """``quant.quantize_gradient`` with the layer's settings and its device's generator (None with ``global_rng``)."""
    return quant.quantize_gradient(
        y,
        layer.gradient_bits,
        layer.gradient_quant,
        generator=layer.runtime.generator(y.device),
        samples=layer.runtime.gradient_samples,
    )


def kept_while(keep: KeepCodes | None) -> AbstractContextManager:
    """The context a GEMM runs in: ``keep`` (its quantized operands saved as codes) or nothing."""
    return keep if keep is not None else nullcontext()


def quantize_weight(
    weight: torch.Tensor,
    bits: int,
    forward_quant: ForwardQuant,
    channel_dim: int | None,
    grid: ZeroPoint,
    keep: KeepCodes | None = None,
) -> torch.Tensor:
    """Fake-quantize a weight (round to nearest, STE): SAWB per tensor, or uniform per channel or tensor.

    With ``keep``, the GEMM does not keep the result: a parameter is quantized again in backward
    (``quant.kept.Requantized``), another weight (computed by a parametrization) is kept as codes.
    """
    sawb = forward_quant is ForwardQuant.sawb
    if keep is not None and not isinstance(weight, nn.Parameter) and keeps_codes(bits, weight) and (bits >= 2 or not sawb):
        if sawb:
            return quant.sawb_kept(weight, bits, keep)
        return quant.fake_quant_kept(weight, bits, keep, channel_dim=channel_dim, grid=grid)

    def quantize(tensor: torch.Tensor) -> torch.Tensor:
        if sawb:
            return quant.sawb_quantize(tensor, bits)
        return quant.uniform_quantize(tensor, bits, channel_dim=channel_dim, grid=grid)

    out = quant.sawb_ste(weight, bits) if sawb else quant.fake_quant_ste(weight, bits, channel_dim=channel_dim, grid=grid)
    if keep is not None and isinstance(weight, nn.Parameter) and out is not weight:
        keep.add(out, Requantized(weight, weight._version, quantize))
    return out


def quantize_activation(
    x: torch.Tensor,
    bits: int,
    observer: quant.ActivationObserver,
    forward_quant: ForwardQuant,
    grid: ZeroPoint = ZeroPoint.float,
    keep: KeepCodes | None = None,
) -> torch.Tensor:
    """Fake-quantize an activation per tensor (round to nearest, STE).

    Uniform: over the batch range in training and the observer's running range in eval (the
    observer follows its owner's train/eval mode). SAWB: over its clip value, computed per batch.
    With ``keep``, the result is kept for backward as codes (see ``quantize_weight``).
    """
    sawb = forward_quant is ForwardQuant.sawb
    kept = keep is not None and keeps_codes(bits, x) and (bits >= 2 or not sawb)
    if sawb:
        return quant.sawb_kept(x, bits, keep) if kept else quant.sawb_ste(x, bits)
    low, high = observer(x)
    if kept:
        return quant.fake_quant_kept(x, bits, keep, x_min=low, x_max=high, grid=grid)
    return quant.fake_quant_ste(x, bits, x_min=low, x_max=high, grid=grid)
