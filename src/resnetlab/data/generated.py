"""Generated data (for tests, smoke runs and benchmarks: made on the spot, not real images): the format of a
named dataset with no files, and synthetic(), the learnable patterns the `synthetic` dataset is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import UserError
from .dataset import Dataset, DatasetInfo

if TYPE_CHECKING:
    from .registry import NamedDataset


@dataclass(frozen=True)
class Generated:
    """A dataset made by `make(split)`: nothing to find, verify or fetch."""

    make: Callable[[str], Dataset]
    fetchable: ClassVar[bool] = False

    def read(self, dataset: NamedDataset, split: str, path: Path | None, allow_download: bool) -> Dataset:
        return self.make(split)

    def fetch(self, dataset: NamedDataset, target: Path) -> None:
        raise UserError(f"{dataset.name} is generated when it is read; there is nothing to fetch")


def synthetic(
    split: str, n: int | None = None, num_classes: int = 10, size: int = 32, channels: int = 3, seed: int = 0
) -> Dataset:
    """Learnable generated images: each class is a fixed random pattern, each image that pattern plus noise."""
    n = n or (1000 if split == "train" else 200)
    rng = np.random.default_rng(seed)  # the class patterns are shared by every split
    # Smooth patterns (4x4 colour blocks scaled up) so that crops and flips keep them recognisable.
    coarse = rng.uniform(40, 215, (num_classes, 4, 4, channels))
    patterns = coarse.repeat(-(-size // 4), 1).repeat(-(-size // 4), 2)[:, :size, :size]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    labels = rng.integers(0, num_classes, n)
    images = patterns[labels] + rng.normal(0, 40, (n, size, size, channels))
    images = np.clip(images, 0, 255).astype(np.uint8)
    classes = [f"class{i}" for i in range(num_classes)]
    info = DatasetInfo("synthetic", (0.5,) * channels, (0.25,) * channels, (channels, size, size), tuple(classes), True)
    return Dataset(images, labels.astype(np.int64), classes, info, split, "generated (synthetic)")
