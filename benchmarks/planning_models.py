"""Small models that are not in the zoo, for the recommended-plan benchmark (``file.py:factory`` specs)."""

from __future__ import annotations

import torch
from torch import nn


def digits_mlp() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Six linear layers of unequal sizes on 8×8 digits: many ways to spend a budget."""
    widths = [64, 256, 128, 128, 64, 32]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 10))
    return nn.Sequential(*layers), (torch.zeros(1, 1, 8, 8),)
