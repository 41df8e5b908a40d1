"""CIFAR ResNets: the canonical ResNet-20 and the seed paper's three factor-isolating variants.

- ResNet-20 (He et al. 2016): 16/32/64 channels, 3 stages × 3 BasicBlocks, parameter-free shortcuts,
  19 convs + 1 fc = 20 weight layers, 0.27M parameters.
- ResNet-D: stage 2 stretched to 15 blocks (44 weight layers); 28 stage-2 convs share K and M and
  differ only in depth.
- ResNet-F: the same channel count in every stage while the feature map still halves, so every 3×3 conv
  after the stem has the same K and only M (usage frequency) changes between stages.
- ResNet-A: bottleneck blocks with the stride on the first 1×1 conv, so 1×1 and 3×3 convs of a stage
  share M while K differs (accumulation varies alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bitplan.zoo.blocks import BasicBlock, Bottleneck, conv3x3, init_cnn_weights
from bitplan.zoo.configs import ClassifierConfig, IntList
from bitplan.zoo.registry import register

BlockFactory = Callable[[int, int, int], nn.Module]  # (in_channels, planes, stride) -> block


class CifarResNet(nn.Module):
    """3×3 stem, stages of residual blocks, global average pool, fc.

    Every stage after the first halves the feature map at its first block. Stages are named
    ``layer1``, ``layer2``, … as in torchvision.
    """

    def __init__(
        self,
        *,
        make_block: BlockFactory,
        expansion: int,
        stem_width: int,
        stage_planes: Sequence[int],
        blocks: Sequence[int],
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, stem_width)
        self.bn1 = nn.BatchNorm2d(stem_width)
        channels = stem_width
        self.stage_names: list[str] = []
        for index, (planes, count) in enumerate(zip(stage_planes, blocks, strict=True)):
            first_stride = 1 if index == 0 else 2
            stage = []
            for block_index in range(count):
                stage.append(make_block(channels, planes, first_stride if block_index == 0 else 1))
                channels = planes * expansion
            self.stage_names.append(f"layer{index + 1}")
            self.add_module(self.stage_names[-1], nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        x = F.relu(self.bn1(self.conv1(x)))  # [B, stem, H, W]
        for name in self.stage_names:
            x = getattr(self, name)(x)  # [B, C_stage, H/2^i, W/2^i]
        x = torch.flatten(self.avgpool(x), 1)  # [B, C_last]
        return self.fc(x)  # [B, num_classes]


def _basic_block(in_channels: int, planes: int, stride: int) -> nn.Module:
    return BasicBlock(in_channels, planes, stride)


def _reduce_strided_bottleneck(in_channels: int, planes: int, stride: int) -> nn.Module:
    return Bottleneck(in_channels, planes, stride, stride_on_reduce=True)


def basic_resnet(config: ClassifierConfig, *, widths: Sequence[int], blocks: Sequence[int]) -> CifarResNet:
    """A CIFAR ResNet of BasicBlocks with option-A shortcuts; the stem has ``widths[0]`` channels."""
    return CifarResNet(
        make_block=_basic_block,
        expansion=BasicBlock.expansion,
        stem_width=widths[0],
        stage_planes=widths,
        blocks=blocks,
        in_channels=config.in_channels,
        num_classes=config.num_classes,
    )


class ResNet20Config(ClassifierConfig):
    """Canonical CIFAR ResNet-20: no structural options."""


class ResNetDConfig(ClassifierConfig):
    """ResNet-20 with a longer middle stage."""

    blocks: IntList = Field(default=(3, 15, 3), description="BasicBlocks per stage (channels 16, 32, 64, … double).")


class ResNetFConfig(ClassifierConfig):
    """ResNet with one channel count in every stage."""

    width: int = Field(default=32, ge=1, description="Channels of the stem and of every stage.")
    blocks: IntList = Field(default=(3, 3, 3), description="BasicBlocks per stage.")


class ResNetAConfig(ClassifierConfig):
    """Bottleneck ResNet whose stage-internal convs all run at the stage's resolution."""

    width: int = Field(
        default=16, ge=1, description="Stem channels and stage-1 bottleneck planes (doubling per stage; outputs ×4)."
    )
    blocks: IntList = Field(default=(3, 3, 3), description="Bottleneck blocks per stage.")


def _doubling(base: int, stages: int) -> list[int]:
    return [base * 2**index for index in range(stages)]


@register("resnet20", ResNet20Config, description="CIFAR ResNet-20 (He et al.): 16/32/64 channels, 20 weight layers")
def resnet20(config: ResNet20Config) -> nn.Module:
    return basic_resnet(config, widths=[16, 32, 64], blocks=[3, 3, 3])


@register("resnet_d", ResNetDConfig, description="ResNet-D: ResNet-20 with 15 blocks in stage 2 (depth varies alone)")
def resnet_d(config: ResNetDConfig) -> nn.Module:
    return basic_resnet(config, widths=_doubling(16, len(config.blocks)), blocks=config.blocks)


@register("resnet_f", ResNetFConfig, description="ResNet-F: equal channels in every stage (usage frequency varies alone)")
def resnet_f(config: ResNetFConfig) -> nn.Module:
    return basic_resnet(config, widths=[config.width] * len(config.blocks), blocks=config.blocks)


@register(
    "resnet_a",
    ResNetAConfig,
    description="ResNet-A: bottlenecks, 1×1 and 3×3 convs at equal frequency (accumulation varies alone)",
)
def resnet_a(config: ResNetAConfig) -> nn.Module:
    return CifarResNet(
        make_block=_reduce_strided_bottleneck,
        expansion=Bottleneck.expansion,
        stem_width=config.width,
        stage_planes=_doubling(config.width, len(config.blocks)),
        blocks=config.blocks,
        in_channels=config.in_channels,
        num_classes=config.num_classes,
    )
