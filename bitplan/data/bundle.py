"""What a data source returns (``DataBundle``) and what it receives (``DataRequest``).

A source never sees the raw spec string: ``load_data`` parses ``kind:PATH?k=v`` into a ``DataRequest``,
checks the option names against the ones the source declared, and the source reads typed values with
``request.int_option(...)`` and friends, which raise one clear ``DataError`` on a bad value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from bitplan.errors import DataError
from bitplan.zoo.configs import Task

__all__ = ["DataBundle", "DataRequest", "Task"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class DataBundle:
    """A train and a test split plus what a model needs to know to fit them.

    Items of ``train``/``test``: classification ``(x: float32[C, H, W], y: int64[])``; language
    modelling ``(tokens: int64[seq_len], targets: int64[seq_len])`` with targets shifted by one.

    Attributes:
        train: The training split (augmented where the source augments).
        test: The split metrics are reported on (for text corpora, the validation file).
        task: ``Task.classification`` or ``Task.language_model``.
        num_classes: Number of classes (classification), else None.
        vocab_size: Vocabulary size (language modelling), else None.
        input_shape: Shape of one input sample, e.g. ``(3, 32, 32)`` or ``(seq_len,)``.
        name: Short human-readable name, e.g. ``"cifar10:cifar-10-batches-py"``.
        vocabulary: Token strings by id (language modelling), else None.
    """

    train: Dataset
    test: Dataset
    task: Task
    num_classes: int | None
    vocab_size: int | None
    input_shape: tuple[int, ...]
    name: str
    vocabulary: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DataRequest:
    """A parsed data spec plus the context ``load_data`` was called with.

    Attributes:
        spec: The spec as the user wrote it (for error messages).
        kind: The source name, e.g. ``"cifar10"``.
        path: The path after ``kind:`` (``~`` expanded), or None.
        options: The ``?k=v&k2=v2`` query, as strings.
        seed: Seed of the run; drives augmentation and synthetic data.
        seq_len: Window length for language modelling, or None.
        example_inputs: The model's example inputs (batch first), or None.
    """

    spec: str
    kind: str
    path: Path | None
    options: Mapping[str, str]
    seed: int = 0
    seq_len: int | None = None
    example_inputs: tuple[torch.Tensor, ...] | None = None

    def existing_path(self) -> Path:
        """The spec's path, which must exist.

        Raises:
            DataError: If the spec has no path or the path does not exist.
        """
        if self.path is None:
            raise DataError(f"data spec `{self.spec}` has no path; write it as `{self.kind}:PATH`.")
        if not self.path.exists():
            raise DataError(
                f"data path `{self.path}` (from spec `{self.spec}`) does not exist; check the path "
                f"(it is read as `{self.kind}:PATH`, and nothing is ever downloaded)."
            )
        return self.path

    def int_option(self, name: str, default: int, *, minimum: int = 1) -> int:
        """The integer option ``name`` (``default`` when absent), at least ``minimum``.

        Raises:
            DataError: If the value is not an integer or is below ``minimum``.
        """
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise DataError(
                f"option `{name}={raw}` in data spec `{self.spec}` must be an integer >= {minimum}; "
                f"for example `{name}={max(default, minimum)}`."
            )
        return value

    def bool_option(self, name: str, default: bool) -> bool:
        """The boolean option ``name`` (true/false, 1/0, yes/no, on/off).

        Raises:
            DataError: If the value is none of those.
        """
        raw = self.options.get(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise DataError(f"option `{name}={raw}` in data spec `{self.spec}` must be true or false.")

    def choice_option(self, name: str, default: str, choices: Sequence[str]) -> str:
        """The option ``name``, which must be one of ``choices``.

        Raises:
            DataError: If the value is not one of ``choices``.
        """
        raw = self.options.get(name, default)
        if raw not in choices:
            raise DataError(
                f"option `{name}={raw}` in data spec `{self.spec}` is not one of {', '.join(choices)}; "
                f"for example `{name}={default}`."
            )
        return raw

    def shape_option(self, name: str) -> tuple[int, ...] | None:
        """The shape option ``name`` written as ``3x32x32``, or None when absent.

        Raises:
            DataError: If the value is not ``x``-separated positive integers.
        """
        raw = self.options.get(name)
        if raw is None:
            return None
        parts = raw.lower().split("x")
        if not all(part.isdigit() and int(part) > 0 for part in parts):
            raise DataError(
                f"option `{name}={raw}` in data spec `{self.spec}` must be positive integers joined by "
                f"`x`, one sample without the batch dimension, e.g. `{name}=3x32x32`."
            )
        return tuple(int(part) for part in parts)
