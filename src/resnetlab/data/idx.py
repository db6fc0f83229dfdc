"""The IDX format (the MNIST family): reading a file, and finding, verifying and fetching a named dataset's
four files (train and test images and labels), or reading a folder of IDX files of unknown provenance.

A named dataset's files are looked for in an explicit path, then data_dir()/<name>, then Debian's
/usr/share/datasets/<debian_dir>; in each as name.gz or decompressed, beside or in raw/ (torchvision's layout).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from .dataset import Dataset, DatasetInfo, data_dir
from .download import download, md5sum

if TYPE_CHECKING:
    from .registry import NamedDataset

DEBIAN_DATASETS = Path("/usr/share/datasets")
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzip): magic 0 0 dtype ndim, then ndim big-endian sizes, then data."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise UserError(f"{path} is a damaged gzip file ({err}); delete it and fetch it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number); expected MNIST-style idx data")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(f"{path} is truncated or padded: {len(raw)} bytes, its header promises {expected}")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class IdxFiles:
    """An IDX dataset's files: official addresses and checksums, expected counts, Debian's copy."""

    urls: tuple[str, ...]  # mirrors, tried in order
    files: dict[str, tuple[str, str]]  # role ("train-images", ...) -> (file name, md5 of the official .gz)
    counts: dict[str, int]  # split -> number of images
    content_md5: dict[str, str] = field(default_factory=dict)  # role -> md5 of the decompressed file, if known
    debian_dir: str | None = None  # /usr/share/datasets/<this>, from Debian's dataset-<name> package

    @property
    def fetchable(self) -> bool:
        return bool(self.urls)  # files with no mirror are put in place by hand

    def read(self, dataset: NamedDataset, split: str, path: Path | None, allow_download: bool) -> Dataset:
        return load_idx(dataset, split, path, allow_download)

    def fetch(self, dataset: NamedDataset, target: Path) -> None:
        if not self.fetchable:
            raise UserError(f"{dataset.name} names no address to fetch its files from; put them in {target}")
        fetch_idx(self, target)


def places(dataset: NamedDataset, path: Path | None = None) -> list[Path]:
    """The folders a named IDX dataset's files are looked for in, in order."""
    dirs = [path] if path else []
    dirs.append(data_dir() / dataset.name)
    if dataset.files.debian_dir:
        dirs.append(DEBIAN_DATASETS / dataset.files.debian_dir)
    return dirs


def locate_idx(dataset: NamedDataset, path: Path | None = None) -> dict[str, Path] | None:
    """Where a named IDX dataset's four files are (role -> file, all from the first folder holding every one),
    without reading them; None when no folder has them all."""
    found = _locate(dataset, path, tuple(dataset.files.files))
    return found[1] if found else None


def _locate(dataset: NamedDataset, path: Path | None, roles: tuple[str, ...]) -> tuple[Path, dict] | None:
    for directory in places(dataset, path):
        found = {role: _find_file(directory, dataset.files.files[role][0]) for role in roles}
        if all(found.values()):
            return directory, found
    return None


def _find_file(directory: Path, name: str) -> Path | None:
    """name.gz or the decompressed name, in `directory` or its raw/ subfolder (torchvision's layout)."""
    plain = name[:-3] if name.endswith(".gz") else name
    for sub in (directory, directory / "raw"):
        for candidate in (sub / name, sub / plain):
            if candidate.is_file():
                return candidate
    return None


