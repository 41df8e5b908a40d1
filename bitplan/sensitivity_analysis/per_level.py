"""Per-level sensitivity: each planned weight quantized alone at each level of the menu, measured.

At 1–2 bits quantization error is no longer a small perturbation, so one width's score extrapolated
by (2^b0 − 1)²/(2^b − 1)² misjudges it (docs/sensitivity.md, "Per level"). Here every weight is
fake-quantized alone at every level b of the menu, as ``bitplan.apply`` would, and two numbers are
taken on the cached calibration batches:

- ``loss_delta[w][b]``: training loss with w at b bits minus the full-precision loss;
- ``kl[w][b]``: mean KL(p_fp ‖ p_b) of the model's output distribution (softmax of the logits over
  the last dimension, averaged over predictions), which is never negative and less noisy.

Cost: one pass over the batches per (weight, level), without gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bitplan.quant import uniform_quantize

from bitplan.choices import DEFAULT_ZERO_POINT, FULL_PRECISION_BITS, ZeroPoint
from bitplan.sensitivity_analysis.calibration import Calibration
from bitplan.train.loop import batch_loss

LEVEL_MEASURES = ("kl", "loss-delta")


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


def _logits(output: object) -> torch.Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


class OutputComparer:
    """Loss and KL to the full-precision outputs of the model as it is now, over the cached batches."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        with torch.no_grad():
            # one [predictions, classes] log-probability tensor per batch, from the unquantized model
            self.reference = [
                F.log_softmax(_logits(calibration.net(*inputs)).flatten(0, -2).float(), dim=-1)
                for inputs, _ in calibration.batches
            ]

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
    """Set planned weights to their fake-quantized values and put the originals back."""

    def __init__(self, calibration: Calibration, grid: ZeroPoint | str = DEFAULT_ZERO_POINT) -> None:
        self.calibration = calibration
        self.grid = grid
        self.params = dict(calibration.net.named_parameters())
        self.original = {t.weight: self.params[t.weight].detach().clone() for t in calibration.targets}

    @torch.no_grad()
    def set(self, bits_by_weight: Mapping[str, int]) -> None:
        """Every weight of ``bits_by_weight`` at its bits (32: full precision); the others unchanged."""
        for weight, bits in bits_by_weight.items():
            original = self.original[weight]
            value = original if bits >= FULL_PRECISION_BITS else quantize_like_apply(
                original, bits, self.calibration.channel_dims.get(weight), self.grid
            )
            self.params[weight].copy_(value)

    @torch.no_grad()
    def restore(self) -> None:
        for weight, original in self.original.items():
            self.params[weight].copy_(original)


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
    baseline = comparer.measure()[0]
    weights = QuantizedWeights(calibration, grid)
    loss_delta: dict[str, dict[int, float]] = {}
    kl: dict[str, dict[int, float]] = {}
    try:
        for weight in dict.fromkeys(t.weight for t in calibration.targets):
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
