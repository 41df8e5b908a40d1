"""CIFAR-10 and CIFAR-100 from the standard python-pickle batch files; never downloaded.

Layouts (PATH may be the extracted folder itself or the folder that contains it):
- CIFAR-10: ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and ``test_batch``, each a pickled
  dict with ``b"data"`` (uint8 ``[N, 3072]``, channel-major 3×32×32) and ``b"labels"``.
- CIFAR-100: ``cifar-100-python/train`` and ``test`` with ``b"data"`` and ``b"fine_labels"`` (100 classes).

The files are read with an unpickler that only rebuilds numpy arrays, so a tampered file cannot run code.
Training images get the standard augmentation (random crop 32 with padding 4, horizontal flip).
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bitplan.data.augment import EpochRandomness, batch_crop_flip, crop_flip_params
from bitplan.data.bundle import DataBundle, DataRequest, Task
from bitplan.data.registry import register_source
from bitplan.errors import DataError

__all__ = ["CIFAR100", "CIFAR10", "CifarImages", "CifarLayout", "load_cifar10", "load_cifar100"]

PADDING = 4  # pixels of zero padding around the 32×32 training crop
_OPTIONS = {"augment": "random crop (padding 4) + horizontal flip on the training split; default true"}


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its files and how it normalises.

    Attributes:
        name: Spec kind, e.g. ``"cifar10"``.
        folder: Folder name inside the tarball, e.g. ``"cifar-10-batches-py"``.
        archive: The official tarball's name (for error messages).
        train_files: Training batch file names.
        test_files: Test batch file names.
        label_key: Pickle key of the labels.
        num_classes: Number of classes.
        mean: Per-channel mean of [0, 1] pixels.
        std: Per-channel std used for normalisation.
    """

    name: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key=b"labels",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2023, 0.1994, 0.2010),
)

