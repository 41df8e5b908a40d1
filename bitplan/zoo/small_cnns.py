"""Plain (non-residual) CNNs: the CIFAR AlexNet of the seed paper's Table 1, and a small CNN for digits.

Both compute the flattened feature size from ``input_size`` at construction, so other input sizes work
without a data-dependent reshape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bitplan.zoo.blocks import init_cnn_weights
from bitplan.zoo.configs import ClassifierConfig
from bitplan.zoo.registry import register


class AlexNetCifarConfig(ClassifierConfig):
    """CIFAR defaults; the feature extractor shrinks the input 16×, so it needs at least 15 pixels."""

    input_size: int = Field(default=32, ge=15, description="Height and width of the (square) input image (≥ 15).")
    hidden: int = Field(default=4096, ge=1, description="Width of the two hidden fully connected layers.")
    dropout: float = Field(default=0.5, ge=0, lt=1, description="Dropout before fc1 and fc2.")


class AlexNetCifar(nn.Module):
    """The common CIFAR AlexNet: five 3×3 convs (64/192/384/256/256), three max pools, three fc layers.

    For 32×32 inputs: conv1 (stride 2) 32→16, pools 16→8→4→2, so fc1 sees 256·2·2 = 1024 features.
    """

    def __init__(self, config: AlexNetCifarConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(config.in_channels, 64, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 192, 3, padding=1)
        self.conv3 = nn.Conv2d(192, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        side = (config.input_size + 1) // 2 // 2 // 2 // 2  # conv1 takes ceil(s/2); each pool floors s/2
        self.dropout = nn.Dropout(config.dropout)
        self.fc1 = nn.Linear(256 * side * side, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.hidden)
        self.fc3 = nn.Linear(config.hidden, config.num_classes)
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 3, 32, 32]
        x = self.pool(F.relu(self.conv1(x)))  # [B, 64, 8, 8]
        x = self.pool(F.relu(self.conv2(x)))  # [B, 192, 4, 4]
        x = F.relu(self.conv3(x))  # [B, 384, 4, 4]
        x = F.relu(self.conv4(x))  # [B, 256, 4, 4]
        x = self.pool(F.relu(self.conv5(x)))  # [B, 256, 2, 2]
        x = torch.flatten(x, 1)  # [B, 1024]
        x = F.relu(self.fc1(self.dropout(x)))  # [B, hidden]
        x = F.relu(self.fc2(self.dropout(x)))  # [B, hidden]
        return self.fc3(x)  # [B, num_classes]


class DigitsCnnConfig(ClassifierConfig):
    """Defaults for scikit-learn's digits: 8×8 grayscale, 10 classes."""

    in_channels: int = Field(default=1, ge=1, description="Channels of the input image.")
    input_size: int = Field(default=8, ge=4, description="Height and width of the (square) input image (≥ 4).")
    hidden: int = Field(default=64, ge=1, description="Width of the hidden fully connected layer.")


class DigitsCnn(nn.Module):
    """Three 3×3 conv+BN+ReLU layers (16/32/64 channels), two max pools, two fc layers.

    Small and well conditioned (BatchNorm after every conv), so it reaches ≥ 95% on digits within a
    minute of CPU training even with 4-bit fake-quantized weights.
    """

    def __init__(self, config: DigitsCnnConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(config.in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        side = config.input_size // 2 // 2
        self.fc1 = nn.Linear(64 * side * side, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.num_classes)
        init_cnn_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, 8, 8]
        x = F.relu(self.bn1(self.conv1(x)))  # [B, 16, 8, 8]
        x = self.pool(F.relu(self.bn2(self.conv2(x))))  # [B, 32, 4, 4]
        x = self.pool(F.relu(self.bn3(self.conv3(x))))  # [B, 64, 2, 2]
        x = F.relu(self.fc1(torch.flatten(x, 1)))  # [B, hidden]
        return self.fc2(x)  # [B, num_classes]


@register("alexnet_cifar", AlexNetCifarConfig, description="CIFAR AlexNet: 5 convs (64/192/384/256/256), 3 fc layers")
def alexnet_cifar(config: AlexNetCifarConfig) -> nn.Module:
    return AlexNetCifar(config)


@register("digits_cnn", DigitsCnnConfig, description="Small CNN for scikit-learn's 8×8 digits (trains in seconds on CPU)")
def digits_cnn(config: DigitsCnnConfig) -> nn.Module:
    return DigitsCnn(config)
