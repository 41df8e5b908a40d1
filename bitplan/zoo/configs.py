"""Option models shared by the zoo: what every classifier and every language model accepts.

Options arrive as strings from a spec (``zoo:resnet_d?blocks=3,15,3&num_classes=100``); pydantic's
lax mode turns ``"100"`` into 100 and ``"true"`` into True, and ``IntList`` turns ``"3,15,3"`` into
``(3, 15, 3)``. Each model subclasses one of these bases, so a builder receives typed, validated values.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, ClassVar

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Task(str, Enum):
    """What a zoo model predicts; decides its example input and how it is trained."""

    classification = "classification"
    language_model = "language_model"


def _split_ints(value: object) -> object:
    """Accept ``"3,15,3"`` (a spec option) as well as a sequence of ints."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


IntList = Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1), BeforeValidator(_split_ints)]
"""A comma-separated list of positive ints, e.g. blocks per stage ``"3,15,3"``."""


class ZooConfig(BaseModel):
    """Base of every model's options: frozen, and unknown options are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: ClassVar[Task]
    input_dtype: ClassVar[torch.dtype]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Default inputs for one forward pass; created on the current default device (meta works)."""
        raise NotImplementedError

    def input_shape(self, batch: int = 1) -> list[int]:
        """Shape of the (single) example input."""
        raise NotImplementedError


class ClassifierConfig(ZooConfig):
    """Options every image classifier accepts."""

    task: ClassVar[Task] = Task.classification
    input_dtype: ClassVar[torch.dtype] = torch.float32

    num_classes: int = Field(default=10, ge=1, description="Number of output classes.")
    in_channels: int = Field(default=3, ge=1, description="Channels of the input image.")
    input_size: int = Field(default=32, ge=1, description="Height and width of the (square) input image.")

    def input_shape(self, batch: int = 1) -> list[int]:
        return [batch, self.in_channels, self.input_size, self.input_size]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        # No device argument: under ``with torch.device("meta")`` this is a meta tensor.
        return (torch.randn(*self.input_shape(batch)),)  # [B, C, H, W]


class LanguageModelConfig(ZooConfig):
    """Options every language model accepts; the input is a row of token ids."""

    task: ClassVar[Task] = Task.language_model
    input_dtype: ClassVar[torch.dtype] = torch.int64

    vocab: int = Field(default=10000, ge=2, description="Vocabulary size (embedding rows and output logits).")
    seq_len: int = Field(default=35, ge=1, description="Tokens per example input.")

    def input_shape(self, batch: int = 1) -> list[int]:
        return [batch, self.seq_len]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        return (torch.randint(0, self.vocab, (batch, self.seq_len)),)  # [B, T] int64
