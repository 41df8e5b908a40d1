"""The two in-memory dataset shapes every source reduces to: labelled tensors and token windows."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["LabelledTensors", "TokenWindows"]


class LabelledTensors(Dataset):
    """Preprocessed inputs with integer labels, held in memory (digits, synthetic).

    Args:
        inputs: ``[N, *sample_shape]`` float32.
        labels: ``[N]`` int64.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        if inputs.shape[0] != labels.shape[0]:
            raise ValueError(f"`inputs` has {inputs.shape[0]} samples but `labels` has {labels.shape[0]}")
        self.inputs = inputs
        self.labels = labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # DataLoader fetches whole batches through this: one gather instead of B item calls.
        return list(zip(self.inputs[indices], self.labels[indices]))


class TokenWindows(Dataset):
    """Non-overlapping windows of a token stream, each with its next-token targets.

    Window i covers ``stream[i*L : i*L + L]`` and its targets ``stream[i*L + 1 : i*L + L + 1]``; the
    last ``(len(stream) - 1) % L`` tokens (too few for a window) are dropped.

    Args:
        stream: ``[T]`` int64 token ids.
        seq_len: Window length L.
    """

    def __init__(self, stream: torch.Tensor, seq_len: int) -> None:
        if seq_len < 1:
            raise ValueError(f"`seq_len` must be >= 1, got {seq_len}")
        self.stream = stream
        self.seq_len = seq_len

    def __len__(self) -> int:
        return max(self.stream.shape[0] - 1, 0) // self.seq_len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = index * self.seq_len
        window = self.stream[start : start + self.seq_len + 1]  # [L + 1]
        return window[:-1], window[1:]
