"""The ImageNet-style image folder loader on tiny PNG folders written with Pillow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bitplan.data import Task, load_data
from bitplan.data.imagefolder import center_box, random_resized_box
from bitplan.errors import DataError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)


def solid(color: tuple[int, int, int], width: int = 40, height: int = 30) -> np.ndarray:
    return np.broadcast_to(np.array(color, dtype=np.uint8), (height, width, 3)).copy()


def gradient(width: int = 48, height: int = 36) -> np.ndarray:
    """Red grows left to right: any crop of it, resized, increases along x unless it was mirrored."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width).astype(np.uint8)[None, :]
    return pixels


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-imagenet"
    save(root / "train" / "dog" / "a.png", solid((255, 0, 128)))
    save(root / "train" / "dog" / "b.PNG", solid((0, 255, 0)))
    save(root / "train" / "cat" / "a.png", gradient())
    save(root / "val" / "dog" / "c.png", solid((255, 0, 128)))
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def expected_pixel(color: tuple[int, int, int]) -> torch.Tensor:
    return ((torch.tensor(color, dtype=torch.float32).view(3, 1, 1) / 255) - MEAN) / STD


def test_classes_labels_shapes(folder: Path) -> None:
    data = load_data(f"imagefolder:{folder}?size=16")
    assert data.task is Task.classification and data.num_classes == 2 and data.input_shape == (3, 16, 16)
    assert (len(data.train), len(data.test)) == (3, 1)  # notes.txt is skipped
    assert data.name == "imagefolder:tiny-imagenet"
    assert data.train.labels.tolist() == [0, 1, 1]  # classes sorted: cat = 0, dog = 1
    assert int(data.test[0][1]) == 1  # val/dog keeps train's index for dog
    x, y = data.train[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_imagenet_normalisation_on_solid_images(folder: Path) -> None:
    data = load_data(f"imagefolder:{folder}?size=16")
    for x in (data.train[1][0], data.test[0][0]):  # augmented and evaluation paths
        assert torch.allclose(x, expected_pixel((255, 0, 128)).expand(3, 16, 16), atol=1e-5)


def test_evaluation_is_resize_then_centre_crop(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 36, 3), dtype=np.uint8)  # height 32 = round(28 / 0.875): no resize
    save(tmp_path / "train" / "a" / "x.png", pixels)
    save(tmp_path / "val" / "a" / "x.png", pixels)
    x, _ = load_data(f"imagefolder:{tmp_path}?size=28").test[0]
    window = torch.from_numpy(pixels[2:30, 4:32]).permute(2, 0, 1).float() / 255  # centre 28×28 of 32×36
    assert torch.allclose(x, (window - MEAN) / STD, atol=1e-5)


def test_center_box_by_hand() -> None:
    assert center_box(500, 375, 224) == ((341, 256), (58, 16, 282, 240))  # torchvision Resize(256)+CenterCrop(224)
    assert center_box(32, 32, 32) == ((37, 37), (2, 2, 34, 34))


def test_training_crops_are_deterministic_per_epoch_and_flip_both_ways(folder: Path) -> None:
    first = load_data(f"imagefolder:{folder}?size=12", seed=1).train
    again = load_data(f"imagefolder:{folder}?size=12", seed=1).train
    orientations = set()
    previous = None
    for epoch in range(16):
        first.set_epoch(epoch)
        again.set_epoch(epoch)
        red = first[0][0][0]  # [12, 12], the gradient image of class cat
        assert torch.equal(red, again[0][0][0])
        steps = red[:, 1:] - red[:, :-1]
        assert bool((steps >= -1e-6).all()) != bool((steps <= 1e-6).all())  # monotone one way or the other
        orientations.add(bool((steps >= -1e-6).all()))
        assert previous is None or not torch.equal(previous, red)
        previous = red
    assert orientations == {True, False}


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**31))
def test_random_resized_box_stays_inside_with_torchvision_ranges(width: int, height: int, seed: int) -> None:
    left, top, right, bottom = random_resized_box(width, height, torch.Generator().manual_seed(seed))
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    crop_w, crop_h = right - left, bottom - top
    fallback = (left, top) == ((width - crop_w) // 2, (height - crop_h) // 2)
    if not fallback:  # a sampled box: area 8-100% and aspect 3/4..4/3 before rounding
        assert crop_w * crop_h <= width * height
        assert 3 / 4 - 1.5 / min(crop_h, crop_w) <= crop_w / crop_h <= 4 / 3 + 1.5 / min(crop_h, crop_w)
        assert math.sqrt(crop_w * crop_h) >= math.sqrt(0.08 * width * height) - 1.5


def test_missing_val_folder(tmp_path: Path) -> None:
    save(tmp_path / "train" / "a" / "x.png", solid((1, 2, 3)))
    with pytest.raises(DataError, match=r"has no `val/` folder; expected .*train/<class>/<image>.*ImageNet layout"):
        load_data(f"imagefolder:{tmp_path}")


def test_empty_training_class(tmp_path: Path) -> None:
    save(tmp_path / "train" / "a" / "x.png", solid((1, 2, 3)))
    (tmp_path / "train" / "b").mkdir()
    save(tmp_path / "val" / "a" / "x.png", solid((1, 2, 3)))
    with pytest.raises(DataError, match=r"training class folder `.*train/b` holds no images"):
        load_data(f"imagefolder:{tmp_path}")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match=r"image folder `.*train` holds no images; expected `train/<class>/<image>`"):
        load_data(f"imagefolder:{tmp_path}")


def test_val_class_unknown_to_train(tmp_path: Path) -> None:
    save(tmp_path / "train" / "a" / "x.png", solid((1, 2, 3)))
    save(tmp_path / "val" / "zebra" / "x.png", solid((1, 2, 3)))
    with pytest.raises(DataError, match=r"class folder `.*val/zebra` has no counterpart in the training split"):
        load_data(f"imagefolder:{tmp_path}")


def test_undecodable_image_names_the_file(tmp_path: Path) -> None:
    save(tmp_path / "train" / "a" / "x.png", solid((1, 2, 3)))
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    data = load_data(f"imagefolder:{tmp_path}?size=8")
    with pytest.raises(DataError, match=r"image `.*broken.png` cannot be decoded"):
        data.test[0]
