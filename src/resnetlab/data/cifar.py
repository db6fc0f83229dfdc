"""The CIFAR format: python pickle batches, in the official tarball or its extracted folder, read with an
unpickler that admits numpy arrays and nothing that could run code."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import UserError
from .dataset import Dataset, data_dir
from .download import download, md5sum

if TYPE_CHECKING:
    from .registry import NamedDataset


@dataclass(frozen=True)
class CifarArchive:
    """A CIFAR dataset's tarball: its address and checksum, and what is inside."""

    url: str
    md5: str
    folder: str  # the folder inside the tarball
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    counts: dict[str, int]  # split -> number of images
    fetchable: ClassVar[bool] = True

    def read(self, dataset: NamedDataset, split: str, path: Path | None, allow_download: bool) -> Dataset:
        return load_cifar(dataset, split, path, allow_download)

    def fetch(self, dataset: NamedDataset, target: Path) -> None:
        download(self.url, target / Path(self.url).name, self.md5)


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: allow the numpy array machinery and nothing else that could run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # a damaged or hostile file: say which
        raise UserError(f"{where} is not a readable CIFAR batch ({err}); fetch the dataset again") from err


def _cifar_reader(path: Path, archive: CifarArchive) -> Callable[[str], bytes] | None:
    """A function name -> bytes over the tarball or the extracted folder found at `path`, or None."""
    if path.is_file() and tarfile.is_tarfile(path):
        tar = tarfile.open(path)

        def read_member(name: str) -> bytes:
            member = tar.extractfile(f"{archive.folder}/{name}")
            if member is None:
                raise UserError(f"{path} has no {archive.folder}/{name}")
            return member.read()

        return read_member
    for folder in (path / archive.folder, path):
        if (folder / archive.meta_file).is_file():
            return lambda name, folder=folder: (folder / name).read_bytes()
    return None


def load_cifar(dataset: NamedDataset, split: str, path: Path | None = None, allow_download: bool = True) -> Dataset:
    """Find (or download) and read one split of a CIFAR dataset: an explicit path, then the data directory."""
    archive: CifarArchive = dataset.files  # type: ignore[assignment]
    tarball = Path(archive.url).name
    candidates = [path] if path else []
    candidates += [data_dir() / dataset.name / tarball, data_dir() / dataset.name, data_dir() / tarball]
    tried = []
    for candidate in candidates:
        tried.append(str(candidate))
        if not candidate.exists():
            continue
        reader = _cifar_reader(candidate, archive)
        if reader:
            data = _read_cifar(dataset, split, reader, str(candidate))
            if candidate != path:  # a copy in the data dir must be the real thing; an explicit path is the user's
                _verify_cifar(dataset, candidate, data)
            return data
    if allow_download:
        try:
            archive.fetch(dataset, data_dir() / dataset.name)
            target = data_dir() / dataset.name / tarball
            return _read_cifar(dataset, split, _cifar_reader(target, archive), str(target))  # type: ignore[arg-type]
        except OSError as err:
            tried.append(f"download from {archive.url} ({err.__class__.__name__}: {err})")
    raise UserError(
        f"{dataset.name} not found; tried: {'; '.join(tried)}. Put {tarball} (or its extracted {archive.folder}/) "
        f"in {data_dir() / dataset.name}, or run `resnetlab data fetch {dataset.name}`"
    )


def _verify_cifar(dataset: NamedDataset, where: Path, data: Dataset) -> None:
    """The official tarball's checksum, or else the official counts (a re-packed but complete copy is fine)."""
    archive: CifarArchive = dataset.files  # type: ignore[assignment]
    if where.is_file() and md5sum(where) == archive.md5:
        return
    expected = archive.counts[data.split]
    if len(data) != expected:
        raise UserError(
            f"checksum mismatch for {where}: not the official archive (md5 {archive.md5}) and {len(data)} "
            f"{data.split} images instead of {expected:,}; delete it and run `resnetlab data fetch {dataset.name}`"
        )


def _read_cifar(dataset: NamedDataset, split: str, read: Callable[[str], bytes], where: str) -> Dataset:
    """One split's batches (images (N, 32, 32, 3), labels (N,)) and the class names of the meta file."""
    archive: CifarArchive = dataset.files  # type: ignore[assignment]
    images, labels = [], []
    for name in archive.train_files if split == "train" else archive.test_files:
        rows, batch_labels = _read_batch(read(name), archive.label_key, f"{where}:{name}")
        images.append(rows)
        labels.append(batch_labels)
    names = _field(_unpickle(read(archive.meta_file), f"{where}:{archive.meta_file}"), archive.names_key, where)
    if not isinstance(names, list) or not names:
        raise UserError(f"{where}:{archive.meta_file} lists no class names; fetch the dataset again")
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    label_array = np.concatenate(labels)
    if len(label_array) and label_array.max() >= len(classes):
        raise UserError(f"{where} has label {label_array.max()} for {len(classes)} classes; fetch the dataset again")
    info = replace(dataset.info, classes=tuple(classes))
    return Dataset(np.ascontiguousarray(np.concatenate(images)), label_array, classes, info, split, where)


def _read_batch(data: bytes, label_key: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(data, where)
    pixels, batch_labels = _field(batch, b"data", where), _field(batch, label_key, where)
    try:
        # Rows of 3072 bytes: 1024 red, 1024 green, 1024 blue, each 32x32 row-major -> (N, 32, 32, 3).
        rows = np.asarray(pixels, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        batch_labels = np.asarray(batch_labels, np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise UserError(f"{where} is not a CIFAR batch ({err}); fetch the dataset again") from err
    if len(rows) != len(batch_labels) or (len(batch_labels) and batch_labels.min() < 0):
        raise UserError(f"{where} is not a CIFAR batch ({len(rows)} images, {len(batch_labels)} labels)")
    return rows, batch_labels


def _field(batch: object, key: bytes, where: str) -> object:
    if not isinstance(batch, dict) or key not in batch:
        raise UserError(f"{where} is not a CIFAR batch (no {key.decode()!r} entry); fetch the dataset again")
    return batch[key]
