"""Where images come from: every reader returns uint8 images (N, H, W, C), int64 labels and class names.

load_dataset("fashion-mnist", "train")     # a named dataset (registry.py, one file each in datasets/)
load_dataset("cifar10", "test")            # ... its files found, verified, or downloaded by its format
load_dataset("path/to/folder", "train")    # root/<class>/*.jpg, or root/train|val/<class>/...
load_dataset("path/to/idx-folder", "test") # a folder of IDX files, or a CIFAR tarball, of unknown provenance
load_dataset("synthetic", "train")         # generated patterns for tests, clearly not real data
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError, did_you_mean, near_path
from .dataset import Dataset, DatasetInfo
from .folders import CENTRE_CROP, folder_parts
from .generated import synthetic
from .idx import load_idx_path
from .registry import canonical, named, names
from .splits import Splits, split_parts

__all__ = [
    "check_data_name",
    "dataset_info",
    "image_folder",
    "load_dataset",
    "load_splits",
    "same_data",
    "source_parts",
    "synthetic",
]


def same_data(a: str, b: str | None) -> bool:
    """Whether two dataset names or paths mean the same data (aliases, relative and absolute paths)."""
    if not a or not b:
        return False
    if Path(a).expanduser().exists() and Path(b).expanduser().exists():
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return canonical(a) == canonical(b)


def image_folder(name_or_path: str) -> Path | None:
    """The folder, when `name_or_path` is a folder of images in class folders (not a named dataset, nor a folder
    of IDX files or CIFAR batches), else None."""
    candidate = Path(name_or_path).expanduser()
    if named(name_or_path) is not None or not candidate.is_dir():
        return None
    return None if any("idx3" in p.name for p in candidate.iterdir()) else candidate


def source_parts(
    name_or_path: str,
    *,
    path: str | Path | None = None,
    allow_download: bool = True,
    image_size: int = 224,
    channels: int = 3,
    centre_crop: float = CENTRE_CROP,
) -> dict[str, Callable[[], Dataset] | None]:
    """The splits a source has of its own, as loaders: {"train": ..., "val": ... or None, "test": ... or None}."""
    key = canonical(name_or_path)
    known = named(name_or_path) is not None
    candidate = Path(name_or_path).expanduser()
    folder = image_folder(name_or_path)
    if folder is not None:
        return folder_parts(folder, image_size=image_size, channels=channels, centre_crop=centre_crop)

    def reader(split: str) -> Callable[[], Dataset]:
        return lambda: _load_split(key, candidate, split, path, allow_download)

    if not known and not candidate.exists():
        reader("train")()  # an unknown name: the error says what would work, before anything else
    return {"train": reader("train"), "val": None, "test": reader("test")}


def load_splits(
    name_or_path: str,
    *,
    path: str | Path | None = None,
    allow_download: bool = True,
    image_size: int = 224,
    channels: int = 3,
    centre_crop: float = CENTRE_CROP,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit_train: int = 0,
    limit_val: int = 0,
    need: tuple[str, ...] = ("train", "val", "test"),
) -> Splits:
    """Train, validation and test parts of a dataset (see splits.py for where each comes from)."""
    parts = source_parts(
        name_or_path,
        path=path,
        allow_download=allow_download,
        image_size=image_size,
        channels=channels,
        centre_crop=centre_crop,
    )
    return split_parts(
        parts, val_fraction=val_fraction, seed=seed, limit_train=limit_train, limit_val=limit_val, need=need
    )


def load_dataset(
    name_or_path: str,
    split: str = "train",
    *,
    path: str | Path | None = None,
    allow_download: bool = True,
    image_size: int = 224,
    channels: int = 3,
    centre_crop: float = CENTRE_CROP,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Load one split ("train", "val" or "test") of a named dataset or of a folder of images/IDX/CIFAR files.

    "val" is the dataset's own validation folder, else a stratified hold-out of `val_fraction` of the training
    images chosen by `seed` ("train" is then the rest); "test" is never used for validation.
    """
    if split not in ("train", "val", "test"):
        raise UserError(f"split={split!r} is unknown; use 'train', 'val' or 'test'")
    splits = load_splits(
        name_or_path,
        path=path,
        allow_download=allow_download,
        image_size=image_size,
        channels=channels,
        centre_crop=centre_crop,
        val_fraction=val_fraction,
        seed=seed,
        need=(split,),
    )
    part = splits.part(split)
    if part is None and split == "val":
        raise UserError(
            f"{name_or_path} has no validation part: val_fraction=0 holds nothing out and it has no val/ folder; "
            "set val_fraction (for example 0.1)"
        )
    if part is None:
        raise UserError(
            f"{name_or_path} has no test part: a flat folder of class folders is split into train and val only; "
            "put the test images in a test/ folder beside train/"
        )
    return part


def _load_split(key: str, candidate: Path, split: str, path: str | Path | None, allow_download: bool) -> Dataset:
    """A registered name through its files' reader, else a CIFAR tarball or a folder of IDX files."""
    explicit = Path(path).expanduser() if path else None
    dataset = named(key)
    if dataset is not None:
        return dataset.read(split, explicit, allow_download)
    if candidate.is_file() and tarfile.is_tarfile(candidate):
        cifar = named("cifar100" if "100" in candidate.name else "cifar10")
        return cifar.read(split, candidate, allow_download=False)  # type: ignore[union-attr]
    if candidate.is_dir():
        return load_idx_path(candidate, split)
    raise unknown_data(key)


def check_data_name(name_or_path: str) -> None:
    """Raise the one-sentence error for data that is neither a named dataset nor an existing path, with the
    nearest name or path; nothing for data that may be read."""
    if named(name_or_path) is None and not Path(name_or_path).expanduser().exists():
        raise unknown_data(name_or_path)


def unknown_data(name_or_path: str) -> UserError:
    candidate, key, known = Path(name_or_path).expanduser(), canonical(name_or_path), names()
    return UserError(
        f"dataset {str(candidate) if candidate.parts[:-1] else key!r} is neither a known name"
        f"{did_you_mean(key, known) or near_path(candidate)} nor an existing path; use one of {', '.join(known)} "
        "or a folder of images"
    )


def dataset_info(name: str) -> DatasetInfo | None:
    """Metadata of a named dataset without reading it (None for folders: they are measured when read)."""
    dataset = named(name)
    return dataset.info if dataset else None
