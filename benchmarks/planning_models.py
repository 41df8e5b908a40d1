"""Small models that are not in the zoo, for the recommended-plan benchmark (``file.py:factory`` specs).

Each takes the 1×8×8 digits and trains in seconds on one CPU thread. They differ in what a plan has to
get right: many layers of unequal sizes (the MLPs), a deep plain CNN (VGG-style), and batch-norm with
residual connections (quantized weights shift the activations that fixed BN statistics normalise).
"""

from __future__ import annotations

import torch
from torch import nn

DIGITS_INPUT = (torch.zeros(1, 1, 8, 8),)


def _mlp(widths: list[int]) -> nn.Sequential:
    """Flatten, then Linear+ReLU through ``widths``, then a Linear to the 10 classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 10))
    return nn.Sequential(*layers)


def digits_mlp() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Six linear layers of unequal sizes on 8×8 digits: many ways to spend a budget."""
    return _mlp([64, 256, 128, 128, 64, 32]), DIGITS_INPUT


def digits_deep_mlp() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Ten linear layers, widths rising then falling: a plan space random plans rarely repeat."""
    return _mlp([64, 192, 256, 160, 128, 128, 96, 64, 48, 32]), DIGITS_INPUT


def digits_vgg() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """VGG-style: six 3×3 convolutions in three stages (8×8, 4×4, 2×2), then two linear layers."""

    def stage(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU()]

    net = nn.Sequential(
        *stage(1, 16), nn.MaxPool2d(2),  # [N, 16, 4, 4]
        *stage(16, 32), nn.MaxPool2d(2),  # [N, 32, 2, 2]
        *stage(32, 64),  # [N, 64, 2, 2]
        nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    return net, DIGITS_INPUT


class _Block(nn.Module):
    """Basic residual block: conv-BN-ReLU-conv-BN plus the input (a 1×1 conv-BN where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class _ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2))  # 8×8 -> 2×2
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(self.stem(x))  # [N, 64, 2, 2]
        return self.head(y.mean(dim=(2, 3)))


def digits_resnet_bn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A small residual CNN with batch norm: nine convolutions (two 1×1 shortcuts) and a linear head."""
    return _ResNet(), DIGITS_INPUT
