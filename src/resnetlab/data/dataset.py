"""The types every reader returns and every consumer reads (one split of a dataset, what is known of it),
and the data directory they share.

Kept apart from the readers so that sources.py, folders.py and splits.py all import from here and the
arrows point one way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


def data_dir() -> Path:
    """$RESNETLAB_DATA, else ~/.cache/resnetlab: downloads and image-folder caches live here."""
    return Path(os.environ.get("RESNETLAB_DATA") or Path.home() / ".cache" / "resnetlab").expanduser()


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the loader need to know about a dataset."""

    name: str
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # (C, H, W)
    classes: tuple[str, ...]
    hflip: bool  # whether a horizontal flip keeps the label (not for digits or letters)


@dataclass
class Dataset:
    """One split of a dataset: uint8 images in memory (or memory-mapped), labels and class names."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    info: DatasetInfo
    split: str
    source: str  # where the files were found, for `data info` and run summaries
    skipped: list[str] = field(default_factory=list)  # unreadable files (image folders)
    files: list[str] | None = None  # image folders: each image's path relative to its split folder
    index: np.ndarray | None = None  # int64 (N,): each image's position in the split it was taken from

    def __len__(self) -> int:
        return len(self.labels)

    def positions(self) -> np.ndarray:
        """Each image's position in the split it came from (0..N-1 for a split read whole)."""
        return self.index if self.index is not None else np.arange(len(self.labels), dtype=np.int64)

    def subset(self, idx: np.ndarray, split: str, note: str) -> Dataset:
        """The images at `idx` (sorted positions into this dataset), as split `split`; `note` says how chosen."""
        idx = np.asarray(idx, np.int64)
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            split=split,
            source=f"{self.source} ({note})",
            files=[self.files[i] for i in idx] if self.files is not None else None,
            index=self.positions()[idx],
        )
