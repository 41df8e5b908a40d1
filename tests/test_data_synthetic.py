"""Synthetic data: shaped like the model's input, deterministic in the seed, and learnable."""

from __future__ import annotations

import math

import pytest
import torch

from bitplan.data import Task, load_data

IMAGE = (torch.zeros(1, 3, 8, 8),)
TOKENS = (torch.zeros(1, 16, dtype=torch.int64),)


def test_classification_shaped_like_the_example_input() -> None:
    data = load_data("synthetic?n=40&test_n=8&classes=5", example_inputs=IMAGE)
    assert data.task is Task.classification and data.num_classes == 5 and data.input_shape == (3, 8, 8)
    assert (len(data.train), len(data.test)) == (40, 8)
    x, y = data.train[3]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64 and 0 <= int(y) < 5


def test_language_model_for_integer_inputs() -> None:
    data = load_data("synthetic?n=10&vocab=50", example_inputs=TOKENS)
    assert data.task is Task.language_model and data.vocab_size == 50 and data.input_shape == (16,)
    tokens, targets = data.train[2]
    assert tokens.shape == targets.shape == (16,) and tokens.dtype == torch.int64
    assert torch.equal(tokens[1:], targets[:-1])  # targets are the next tokens
    assert int(data.train.stream.max()) < 50


def test_defaults_without_a_model() -> None:
    assert load_data("synthetic").input_shape == (3, 32, 32)
    assert load_data("synthetic?shape=1x8x8").input_shape == (1, 8, 8)
    assert load_data("synthetic?task=language_model").input_shape == (35,)
    assert load_data("synthetic?task=language_model", seq_len=7).input_shape == (7,)


@pytest.mark.parametrize("example", [IMAGE, TOKENS])
def test_deterministic_in_the_seed(example: tuple[torch.Tensor, ...]) -> None:
    def flat(seed: int) -> torch.Tensor:
        data = load_data("synthetic?n=16&test_n=4", seed=seed, example_inputs=example)
        return torch.cat([part.float().flatten() for i in range(16) for part in data.train[i]])

    assert torch.equal(flat(3), flat(3))
    assert not torch.equal(flat(3), flat(4))


def nearest_mean_accuracy(
    train_x: torch.Tensor, y_train: torch.Tensor, test_x: torch.Tensor, y_test: torch.Tensor
) -> float:
    """Learn one mean per class from the training split; classify test samples by the nearest mean."""
    means = torch.stack([train_x[y_train == c].mean(0) for c in range(int(y_train.max()) + 1)])  # [classes, D]
    return (torch.cdist(test_x, means).argmin(1) == y_test).float().mean().item()


def test_classification_signal_is_learnable_by_position_and_by_channel_means() -> None:
    data = load_data("synthetic?n=1000&test_n=500&classes=10&shape=3x8x8", seed=1)
    train_x, test_x = data.train.inputs, data.test.inputs
    y_train, y_test = data.train.labels, data.test.labels
    # from all pixels, and from per-channel means only (what global pooling sees); chance is 0.1
    assert nearest_mean_accuracy(train_x.flatten(1), y_train, test_x.flatten(1), y_test) > 0.8
    assert nearest_mean_accuracy(train_x.mean((2, 3)), y_train, test_x.mean((2, 3)), y_test) > 0.3


def test_language_model_signal_is_learnable() -> None:
    data = load_data("synthetic?n=200&test_n=50&vocab=64&task=language_model", seq_len=20)
    train, test = data.train.stream, data.test.stream
    counts = torch.ones(64, 64)  # add-one bigram model
    counts.index_put_((train[:-1], train[1:]), torch.ones(train.shape[0] - 1), accumulate=True)
    log_probs = (counts / counts.sum(1, keepdim=True)).log()
    perplexity = math.exp(-log_probs[test[:-1], test[1:]].mean().item())
    assert perplexity < 8.0  # each token has 4 successors; a uniform guess would be 64
