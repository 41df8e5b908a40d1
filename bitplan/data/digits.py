"""scikit-learn's handwritten digits (shipped inside scikit-learn): 1797 8×8 images, 10 classes.

The train/test split is fixed (stratified, ``random_state=0``) and does not depend on the run's seed,
so every run and every seed of a study trains on the same 1437 images and tests on the same 360.
"""

from __future__ import annotations

import torch

from bitplan.data.bundle import DataBundle, DataRequest, Task
from bitplan.data.datasets import LabelledTensors
from bitplan.data.registry import register_source

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_SIZE", "load_digits_bundle"]

DIGITS_TEST_SIZE = 360
"""Test images (20% of 1797, rounded to a multiple of 10 so each class gets 36 or so)."""

DIGITS_SPLIT_SEED = 0
"""``random_state`` of the one fixed split."""


@register_source(
    "digits",
    summary="scikit-learn's handwritten digits, 1×8×8, 10 classes; fixed stratified split 1437/360.",
    takes_path=False,
)
def load_digits_bundle(request: DataRequest) -> DataBundle:
    """The digits as ``[1, 8, 8]`` images scaled to [0, 1] and standardised with training statistics.

    One scalar mean and std over all training pixels (not per pixel: border pixels are always 0).
    """
    # scikit-learn takes ~1 s to import; only pay for it when digits are asked for.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.data).float().div(16.0).view(-1, 1, 8, 8)  # [1797, 1, 8, 8] in [0, 1]
    labels = torch.from_numpy(digits.target).long()  # [1797]
    train_idx, test_idx = train_test_split(
        torch.arange(labels.shape[0]).numpy(),
        test_size=DIGITS_TEST_SIZE,
        stratify=digits.target,
        random_state=DIGITS_SPLIT_SEED,
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    standardised = (images - mean) / std
    return DataBundle(
        train=LabelledTensors(standardised[train_idx], labels[train_idx]),
        test=LabelledTensors(standardised[test_idx], labels[test_idx]),
        task=Task.classification,
        num_classes=10,
        vocab_size=None,
        input_shape=(1, 8, 8),
        name="digits",
    )
