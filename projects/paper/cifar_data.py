"""The CIFAR-10 *binary* release (``cifar-10-batches-bin``) as a torch Dataset.

Each ``.bin`` file is a sequence of 3073-byte records: one label byte (0..9), then the 32x32
image as 1024 red, 1024 green and 1024 blue bytes, rows in order. The pickled "python version"
is deliberately not read: unpickling a downloaded file can run code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CIFAR10_CLASSES", "CIFAR10_TRAIN_FILES", "CIFAR10_TEST_FILES", "RECORD_BYTES",
           "read_cifar10_bin", "Cifar10Binary"]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch.bin",)
IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32


def read_cifar10_bin(path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` from one CIFAR-10 ``.bin`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 binary file not found: {path} (expected the 'CIFAR-10 binary version' "
            f"release, directory cifar-10-batches-bin with {', '.join(CIFAR10_TRAIN_FILES)} and "
            f"{CIFAR10_TEST_FILES[0]})"
        )
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise ValueError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 "
            f"records (1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 "
            f"binary batch. Re-extract cifar-10-binary.tar.gz."
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= len(CIFAR10_CLASSES))
    if bad.size:
        raise ValueError(
            f"{path}: record {bad[0]} has label byte {labels[bad[0]]}, CIFAR-10 labels are 0..9; "
            f"is this a CIFAR-100 file (2 label bytes per record)?"
        )
    images = records[:, 1:].reshape(-1, *IMAGE_SHAPE)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


class Cifar10Binary(Dataset):
    """CIFAR-10 from ``root`` (a ``cifar-10-batches-bin`` directory): ``train=True`` reads
    data_batch_1..5.bin, ``train=False`` test_batch.bin. Items are ``(image, label)`` with the
    image a uint8 (3, 32, 32) tensor, passed through ``transform`` when given."""

    classes = CIFAR10_CLASSES

    def __init__(self, root, train: bool = True, transform=None):
        root = Path(root)
        files = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
        parts = [read_cifar10_bin(root / name) for name in files]
        self.images = torch.cat([p[0] for p in parts])
        self.targets = torch.cat([p[1] for p in parts])
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
