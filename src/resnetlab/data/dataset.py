"""The types every reader returns and every consumer reads (one split of a dataset, what is known of it),
and the data directory they share.

Kept apart from the readers so that sources.py, the formats (idx.py, cifar.py, folders.py), the registry and
splits.py all import from here and the arrows point one way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .rowfile import CheckedRows


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


class Rows:
    """Some rows of a memory-mapped image array, not read until asked for: what a part of a folder's cache is
    (the training part of a hold-out, a sample), so that carving a split out of a many-gigabyte cache costs
    an index, not a copy. Reads like the array it stands for: `shape`, `len`, indexing, `np.asarray`."""

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base = base  # uint8 (M, H, W, C), memory-mapped
        self.rows = np.asarray(rows, np.int64)  # (N,) positions in `base`
        self.dtype = base.dtype
        self.shape = (len(self.rows), *base.shape[1:])
        self.ndim = base.ndim
        self.nbytes = len(self.rows) * int(np.prod(base.shape[1:], dtype=np.int64)) * base.itemsize

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):  # noqa: ANN001 - what indexes an ndarray: an int, a slice, an array, a tuple
        if not isinstance(key, tuple):
            return self.base[self.rows[key]]
        if not key or key[0] is Ellipsis or key[0] is None:
            return np.asarray(self)[key]  # reads every row
        first, rest = key[0], key[1:]  # the first part picks images, the rest indexes within them
        picked = self.base[self.rows[first]]
        return picked[(slice(None), *rest)] if np.ndim(self.rows[first]) else picked[rest]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # noqa: ANN001 - numpy's protocol
        whole = self.base[self.rows]
        return whole if dtype is None else whole.astype(dtype, copy=False)


def mapped(images: np.ndarray | Rows) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(memory-mapped array, rows of it or None for all) when `images` is read from a file, else None."""
    if isinstance(images, Rows):
        return images.base, images.rows
    return (images, None) if isinstance(images, np.memmap) else None


def centre_offsets(stored: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the centre `size` (h, w) window of a `stored` (h, w) image, rounded as torchvision's
    CenterCrop rounds them."""
    return int(round((stored[0] - size[0]) / 2.0)), int(round((stored[1] - size[1]) / 2.0))


def channel_stats(images: np.ndarray | Rows, limit: int = 5000, chunk: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the [0, 1] scale of every k-th image (at most `limit` of them), exactly, from
    a histogram of each channel's 256 levels built `chunk` images at a time: memory stays at one chunk of
    uint8 whatever the image size, and counting levels is several times faster than float arithmetic."""
    picked = np.arange(0, len(images), max(1, -(-len(images) // limit)))  # every ceil(n / limit)-th image
    channels = images.shape[-1]
    counts = np.zeros((channels, 256), np.int64)
    for start in range(0, len(picked), chunk):
        block = np.asarray(images[picked[start : start + chunk]]).reshape(-1, channels)
        for c in range(channels):
            counts[c] += np.bincount(block[:, c], minlength=256)
    levels = np.arange(256) / 255.0
    total = counts.sum(1)
    mean = counts @ levels / total
    variance = counts @ levels**2 / total - mean**2
    return mean.tolist(), np.sqrt(np.maximum(variance, 0.0)).tolist()


@dataclass
class Dataset:
    """One split of a dataset: uint8 images in memory (or memory-mapped), labels and class names."""

    images: np.ndarray | Rows  # uint8 (N, H, W, C): in memory, memory-mapped, or rows of a memory map
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    info: DatasetInfo
    split: str
    source: str  # where the files were found, for `data info` and run summaries
    skipped: list[str] = field(default_factory=list)  # unreadable files (image folders)
    files: list[str] | None = None  # image folders: each image's path relative to its split folder
    index: np.ndarray | None = None  # int64 (N,): each image's position in the split it was taken from
    checks: CheckedRows | None = None  # a folder cache: its rows read through the file, each checksum checked

    def __len__(self) -> int:
        return len(self.labels)

    def view(self) -> tuple[int, int]:
        """(H, W) the network sees: info.input_size, within the stored images (larger for image folders, whose
        evaluation takes the centre of each and whose training crops)."""
        _, height, width = self.info.input_size
        return min(int(self.images.shape[1]), height), min(int(self.images.shape[2]), width)

    def positions(self) -> np.ndarray:
        """Each image's position in the split it came from (0..N-1 for a split read whole)."""
        return self.index if self.index is not None else np.arange(len(self.labels), dtype=np.int64)

    def subset(self, idx: np.ndarray, split: str, note: str) -> Dataset:
        """The images at `idx` (sorted positions into this dataset), as split `split`; `note` says how chosen."""
        idx = np.asarray(idx, np.int64)
        on_disk = mapped(self.images)
        if on_disk is not None:  # a memory map stays one: note which rows, read none of them
            base, rows = on_disk
            images: np.ndarray | Rows = Rows(base, idx if rows is None else rows[idx])
        else:
            images = self.images[idx]
        return replace(
            self,
            images=images,
            labels=self.labels[idx],
            split=split,
            source=f"{self.source} ({note})",
            files=[self.files[i] for i in idx] if self.files is not None else None,
            index=self.positions()[idx],
        )
