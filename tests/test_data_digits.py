"""scikit-learn digits: the fixed stratified split, scaling, and standardisation with training statistics."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bitplan.data import DataBundle, Task, load_data


@functools.cache
def bundle(seed: int = 0) -> DataBundle:
    return load_data("digits", seed=seed)


def test_shapes_dtypes_and_sizes() -> None:
    data = bundle()
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.task is Task.classification and data.num_classes == 10 and data.vocab_size is None
    assert data.input_shape == (1, 8, 8)
    x, y = data.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.int64


def test_split_is_stratified() -> None:
    data = bundle()
    full = np.bincount(load_digits().target, minlength=10)
    for split, size in ((data.train, 1437), (data.test, 360)):
        counts = np.bincount(split.labels.numpy(), minlength=10)
        assert np.all(np.abs(counts - full * size / 1797) <= 1.0)  # each class keeps its share, +-1 image


def test_split_is_identical_across_seeds() -> None:
    a, b = bundle(0), bundle(7)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.train.labels, b.train.labels)
    assert torch.equal(a.test.inputs, b.test.inputs) and torch.equal(a.test.labels, b.test.labels)


def test_splits_partition_the_digits() -> None:
    data = bundle()
    images = torch.cat([data.train.inputs, data.test.inputs])
    # training pixels span levels 0..16 exactly, so min/max recover the affine standardisation
    low, high = data.train.inputs.min(), data.train.inputs.max()
    levels = torch.round((images - low) / (high - low) * 16).view(-1, 64).to(torch.int64)
    labels = torch.cat([data.train.labels, data.test.labels])
    ours = sorted(zip(map(tuple, levels.tolist()), labels.tolist()))
    digits = load_digits()
    theirs = sorted(zip(map(tuple, digits.data.astype(np.int64).tolist()), digits.target.tolist()))
    assert ours == theirs


def test_standardised_with_training_statistics() -> None:
    digits = load_digits()
    x_train, x_test, y_train, _ = train_test_split(
        digits.data / 16.0, digits.target, test_size=360, stratify=digits.target, random_state=0
    )
    mean, std = x_train.mean(), x_train.std(ddof=1)
    data = bundle()
    np.testing.assert_allclose(data.train.inputs.view(-1, 64).numpy(), (x_train - mean) / std, atol=1e-5)
    np.testing.assert_allclose(data.test.inputs.view(-1, 64).numpy(), (x_test - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(data.train.labels.numpy(), y_train)
    assert data.train.inputs.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert data.train.inputs.std().item() == pytest.approx(1.0, abs=1e-5)
