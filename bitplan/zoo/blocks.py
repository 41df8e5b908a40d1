"""Residual blocks shared by the CIFAR ResNets and ResNet-50, and the zoo's CNN initialisation.

Module names follow torchvision (``conv1``, ``bn1``, ``conv2``, ``downsample.0``), so profiles and
plans of zoo models read like those of the models users know.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution that keeps the spatial size at stride 1 (and takes ceil(size/2) at stride 2)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """Pointwise convolution; at stride 2 it samples every other pixel."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a parameter-free shortcut (He et al. 2016, CIFAR "option A").

    The shortcut subsamples ``x[:, :, ::stride, ::stride]`` and zero-pads the new channels, so the block
    holds exactly two weight layers. Assumes ``out_channels >= in_channels``.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        if planes < in_channels:
            raise ValueError(f"`planes` ({planes}) must be at least `in_channels` ({in_channels}) for a padded shortcut")
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        extra = planes - in_channels
        self.channel_pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, H, W]
        out = F.relu(self.bn1(self.conv1(x)))  # [B, C_out, H/s, W/s]
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity, subsampled and zero-padded to the block's output shape."""
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]  # [B, C_in, ceil(H/s), ceil(W/s)]
        if self.channel_pad != (0, 0):
            x = F.pad(x, (0, 0, 0, 0, *self.channel_pad))  # [B, C_out, H/s, W/s]
        return x


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4), with a 1×1 projection shortcut when the shape changes.

    ``stride_on_reduce`` puts the stride on the first 1×1 conv (original ResNet, and ResNet-A: every conv
    of the block then runs at the output resolution); otherwise it is on the 3×3 (torchvision v1.5).
    The projection shortcut carries the same stride, so it also runs at the output resolution.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, *, stride_on_reduce: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        reduce_stride, spatial_stride = (stride, 1) if stride_on_reduce else (1, stride)
        self.conv1 = conv1x1(in_channels, planes, reduce_stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, spatial_stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, H, W]
        identity = x if self.downsample is None else self.downsample(x)  # [B, 4·planes, H/s, W/s]
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def init_cnn_weights(model: nn.Module, *, linear_std: float | None = None) -> nn.Module:
    """He-normal convs (fan_out, as torchvision), unit BatchNorm, zero conv biases.

    Linear layers keep PyTorch's default unless ``linear_std`` is given (then N(0, std²), zero bias).
    Skipped on the meta device: there are no values to set, and meta ``normal_`` is slow (~4 ms a call).
    """
    if any(parameter.is_meta for parameter in model.parameters()):
        return model
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
    return model
