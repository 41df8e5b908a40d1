"""An ImageNet-style folder: ``PATH/train/<class>/*.png|jpg|…`` and ``PATH/val/<class>/…``.

Classes are the sorted sub-folder names of ``train``; ``val`` may hold a subset of them. Images are
decoded with Pillow on access. Training: random-resized crop (scale 0.08–1, aspect 3/4–4/3, as
torchvision's ``RandomResizedCrop``) to ``size`` plus a horizontal flip; evaluation: resize the shorter
side to ``size / 0.875`` and centre-crop ``size``. Both are normalised with the ImageNet statistics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bitplan.data.augment import EpochRandomness, normalize
from bitplan.data.bundle import DataBundle, DataRequest, Task
from bitplan.data.registry import register_source
from bitplan.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "IMAGENET_MEAN", "IMAGENET_STD", "FolderImages", "load_imagefolder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
VAL_FOLDERS = ("val", "validation", "valid")
EVAL_RESIZE_RATIO = 0.875  # 224 / 256, the usual ImageNet evaluation crop
_SCALE = (0.08, 1.0)
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


def random_resized_box(
    width: int, height: int, generator: torch.Generator, *, attempts: int = 10
) -> tuple[int, int, int, int]:
    """A random crop box ``(left, top, right, bottom)`` covering 8–100% of the area, aspect 3/4–4/3.

    Same sampling as torchvision's ``RandomResizedCrop.get_params``: up to ``attempts`` tries, then a
    centre crop with the aspect ratio clamped to the range.
    """
    area = width * height
    for _ in range(attempts):
        scale, log_ratio, u_top, u_left = torch.rand(4, generator=generator).tolist()
        target = area * (_SCALE[0] + scale * (_SCALE[1] - _SCALE[0]))
        ratio = math.exp(_LOG_RATIO[0] + log_ratio * (_LOG_RATIO[1] - _LOG_RATIO[0]))
        crop_w, crop_h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(u_top * (height - crop_h + 1))
            left = int(u_left * (width - crop_w + 1))
            return left, top, left + crop_w, top + crop_h
    aspect = width / height
    if aspect < math.exp(_LOG_RATIO[0]):
        crop_w, crop_h = width, round(width / math.exp(_LOG_RATIO[0]))
    elif aspect > math.exp(_LOG_RATIO[1]):
        crop_w, crop_h = round(height * math.exp(_LOG_RATIO[1])), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def center_box(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resize target (shorter side ``size / 0.875``) and the centred ``size``×``size`` box within it."""
    short = max(size, round(size / EVAL_RESIZE_RATIO))
    if width <= height:
        resized = (short, max(short, int(height * short / width)))
    else:
        resized = (max(short, int(width * short / height)), short)
    left, top = round((resized[0] - size) / 2), round((resized[1] - size) / 2)
    return resized, (left, top, left + size, top + size)


class FolderImages(Dataset):
    """Images decoded from files on access, as normalised ``[3, size, size]`` float32 tensors.

    Args:
        files: Image paths.
        labels: ``[N]`` int64 class indices.
        size: Output height and width.
        augment: Random-resized crop + flip (training) instead of resize + centre crop (evaluation).
        seed: Seed of the augmentation streams (see ``EpochRandomness``).
    """

    def __init__(self, files: list[Path], labels: torch.Tensor, *, size: int, augment: bool, seed: int) -> None:
        self.files = files
        self.labels = labels
        self.size = size
        self.augment = augment
        self.randomness = EpochRandomness(seed)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation draws (``bitplan.data.set_epoch`` calls this)."""
        self.randomness.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Pillow ships with matplotlib; imported here so `import bitplan.data` stays light.
        from PIL import Image, UnidentifiedImageError

        path = self.files[index]
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"image `{path}` cannot be decoded ({error}); delete or replace the file.") from error
        except Image.DecompressionBombError as error:  # a huge image would exhaust memory when decoded
            raise DataError(
                f"image `{path}` is too large to decode safely ({error}); resize it (the model sees "
                f"{self.size}×{self.size}) or remove it."
            ) from None
        square = (self.size, self.size)
        if self.augment:
            generator = self.randomness.generator(index)
            box = random_resized_box(image.width, image.height, generator)
            image = image.resize(square, Image.Resampling.BILINEAR, box=box)
            if bool(torch.randint(0, 2, (), generator=generator)):
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            resized, box = center_box(image.width, image.height, self.size)
            image = image.resize(resized, Image.Resampling.BILINEAR).crop(box)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # [3, size, size]
        return normalize(pixels.float().div(255.0), IMAGENET_MEAN, IMAGENET_STD), self.labels[index]


def _images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(split: Path) -> list[Path]:
    """Sub-folders of ``split`` (hidden ones skipped), sorted by name."""
    return sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(split: Path, classes: list[str]) -> tuple[list[Path], torch.Tensor]:
    """Files and labels of one split, given the class order from ``train``.

    Raises:
        DataError: If a class folder is not a training class or the split holds no images.
    """
    files: list[Path] = []
    labels: list[int] = []
    index = {name: i for i, name in enumerate(classes)}
    for folder in _class_folders(split):
        if folder.name not in index:
            raise DataError(
                f"class folder `{folder}` has no counterpart in the training split; every class in "
                f"`{split.name}/` must also be a folder in `train/`."
            )
        images = _images_in(folder)
        files += images
        labels += [index[folder.name]] * len(images)
    if not files:
        raise DataError(
            f"image folder `{split}` holds no images; expected `{split.name}/<class>/<image>` with suffixes "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}."
        )
    return files, torch.tensor(labels, dtype=torch.int64)


@register_source(
    "imagefolder",
    summary="ImageNet-style PATH/train/<class>/*.jpg and PATH/val/<class>/*.jpg, 3×size×size.",
    takes_path=True,
    options={
        "size": "output height and width in pixels; default 224",
        "augment": "random-resized crop + horizontal flip on the training split; default true",
    },
)
def load_imagefolder(request: DataRequest) -> DataBundle:
    """Both splits of an image folder, decoded lazily."""
    root = request.existing_path()
    size = request.int_option("size", 224)
    train_dir = root / "train"
    val_dir = next((root / name for name in VAL_FOLDERS if (root / name).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        missing = "train" if not train_dir.is_dir() else "val"
        raise DataError(
            f"image folder `{root}` has no `{missing}/` folder; expected `{root}/train/<class>/<image>` and "
            f"`{root}/val/<class>/<image>` (the ImageNet layout)."
        )
    classes = [folder.name for folder in _class_folders(train_dir)]
    train_files, train_labels = _scan(train_dir, classes)
    counts = torch.bincount(train_labels, minlength=len(classes))
    if (counts == 0).any():
        empty = classes[int(torch.nonzero(counts == 0)[0])]
        raise DataError(
            f"training class folder `{train_dir / empty}` holds no images (suffixes "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder."
        )
    val_files, val_labels = _scan(val_dir, classes)
    augment = request.bool_option("augment", True)
    return DataBundle(
        train=FolderImages(train_files, train_labels, size=size, augment=augment, seed=request.seed),
        test=FolderImages(val_files, val_labels, size=size, augment=False, seed=request.seed),
        task=Task.classification,
        num_classes=len(classes),
        vocab_size=None,
        input_shape=(3, size, size),
        name=f"imagefolder:{root.name}",
    )
