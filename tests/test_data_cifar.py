"""CIFAR-10/100 loaders on tiny batch files written in the real python-pickle format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bitplan.data import Task, load_data
from bitplan.data.augment import crop_flip, normalize
from bitplan.data.cifar import CIFAR10, CIFAR100, CifarImages
from bitplan.errors import DataError

PER_BATCH = 3  # training images per data_batch_i
TEST_IMAGES = 4


def images(count: int, seed: int) -> np.ndarray:
    """``[count, 3072]`` uint8 rows, channel-major (1024 red, then green, then blue), like CIFAR."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, 3072), dtype=np.uint8)


def write_batch(path: Path, data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> None:
    """A batch as the official files hold it: protocol 2, bytes keys, uint8 data, list labels."""
    batch = {
        b"batch_label": b"training batch",
        label_key: labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", images(PER_BATCH, i), [(i + j) % 10 for j in range(PER_BATCH)])
    write_batch(folder / "test_batch", images(TEST_IMAGES, 99), [9, 8, 7, 6])
    return folder


@pytest.fixture
def cifar10(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path)


def test_cifar10_shapes_labels_and_split_sizes(cifar10: Path) -> None:
    data = load_data(f"cifar10:{cifar10}")
    assert (len(data.train), len(data.test)) == (5 * PER_BATCH, TEST_IMAGES)
    assert data.task is Task.classification and data.num_classes == 10 and data.input_shape == (3, 32, 32)
    assert data.name == "cifar10:cifar-10-batches-py"
    x, y = data.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64 and y.shape == ()
    assert [int(data.test[i][1]) for i in range(TEST_IMAGES)] == [9, 8, 7, 6]
    # batches are concatenated in order data_batch_1..5
    expected = [(i + j) % 10 for i in range(1, 6) for j in range(PER_BATCH)]
    assert [int(data.train[i][1]) for i in range(5 * PER_BATCH)] == expected


def test_path_may_be_the_parent_folder(cifar10: Path) -> None:
    data = load_data(f"cifar10:{cifar10.parent}")
    assert len(data.train) == 5 * PER_BATCH


def test_test_images_are_channel_major_and_normalised(cifar10: Path) -> None:
    data = load_data(f"cifar10:{cifar10}")
    raw = images(TEST_IMAGES, 99)[2]
    x, _ = data.test[2]
    for channel, (mean, std) in enumerate(zip((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))):
        plane = torch.from_numpy(raw[channel * 1024 : (channel + 1) * 1024].astype(np.float32)).view(32, 32)
        assert torch.allclose(x[channel], (plane / 255 - mean) / std, atol=1e-6)


def test_training_images_are_a_padded_crop_maybe_flipped(cifar10: Path) -> None:
    data = load_data(f"cifar10:{cifar10}", seed=5)
    raw = torch.from_numpy(images(PER_BATCH, 1)[0]).view(3, 32, 32).float() / 255
    windows = [(top, left, flip) for top in range(9) for left in range(9) for flip in (False, True)]
    candidates = torch.stack([normalize(crop_flip(raw, *w, padding=4), CIFAR10.mean, CIFAR10.std) for w in windows])
    seen = set()
    for epoch in range(12):
        data.train.set_epoch(epoch)
        x, _ = data.train[0]
        distance = (candidates - x).abs().flatten(1).amax(1)  # [162]
        matches = [w for w, d in zip(windows, distance.tolist()) if d < 1e-5]
        assert len(matches) == 1  # a random image matches exactly one crop window and orientation
        seen.add(matches[0])
    assert {flip for _, _, flip in seen} == {False, True} and len(seen) > 6


def test_crop_flip_by_hand() -> None:
    image = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    assert torch.equal(crop_flip(image, 1, 1, False, padding=1), image)
    assert torch.equal(crop_flip(image, 1, 1, True, padding=1), image.flip(-1))
    shifted = crop_flip(image, 0, 2, False, padding=1)  # one row of padding on top, shifted one column left
    assert torch.equal(shifted[:, 0], torch.zeros(2, 4))
    assert torch.equal(shifted[:, 1:, :3], image[:, :2, 1:])
    assert torch.equal(shifted[:, :, 3], torch.zeros(2, 3))


def test_augmentation_is_a_function_of_seed_epoch_and_index(cifar10: Path) -> None:
    first = load_data(f"cifar10:{cifar10}", seed=3).train
    second = load_data(f"cifar10:{cifar10}", seed=3).train
    other_seed = load_data(f"cifar10:{cifar10}", seed=4).train
    for dataset in (first, second, other_seed):
        dataset.set_epoch(2)
    # reading order does not matter: forwards in one, backwards in the other
    forwards = [first[i][0] for i in range(len(first))]
    backwards = [second[i][0] for i in reversed(range(len(second)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forwards, backwards))
    assert not all(torch.equal(a, other_seed[i][0]) for i, a in enumerate(forwards))
    first.set_epoch(3)
    assert not all(torch.equal(a, first[i][0]) for i, a in enumerate(forwards))


def test_augment_false_and_the_test_split_are_not_augmented(cifar10: Path) -> None:
    data = load_data(f"cifar10:{cifar10}?augment=false")
    raw = torch.from_numpy(images(PER_BATCH, 1)[1]).view(3, 32, 32).float() / 255
    assert torch.allclose(data.train[1][0], normalize(raw, CIFAR10.mean, CIFAR10.std), atol=1e-6)
    augmented = load_data(f"cifar10:{cifar10}")
    assert not augmented.test.augment and augmented.train.augment


def test_cifar100_fine_labels_and_statistics(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_batch(folder / "train", images(5, 1), [0, 99, 50, 3, 42], label_key=b"fine_labels")
    write_batch(folder / "test", images(2, 2), [98, 1], label_key=b"fine_labels")
    data = load_data(f"cifar100:{tmp_path}")
    assert data.num_classes == 100 and (len(data.train), len(data.test)) == (5, 2)
    assert [int(data.train[i][1]) for i in range(5)] == [0, 99, 50, 3, 42]
    raw = torch.from_numpy(images(2, 2)[0]).view(3, 32, 32).float() / 255
    mean = torch.tensor([0.5071, 0.4865, 0.4409]).view(3, 1, 1)
    std = torch.tensor([0.2673, 0.2564, 0.2762]).view(3, 1, 1)
    assert torch.allclose(data.test[0][0], (raw - mean) / std, atol=1e-6)
    assert CIFAR100.label_key == b"fine_labels"


def test_missing_batch_is_named_with_the_layout(cifar10: Path) -> None:
    (cifar10 / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"cifar10 file `.*data_batch_3` is missing.*cifar-10-batches-py/"):
        load_data(f"cifar10:{cifar10.parent}")


def test_corrupt_pickle(cifar10: Path) -> None:
    (cifar10 / "test_batch").write_bytes(os.urandom(64))
    with pytest.raises(DataError, match=r"CIFAR batch `.*test_batch` is not a readable python pickle"):
        load_data(f"cifar10:{cifar10}")


def test_wrong_keys(cifar10: Path) -> None:
    write_batch(cifar10 / "test_batch", images(2, 0), [1, 2], label_key=b"fine_labels")
    with pytest.raises(DataError, match=r"lacks the keys b'data' and b'labels'"):
        load_data(f"cifar10:{cifar10}")


@pytest.mark.parametrize("data", [np.zeros((2, 3072), dtype=np.int64), np.zeros((2, 1024), dtype=np.uint8)])
def test_wrong_data_shape_or_dtype(cifar10: Path, data: np.ndarray) -> None:
    write_batch(cifar10 / "test_batch", data, [1, 2])
    with pytest.raises(DataError, match=r"expected \[N, 3072\] uint8 rows"):
        load_data(f"cifar10:{cifar10}")


def test_labels_out_of_range(cifar10: Path) -> None:
    write_batch(cifar10 / "test_batch", images(2, 0), [1, 57])
    with pytest.raises(DataError, match=r"hold label 57, outside 0..9"):
        load_data(f"cifar10:{cifar10}")


class RunsCode:
    """Unpickling this would call os.system: the loader must refuse it, not run it."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_pickles_that_would_run_code_are_refused(cifar10: Path) -> None:
    (cifar10 / "test_batch").write_bytes(pickle.dumps({b"data": RunsCode(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"not a readable python pickle.*is not allowed in a CIFAR batch"):
        load_data(f"cifar10:{cifar10}")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_pickle_protocol_of_numpy_arrays_reads(tmp_path: Path, protocol: int) -> None:
    folder = write_cifar10(tmp_path)
    batch = {b"data": images(2, 7), b"labels": np.array([3, 4])}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    data = load_data(f"cifar10:{folder}")
    assert [int(data.test[i][1]) for i in range(2)] == [3, 4]


def test_dataset_from_tensors_matches_layout_constants() -> None:
    white = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    dataset = CifarImages(white, torch.zeros(1, dtype=torch.int64), CIFAR10, augment=False, seed=0)
    x, _ = dataset[0]
    expected = [(1 - m) / s for m, s in zip((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))]
    assert torch.allclose(x[:, 0, 0], torch.tensor(expected), atol=1e-6)


def test_crop_flip_params_by_hand() -> None:
    from bitplan.data.augment import crop_flip_params

    uniforms = torch.tensor([[0.0, 0.999, 0.49], [0.5, 0.12, 0.5], [0.1111, 0.1112, 0.0]])
    # 9 window positions for padding 4: u in [k/9, (k+1)/9) -> k; flip when u < 0.5
    assert crop_flip_params(uniforms, padding=4).tolist() == [[0, 8, 1], [4, 1, 0], [0, 1, 1]]
