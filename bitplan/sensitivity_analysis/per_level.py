"""Per-level sensitivity: each planned weight quantized alone at each level of the menu, measured.

At 1–2 bits quantization error is no longer a small perturbation, so one width's score extrapolated
by (2^b0 − 1)²/(2^b − 1)² misjudges it (docs/sensitivity.md, "Per level"). Here every weight is
fake-quantized alone at every level b of the menu, as ``bitplan.apply`` would, and two numbers are
taken on the cached calibration batches:

- ``loss_delta[w][b]``: training loss with w at b bits minus the full-precision loss;
- ``kl[w][b]``: mean KL(p_fp ‖ p_b) of the model's output distribution (softmax of the logits over
  the last dimension, averaged over predictions), which is never negative and less noisy.

Cost: one pass over the batches per (weight, level), without gradients; nothing else. The
full-precision outputs are computed once per calibration and model state and shared by every
measurement (and by ``refine.py``'s searches, one per budget); each weight is quantized once per
level and swapped into the modules that run it, so the model is never re-applied or copied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bitplan.quant import uniform_quantize

from bitplan.choices import DEFAULT_ZERO_POINT, FULL_PRECISION_BITS, ZeroPoint
from bitplan.sensitivity_analysis.calibration import Calibration
from bitplan.train.loop import batch_loss

LEVEL_MEASURES = ("kl", "loss-delta")
REFERENCE_KEY = "full-precision outputs"


@dataclass(frozen=True)
class LevelTable:
    """Measured scores of every planned weight at every level (keys: weight FQN, then bits)."""

    levels: list[int]
    loss_delta: dict[str, dict[int, float]]
    kl: dict[str, dict[int, float]]
    baseline_loss: float

    def scores(self, measure: str) -> dict[str, dict[int, float]]:
        """The table of ``measure`` (``kl`` or ``loss-delta``)."""
        return self.kl if measure == "kl" else self.loss_delta


@dataclass(frozen=True)
class Reference:
    """The full-precision model's outputs on the calibration batches: what every measure compares to."""

    log_probs: list[torch.Tensor]  # one [predictions, classes] tensor per batch
    loss: float  # mean training loss over the batches


def _logits(output: object) -> torch.Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


def _model_state(net: nn.Module) -> tuple:
    """Which tensors the model holds and how often each was written in place (``load_state_dict``,
    an optimizer step): a change of either makes cached outputs stale."""
    return tuple((id(t), t._version) for t in (*net.parameters(), *net.buffers()))


@torch.no_grad()
def reference_outputs(calibration: Calibration) -> Reference:
    """The full-precision outputs of ``calibration.net`` as it is now, computed once per model state."""
    state = _model_state(calibration.net)
    cached = calibration.cache.get(REFERENCE_KEY)
    if cached is not None and cached[0] == state:
        return cached[1]
    log_probs, loss_total = [], 0.0
    for inputs, target in calibration.batches:
        output = calibration.net(*inputs)
        loss_total += float(batch_loss(output, target, calibration.task)[0])
        log_probs.append(F.log_softmax(_logits(output).flatten(0, -2).float(), dim=-1))
    reference = Reference(log_probs=log_probs, loss=loss_total / max(len(calibration.batches), 1))
    calibration.cache[REFERENCE_KEY] = (state, reference)
    return reference


