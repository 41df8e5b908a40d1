"""ImageNet MobileNet-V2 (Sandler et al. 2018) with a width multiplier, in torchvision's layout.

Channel counts are rounded to multiples of 8 as in the paper's reference code (``make_divisible``);
depthwise 3×3 convs are grouped convolutions (groups = channels), so the profiler sees K = 9 for them.
Width 1.0 with 1000 classes has 3,504,872 parameters, as torchvision's ``mobilenet_v2``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from bitplan.zoo.blocks import init_cnn_weights
from bitplan.zoo.configs import ClassifierConfig
from bitplan.zoo.registry import register

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without losing more than 10% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) → BatchNorm → ReLU6; children named ``0``, ``1``, ``2`` as torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """1×1 expand (unless t = 1) → 3×3 depthwise → 1×1 linear projection; residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, H, W]
        out = self.conv(x)  # [B, C_out, H/s, W/s]
        return x + out if self.use_residual else out


class MobileNetV2Config(ClassifierConfig):
    """ImageNet defaults; ``width`` is the paper's multiplier α."""

    width: float = Field(default=1.0, gt=0, description="Width multiplier α (channels rounded to multiples of 8).")
    num_classes: int = Field(default=1000, ge=1, description="Number of output classes.")
    input_size: int = Field(default=224, ge=1, description="Height and width of the (square) input image.")
    dropout: float = Field(default=0.2, ge=0, lt=1, description="Dropout before the classifier.")


class MobileNetV2(nn.Module):
    """Stem conv, 17 inverted residual blocks, 1×1 conv to 1280 (× max(1, α)) channels, pool, classifier."""

    def __init__(self, config: MobileNetV2Config) -> None:
        super().__init__()
        channels = make_divisible(32 * config.width)
        last_channels = make_divisible(1280 * max(1.0, config.width))
        features: list[nn.Module] = [ConvBNReLU6(config.in_channels, channels, stride=2)]
        for expansion, base_channels, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(base_channels * config.width)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                features.append(InvertedResidual(channels, out_channels, stride, expansion))
                channels = out_channels
        features.append(ConvBNReLU6(channels, last_channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(last_channels, config.num_classes))
        init_cnn_weights(self, linear_std=0.01)  # torchvision's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 3, 224, 224]
        x = self.features(x)  # [B, 1280, 7, 7]
        x = torch.flatten(self.avgpool(x), 1)  # [B, 1280]
        return self.classifier(x)  # [B, num_classes]


@register("mobilenet_v2", MobileNetV2Config, description="ImageNet MobileNet-V2 with width multiplier (depthwise convs)")
def mobilenet_v2(config: MobileNetV2Config) -> nn.Module:
    return MobileNetV2(config)
