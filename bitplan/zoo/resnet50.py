"""ImageNet ResNet-50 (He et al. 2016) in torchvision's v1.5 layout: the stride sits on the 3×3 conv.

Layer names match torchvision (``conv1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``), and so
does the parameter count: 25,557,032 with 1000 classes.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from bitplan.zoo.blocks import Bottleneck, init_cnn_weights
from bitplan.zoo.configs import ClassifierConfig, IntList
from bitplan.zoo.registry import register


class ResNet50Config(ClassifierConfig):
    """ImageNet defaults: 1000 classes, 224×224 RGB."""

    num_classes: int = Field(default=1000, ge=1, description="Number of output classes.")
    input_size: int = Field(default=224, ge=1, description="Height and width of the (square) input image.")
    blocks: IntList = Field(default=(3, 4, 6, 3), description="Bottleneck blocks per stage (planes 64, 128, 256, 512, …).")


class ImageNetResNet(nn.Module):
    """7×7/2 stem and 3×3/2 max pool, bottleneck stages (stride 2 from stage 2 on), average pool, fc."""

    def __init__(self, blocks: tuple[int, ...], *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        self.stage_names: list[str] = []
        for index, count in enumerate(blocks):
            planes = 64 * 2**index
            stage = []
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                stage.append(Bottleneck(channels, planes, stride, stride_on_reduce=False))
                channels = planes * Bottleneck.expansion
            self.stage_names.append(f"layer{index + 1}")
            self.add_module(self.stage_names[-1], nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 3, 224, 224]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, 64, 56, 56]
        for name in self.stage_names:
            x = getattr(self, name)(x)  # ... -> [B, 2048, 7, 7]
        x = torch.flatten(self.avgpool(x), 1)  # [B, 2048]
        return self.fc(x)  # [B, num_classes]


@register("resnet50", ResNet50Config, description="ImageNet ResNet-50 (torchvision v1.5 layout), 25.6M parameters")
def resnet50(config: ResNet50Config) -> nn.Module:
    return ImageNetResNet(config.blocks, in_channels=config.in_channels, num_classes=config.num_classes)
