"""Activation ranges for uniform quantization: batch min/max in training, running averages in eval.

CPT's activation quantizer uses the current batch's per-tensor min/max while training and keeps
running averages, running = 0.9·running + 0.1·batch, for evaluation. The first training batch
initialises the averages; before any training batch, eval falls back to the batch range. All
decisions stay on the device (``torch.where``), so there is no host sync and ``torch.compile`` can
trace it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bitplan.choices import ZeroPoint
from bitplan.quant.options import FULL_PRECISION_BITS, check_bits
from bitplan.quant.uniform import fake_quant_ste

RUNNING_MOMENTUM = 0.9
"""Weight of the old running value in each update (CPT)."""


class ActivationObserver(nn.Module):
    """Tracks one per-tensor range; ``forward(x)`` returns the range to quantize ``x`` with.

    Buffers: ``running_min``, ``running_max`` (float32 scalars) and ``num_batches`` (training
    batches seen). ``persistent=False`` keeps them out of ``state_dict`` (so a plain model's
    checkpoint still loads); the running averages are then not saved with it.

    Args:
        momentum: Weight of the old value, running = momentum·running + (1 − momentum)·batch.
        persistent: Whether the buffers belong to ``state_dict``.

    Example:
        >>> observer = ActivationObserver()
        >>> observer(torch.tensor([0.0, 2.0]))
        (tensor(0.), tensor(2.))
        >>> observer(torch.tensor([1.0, 4.0]))[1], observer.running_max
        (tensor(4.), tensor(2.2000))
    """

    def __init__(self, momentum: float = RUNNING_MOMENTUM, *, persistent: bool = True) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1) (weight of the old running value), got {momentum!r}.")
        self.momentum = momentum
        self.frozen = False  # set while activation checkpointing recomputes a forward: it saw this batch already
        self.register_buffer("running_min", torch.zeros(()), persistent=persistent)
        self.register_buffer("running_max", torch.zeros(()), persistent=persistent)
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long), persistent=persistent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The range for ``x``: its own min/max in training (updating the averages), else the averages."""
        if x.numel() == 0:
            return self.running_min.clone(), self.running_max.clone()
        low, high = torch.aminmax(x.detach())  # [] and []
        seen = self.num_batches > 0
        if self.training and self.frozen:
            return low, high
        if self.training:
            with torch.no_grad():
                self.running_min.copy_(torch.where(seen, self._average(self.running_min, low), low))
                self.running_max.copy_(torch.where(seen, self._average(self.running_max, high), high))
                self.num_batches.add_(1)
            return low, high
        return torch.where(seen, self.running_min, low), torch.where(seen, self.running_max, high)

    def _average(self, running: Tensor, batch: Tensor) -> Tensor:
        return self.momentum * running + (1.0 - self.momentum) * batch

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}"


class ActivationQuantizer(nn.Module):
    """Fake-quantizes activations per tensor (round to nearest, STE) with an ``ActivationObserver``'s range.

    ``bits`` may be changed between steps (e.g. by ``cyclic_bits``); 32 passes ``x`` through.

    Args:
        bits: Activation width, 1–32.
        momentum: Running-average momentum of the observer.
        persistent: Whether the observer's buffers belong to ``state_dict``.
        grid: ``float`` or ``integer`` zero point (``uniform_quantize``'s ``grid``).

    Example:
        >>> quantizer = ActivationQuantizer(2)
        >>> quantizer(torch.tensor([0.0, 0.4, 3.0]))
        tensor([0., 0., 3.])
    """

    def __init__(
        self, bits: int = 8, momentum: float = RUNNING_MOMENTUM, *, persistent: bool = True, grid: ZeroPoint | str = ZeroPoint.float
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.grid = ZeroPoint(grid)
        self.observer = ActivationObserver(momentum, persistent=persistent)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` quantized to ``self.bits`` over the observer's range."""
        bits = check_bits(self.bits)
        if bits == FULL_PRECISION_BITS:
            return x
        low, high = self.observer(x)
        return fake_quant_ste(x, bits, x_min=low, x_max=high, grid=self.grid)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"