class OutputComparer:
    """Loss and KL to the full-precision outputs of the model as it is now, over the cached batches."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.reference = reference_outputs(calibration).log_probs

    @torch.no_grad()
    def measure(self) -> tuple[float, float, float]:
        """(mean loss, mean KL(p_fp ‖ p_now), error rate) over the batches."""
        loss_total, kl_total, correct, count = 0.0, 0.0, 0, 0
        for (inputs, target), reference in zip(self.calibration.batches, self.reference):
            output = self.calibration.net(*inputs)
            loss, right, predictions = batch_loss(output, target, self.calibration.task)
            loss_total += float(loss)
            correct, count = correct + int(right), count + predictions
            log_probs = F.log_softmax(_logits(output).flatten(0, -2).float(), dim=-1)
            kl_total += float(F.kl_div(log_probs, reference, log_target=True, reduction="batchmean"))
        batches = len(self.calibration.batches)
        return loss_total / batches, kl_total / batches, 1.0 - correct / max(count, 1)


class QuantizedWeights:
    """Put planned weights at their bits where the planned GEMMs read them, and put the originals back.

    A weight's fake-quantized tensor replaces the parameter in each planned module that runs it (the
    module's parameter slot, not the parameter's storage), as ``bitplan.apply`` quantizes it there
    and nowhere else: a tied weight's other holders keep full precision (the token embedding's
    lookup beside a tied LM head). A weight is quantized again only when its bits change.
    """

    def __init__(self, calibration: Calibration, grid: ZeroPoint | str = DEFAULT_ZERO_POINT) -> None:
        self.calibration = calibration
        self.grid = grid
        params = dict(calibration.net.named_parameters())
        modules = dict(calibration.net.named_modules())
        self.slots: dict[str, list[tuple[nn.Module, str]]] = {}  # weight FQN -> (module, attribute) using it
        for target in calibration.targets:
            slot = (modules[target.module], target.attribute)
            slots = self.slots.setdefault(target.weight, [])
            if not any(module is slot[0] and attribute == slot[1] for module, attribute in slots):
                slots.append(slot)
        self.original = {weight: params[weight] for weight in self.slots}
        self.current: dict[str, int] = {}  # weights now swapped for a quantized tensor -> its bits

    @torch.no_grad()
    def set(self, bits_by_weight: Mapping[str, int]) -> None:
        """Every weight of ``bits_by_weight`` at its bits (32: full precision); the others unchanged."""
        for weight, bits in bits_by_weight.items():
            bits = min(bits, FULL_PRECISION_BITS)
            if self.current.get(weight, FULL_PRECISION_BITS) == bits:
                continue
            original = self.original[weight]
            if bits == FULL_PRECISION_BITS:
                value, _ = original, self.current.pop(weight)
            else:
                quantized = quantize_like_apply(original.detach(), bits, self.calibration.channel_dims.get(weight), self.grid)
                value, self.current[weight] = nn.Parameter(quantized, requires_grad=False), bits
            for module, attribute in self.slots[weight]:
                module._parameters[attribute] = value

    def restore(self) -> None:
        """Every weight back to its own parameter, as before."""
        self.set(dict.fromkeys(self.current, FULL_PRECISION_BITS))


def quantize_like_apply(weight: torch.Tensor, bits: int, channel_dim: int | None, grid: ZeroPoint | str) -> torch.Tensor:
    """Round-to-nearest fake quantization with ``bitplan.apply``'s ranges (per channel or per tensor)."""
    return uniform_quantize(weight, bits, channel_dim=channel_dim, grid=grid)


def measure_levels(
    calibration: Calibration,
    levels: Sequence[int],
    *,
    grid: ZeroPoint | str = DEFAULT_ZERO_POINT,
    advance: Callable[[], None] = lambda: None,
) -> LevelTable:
    """Loss increase and KL of every planned weight quantized alone at every level below 32 bits.

    ``advance`` is called after each weight (for a progress bar).
    """
    comparer = OutputComparer(calibration)
    baseline = reference_outputs(calibration).loss
    weights = QuantizedWeights(calibration, grid)
    loss_delta: dict[str, dict[int, float]] = {}
    kl: dict[str, dict[int, float]] = {}
    try:
        for weight in weights.slots:
            loss_delta[weight], kl[weight] = {}, {}
            for bits in levels:
                if bits >= FULL_PRECISION_BITS:
                    loss_delta[weight][bits] = kl[weight][bits] = 0.0
                    continue
                weights.set({weight: bits})
                loss, divergence, _ = comparer.measure()
                loss_delta[weight][bits], kl[weight][bits] = loss - baseline, divergence
            weights.restore()
            advance()
    finally:
        weights.restore()
    return LevelTable(levels=list(levels), loss_delta=loss_delta, kl=kl, baseline_loss=baseline)