def load_idx(dataset: NamedDataset, split: str, path: Path | None = None, allow_download: bool = True) -> Dataset:
    """Find (or download) and read one split of a named IDX dataset."""
    files: IdxFiles = dataset.files  # type: ignore[assignment]
    prefix = "train" if split == "train" else "test"
    roles = (f"{prefix}-images", f"{prefix}-labels")
    found = _locate(dataset, path, roles)
    if found:
        return _read_idx_pair(dataset.name, dataset.info, files, split, roles, found[1], str(found[0]))
    tried = [str(directory) for directory in places(dataset, path)]
    if allow_download and files.fetchable:
        target = data_dir() / dataset.name
        try:
            fetch_idx(files, target)
            paths = {role: _find_file(target, files.files[role][0]) for role in roles}
            return _read_idx_pair(dataset.name, dataset.info, files, split, roles, paths, str(target))
        except OSError as err:
            tried.append(f"download from {files.urls[0]} ({err.__class__.__name__}: {err})")
    debian = f", or `apt-get install dataset-{files.debian_dir}`" if files.debian_dir else ""
    fetch = f", or run `resnetlab data fetch {dataset.name}`" if files.fetchable else ""
    raise UserError(
        f"{dataset.name} {split} files not found; tried: {'; '.join(tried)}. Put {files.files[roles[0]][0]} and "
        f"{files.files[roles[1]][0]} in {data_dir() / dataset.name}{debian}{fetch}"
    )


def _verify_idx_file(name: str, files: IdxFiles, role: str, path: Path, array: np.ndarray, split: str) -> None:
    """Accept a local copy whose contents are right: counts always, decompressed checksum where known."""
    expected_n = files.counts.get(split)
    if expected_n is not None and array.shape[0] != expected_n:
        raise UserError(f"{path} holds {array.shape[0]} items; {name} {split} has {expected_n}")
    want = files.content_md5.get(role)
    if want:
        raw = path.read_bytes()
        got = md5sum(data=gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        archive_ok = md5sum(data=raw) == files.files[role][1]
        if got != want and not archive_ok:
            raise UserError(f"checksum mismatch for {path}: contents md5 {got}, expected {want}; fetch it again")


def _read_idx_pair(
    name: str, info: DatasetInfo | None, files: IdxFiles | None, split: str, roles: tuple, paths: dict, where: str
) -> Dataset:
    """Images (N, H, W) and labels (N,) of one split; `files` None for a folder of unknown provenance."""
    image_path, label_path = paths[roles[0]], paths[roles[1]]
    images, labels = read_idx(image_path), read_idx(label_path)
    if files is not None:
        _verify_idx_file(name, files, roles[0], image_path, images, split)
        _verify_idx_file(name, files, roles[1], label_path, labels, split)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{image_path} and {label_path} do not pair up: images {images.shape}, labels {labels.shape}")
    info = info or DatasetInfo(name, (0.5,), (0.5,), (1, *images.shape[1:]), (), hflip=False)
    classes = list(info.classes) or [str(i) for i in range(int(labels.max()) + 1)]
    return Dataset(images[..., None], labels.astype(np.int64), classes, info, split, where)


def fetch_idx(files: IdxFiles, target: Path) -> None:
    """Download every file into `target`, trying each mirror, verifying each checksum."""
    for name, md5 in files.files.values():
        if (target / name).is_file() and md5sum(target / name) == md5:
            continue
        errors = []
        for base in files.urls:
            try:
                download(base + name, target / name, md5)
                break
            except OSError as err:
                errors.append(f"{base}: {err}")
        else:
            raise OSError("; ".join(errors))


def load_idx_path(path: Path, split: str) -> Dataset:
    """An IDX folder of unknown provenance (EMNIST-style): *<split>*-images-idx3* and *-labels-idx1* files."""
    prefix = "train" if split == "train" else ("t10k", "test")
    images = sorted(p for p in path.iterdir() if "images-idx3" in p.name and p.name.startswith(prefix))
    labels = sorted(p for p in path.iterdir() if "labels-idx1" in p.name and p.name.startswith(prefix))
    if not images or not labels:
        images = sorted(p for p in path.iterdir() if "images-idx3" in p.name and split in p.name)
        labels = sorted(p for p in path.iterdir() if "labels-idx1" in p.name and split in p.name)
    if not images or not labels:
        raise UserError(
            f"no {split} IDX image and label files in {path}; expected names like train-images-idx3-ubyte.gz"
        )
    from .registry import named

    known = named(path.name)  # a folder named after an IDX dataset (".../fashion-mnist") takes its figures and classes
    info = known.info if known and known.name == path.name and isinstance(known.files, IdxFiles) else None
    return _read_idx_pair(path.name, info, None, split, ("x", "y"), {"x": images[0], "y": labels[0]}, str(path))