CIFAR100 = CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    label_key=b"fine_labels",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR pickle needs: numpy's array and scalar reconstructors.

    They are taken from numpy's own ``__reduce__`` output rather than imported by (private) module path;
    both the numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) names resolve to them.
    """
    array = np.zeros(1, dtype=np.uint8)
    rebuild_array = array.__reduce__()[0]
    from_buffer = array.__reduce_ex__(5)[0]
    rebuild_scalar = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles store bytes this way
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = rebuild_array
        allowed[(f"{core}.multiarray", "scalar")] = rebuild_scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = from_buffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays; refuses every other global (no code execution)."""

    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global `{module}.{name}` is not allowed in a CIFAR batch") from None


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file into images ``[N, 3, 32, 32]`` uint8 and labels ``[N]`` int64.

    Raises:
        DataError: If the file is not a CIFAR pickle (corrupt, wrong keys, wrong sizes).
    """
    try:
        batch = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as error:  # a corrupt pickle can raise almost anything; all mean "not readable"
        raise DataError(
            f"CIFAR batch `{path}` is not a readable python pickle ({type(error).__name__}: {error}); "
            f"re-extract it from the official python-version tarball."
        ) from error
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"CIFAR batch `{path}` lacks the keys b'data' and {label_key!r} (found {found}); use the "
            f"python-version batch files, not the binary or MATLAB ones."
        )
    data = np.asarray(batch[b"data"])
    raw_labels = np.asarray(batch[label_key])
    if raw_labels.dtype.kind not in "iub" or raw_labels.ndim != 1:  # e.g. strings, floats, nested lists
        raise DataError(
            f"CIFAR batch `{path}` holds {label_key!r} of type {raw_labels.dtype} and shape {list(raw_labels.shape)}; "
            f"expected N integer class indices. Re-extract it from the official python-version tarball."
        )
    labels = raw_labels.astype(np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataError(
            f"CIFAR batch `{path}` holds {data.dtype} data of shape {data.shape} with {labels.shape[0]} labels; "
            f"expected [N, 3072] uint8 rows (3×32×32, channel-major) and N labels."
        )
    return data.reshape(-1, 3, 32, 32), labels


def _find_folder(root: Path, layout: CifarLayout) -> Path:
    """The folder holding the batch files: ``root`` itself or ``root/<layout.folder>``.

    Raises:
        DataError: Naming the first missing file and the expected layout.
    """
    expected = layout.train_files + layout.test_files
    for candidate in (root, root / layout.folder):
        if all((candidate / name).is_file() for name in expected):
            return candidate
    folder = root / layout.folder if (root / layout.folder).is_dir() else root
    missing = next(name for name in expected if not (folder / name).is_file())
    raise DataError(
        f"{layout.name} file `{folder / missing}` is missing; expected the python-version layout "
        f"`{layout.folder}/` holding {', '.join(expected)} (PATH may be that folder or its parent). "
        f"Extract the official `{layout.archive}` there; nothing is downloaded."
    )


class CifarImages(Dataset):
    """CIFAR images as normalised ``[3, 32, 32]`` float32 with int64 labels, optionally augmented.

    Batches are read through ``__getitems__`` (which DataLoader prefers), so a batch is converted,
    cropped and normalised in a few tensor ops; ``__getitem__`` reads a batch of one, so both agree.

    Args:
        images: ``[N, 3, 32, 32]`` uint8.
        labels: ``[N]`` int64.
        layout: Supplies the normalisation constants.
        augment: Apply random crop (padding 4) + horizontal flip before normalising.
        seed: Seed of the augmentation streams (see ``EpochRandomness``).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, layout: CifarLayout, *, augment: bool, seed: int
    ) -> None:
        self.images = images
        self.labels = labels
        self.layout = layout
        self.augment = augment
        self.randomness = EpochRandomness(seed)
        # (x / 255 - mean) / std as (x - 255·mean) · 1 / (255·std): two in-place ops on the uint8 -> float copy
        self._shift = torch.tensor(layout.mean).mul(255.0).view(1, 3, 1, 1)
        self._scale = torch.tensor(layout.std).mul(255.0).reciprocal().view(1, 3, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation draws (``bitplan.data.set_epoch`` calls this)."""
        self.randomness.set_epoch(epoch)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        images = self.images[indices]  # [B, 3, 32, 32] uint8
        if self.augment:  # crop in uint8 (4× less to move); zero padding is black either way
            uniforms = self.randomness.table(len(self), 3)[indices]  # [B, 3]: this epoch's draws per sample
            images = batch_crop_flip(images, crop_flip_params(uniforms, padding=PADDING), padding=PADDING)
        images = images.float().sub_(self._shift).mul_(self._scale)  # [B, 3, 32, 32] normalised
        return list(zip(images, self.labels[indices]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]


def _load(request: DataRequest, layout: CifarLayout) -> DataBundle:
    """Read both splits of ``layout`` from the request's path."""
    folder = _find_folder(request.existing_path(), layout)
    augment = request.bool_option("augment", True)

    def split(names: tuple[str, ...], *, train: bool) -> CifarImages:
        parts = [read_batch(folder / name, layout.label_key) for name in names]
        images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
        labels = torch.from_numpy(np.concatenate([labels for _, labels in parts]))
        bad = labels[(labels < 0) | (labels >= layout.num_classes)]
        if bad.numel():
            raise DataError(
                f"{layout.name} batches in `{folder}` hold label {int(bad[0])}, outside 0..{layout.num_classes - 1}; "
                f"check that PATH holds {layout.name}, not another CIFAR variant."
            )
        return CifarImages(images, labels, layout, augment=augment and train, seed=request.seed)

    return DataBundle(
        train=split(layout.train_files, train=True),
        test=split(layout.test_files, train=False),
        task=Task.classification,
        num_classes=layout.num_classes,
        vocab_size=None,
        input_shape=(3, 32, 32),
        name=f"{layout.name}:{folder.name}",
    )


@register_source(
    "cifar10",
    summary="CIFAR-10 python batches (cifar-10-batches-py/data_batch_1..5, test_batch), 3×32×32, 10 classes.",
    takes_path=True,
    options=_OPTIONS,
)
def load_cifar10(request: DataRequest) -> DataBundle:
    """CIFAR-10, normalised with mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010)."""
    return _load(request, CIFAR10)


@register_source(
    "cifar100",
    summary="CIFAR-100 python files (cifar-100-python/train, test), fine labels, 3×32×32, 100 classes.",
    takes_path=True,
    options=_OPTIONS,
)
def load_cifar100(request: DataRequest) -> DataBundle:
    """CIFAR-100 (fine labels), normalised with mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762)."""
    return _load(request, CIFAR100)
