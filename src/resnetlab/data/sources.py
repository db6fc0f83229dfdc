"""Where images come from: every reader returns uint8 images (N, H, W, C), int64 labels and class names.

load_dataset("fashion-mnist", "train")     # IDX files: explicit path, data dir, Debian package, download
load_dataset("cifar10", "test")            # the python-pickle tarball or its extracted folder
load_dataset("path/to/folder", "train")    # root/<class>/*.jpg, or root/train|val/<class>/...
load_dataset("synthetic", "train")         # generated patterns for tests, clearly not real data
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError, did_you_mean
from .dataset import Dataset, DatasetInfo, data_dir
from .folders import CENTRE_CROP, folder_parts
from .splits import Splits, split_parts

# ---------------------------------------------------------------------------------------------------
# The data directory and downloads

DEBIAN_DATASETS = Path("/usr/share/datasets")


def md5sum(path: Path | None = None, data: bytes | None = None) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    if data is not None:
        digest.update(data)
    else:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str | None, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` through a temporary file; a checksum mismatch is an error and leaves nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        got = md5sum(Path(tmp))
        if md5 and got != md5:
            raise UserError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the download was discarded")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


# ---------------------------------------------------------------------------------------------------
# IDX (MNIST family)

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
class IdxSpec:
    """An IDX dataset: file names, official address and checksums, expected counts."""

    name: str
    urls: tuple[str, ...]  # mirrors, tried in order
    files: dict[str, tuple[str, str]]  # role -> (file name, md5 of the official .gz)
    counts: dict[str, int]  # split -> number of images
    content_md5: dict[str, str] = field(default_factory=dict)  # role -> md5 of the decompressed file, if known
    debian_dir: str | None = None  # /usr/share/datasets/<this>, from Debian's dataset-<name> package


FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Checksums of the official archives as torchvision lists them; Fashion-MNIST's decompressed checksums are
# those of Debian's recompressed copy (DESIGN.md), which match the official contents.
IDX_SPECS = {
    "mnist": IdxSpec(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        {"train": 60_000, "test": 10_000},
    ),
    "fashion-mnist": IdxSpec(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        {"train": 60_000, "test": 10_000},
        content_md5={
            "train-images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels": "9018921c3c673c538a1fc5bad174d6f9",
            "test-images": "8181f5470baa50b63fa0f6fddb340f0a",
            "test-labels": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        debian_dir="fashion-mnist",
    ),
    "kmnist": IdxSpec(
        "kmnist",
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {
            "train-images": ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
        },
        {"train": 60_000, "test": 10_000},
    ),
}

# Mean and std: MNIST and Fashion-MNIST as commonly quoted (torchvision examples, Xiao et al.), KMNIST
# computed from its training set; CIFAR from the training sets.
INFOS = {
    "mnist": DatasetInfo("mnist", (0.1307,), (0.3081,), (1, 28, 28), tuple("0123456789"), hflip=False),
    "fashion-mnist": DatasetInfo("fashion-mnist", (0.2860,), (0.3530,), (1, 28, 28), FASHION_CLASSES, hflip=True),
    "kmnist": DatasetInfo(
        "kmnist", (0.1918,), (0.3483,), (1, 28, 28), ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), False
    ),
    "cifar10": DatasetInfo("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (3, 32, 32), (), hflip=True),
    "cifar100": DatasetInfo(
        "cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (3, 32, 32), (), hflip=True
    ),
}


def _idx_candidates(spec: IdxSpec, path: Path | None) -> list[Path]:
    dirs = [path] if path else []
    dirs.append(data_dir() / spec.name)
    if spec.debian_dir:
        dirs.append(DEBIAN_DATASETS / spec.debian_dir)
    return dirs


def _find_file(directory: Path, name: str) -> Path | None:
    """name.gz or the decompressed name, in `directory` or its raw/ subfolder (torchvision's layout)."""
    plain = name[:-3] if name.endswith(".gz") else name
    for sub in (directory, directory / "raw"):
        for candidate in (sub / name, sub / plain):
            if candidate.is_file():
                return candidate
    return None


def _verify_idx_file(spec: IdxSpec, role: str, path: Path, array: np.ndarray, split: str) -> None:
    """Accept a local copy whose contents are right: counts always, decompressed checksum where known."""
    expected_n = spec.counts.get(split)
    if expected_n is not None and array.shape[0] != expected_n:
        raise UserError(f"{path} holds {array.shape[0]} items; {spec.name} {split} has {expected_n}")
    want = spec.content_md5.get(role)
    if want:
        raw = path.read_bytes()
        got = md5sum(data=gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        archive_ok = md5sum(data=raw) == spec.files[role][1]
        if got != want and not archive_ok:
            raise UserError(f"checksum mismatch for {path}: contents md5 {got}, expected {want}; fetch it again")


def load_idx(spec: IdxSpec, split: str, path: Path | None = None, allow_download: bool = True) -> Dataset:
    """Find (or download) and read one split of an IDX dataset."""
    prefix = "train" if split == "train" else "test"
    roles = (f"{prefix}-images", f"{prefix}-labels")
    tried = []
    for directory in _idx_candidates(spec, path):
        found = [_find_file(directory, spec.files[r][0]) for r in roles]
        tried.append(str(directory))
        if all(found):
            return _read_idx_pair(spec, split, roles, found, str(directory))  # type: ignore[arg-type]
    if allow_download:
        target = data_dir() / spec.name
        try:
            fetch_idx(spec, target)
            found = [_find_file(target, spec.files[r][0]) for r in roles]
            return _read_idx_pair(spec, split, roles, found, str(target))  # type: ignore[arg-type]
        except OSError as err:
            tried.append(f"download from {spec.urls[0]} ({err.__class__.__name__}: {err})")
    debian = f", or `apt-get install dataset-{spec.debian_dir}`" if spec.debian_dir else ""
    raise UserError(
        f"{spec.name} {split} files not found; tried: {'; '.join(tried)}. Put {spec.files[roles[0]][0]} and "
        f"{spec.files[roles[1]][0]} in {data_dir() / spec.name}{debian}, or run `resnetlab data fetch {spec.name}`"
    )


def _read_idx_pair(spec: IdxSpec, split: str, roles: tuple[str, str], paths: list[Path], where: str) -> Dataset:
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    _verify_idx_file(spec, roles[0], paths[0], images, split)
    _verify_idx_file(spec, roles[1], paths[1], labels, split)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{paths[0]} and {paths[1]} do not pair up: images {images.shape}, labels {labels.shape}")
    info = INFOS.get(spec.name) or DatasetInfo(spec.name, (0.5,), (0.5,), (1, *images.shape[1:]), (), hflip=False)
    classes = list(info.classes) or [str(i) for i in range(int(labels.max()) + 1)]
    return Dataset(images[..., None], labels.astype(np.int64), classes, info, split, where)


def fetch_idx(spec: IdxSpec, target: Path) -> None:
    """Download every file of `spec` into `target`, trying each mirror, verifying each checksum."""
    for name, md5 in spec.files.values():
        if (target / name).is_file() and md5sum(target / name) == md5:
            continue
        errors = []
        for base in spec.urls:
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
    spec = IdxSpec(path.name, (), {"x": (images[0].name, ""), "y": (labels[0].name, "")}, {})
    return _read_idx_pair(spec, split, ("x", "y"), [images[0], labels[0]], str(path))


# ---------------------------------------------------------------------------------------------------
# CIFAR (python pickle batches)


@dataclass(frozen=True)
class CifarSpec:
    name: str
    url: str
    md5: str
    folder: str  # the folder inside the tarball
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes


CIFAR_SPECS = {
    "cifar10": CifarSpec(
        "cifar10",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": CifarSpec(
        "cifar100",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        b"fine_labels",
        b"fine_label_names",
    ),
}


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


def _cifar_reader(path: Path, spec: CifarSpec) -> Callable[[str], bytes] | None:
    """A function name -> bytes over the tarball or the extracted folder found at `path`, or None."""
    if path.is_file() and tarfile.is_tarfile(path):
        tar = tarfile.open(path)

        def read_member(name: str) -> bytes:
            member = tar.extractfile(f"{spec.folder}/{name}")
            if member is None:
                raise UserError(f"{path} has no {spec.folder}/{name}")
            return member.read()

        return read_member
    for folder in (path / spec.folder, path):
        if (folder / spec.meta_file).is_file():
            return lambda name, folder=folder: (folder / name).read_bytes()
    return None


def load_cifar(spec: CifarSpec, split: str, path: Path | None = None, allow_download: bool = True) -> Dataset:
    tarball = Path(spec.url).name
    candidates = [path] if path else []
    candidates += [data_dir() / spec.name / tarball, data_dir() / spec.name, data_dir() / tarball]
    tried = []
    for candidate in candidates:
        tried.append(str(candidate))
        if not candidate.exists():
            continue
        reader = _cifar_reader(candidate, spec)
        if reader:
            data = _read_cifar(spec, split, reader, str(candidate))
            if candidate != path:  # a copy in the data dir must be the real thing; an explicit path is the user's
                _verify_cifar(spec, candidate, data)
            return data
    if allow_download:
        try:
            target = download(spec.url, data_dir() / spec.name / tarball, spec.md5)
            return _read_cifar(spec, split, _cifar_reader(target, spec), str(target))  # type: ignore[arg-type]
        except OSError as err:
            tried.append(f"download from {spec.url} ({err.__class__.__name__}: {err})")
    raise UserError(
        f"{spec.name} not found; tried: {'; '.join(tried)}. Put {tarball} (or its extracted {spec.folder}/) in "
        f"{data_dir() / spec.name}, or run `resnetlab data fetch {spec.name}`"
    )


def _verify_cifar(spec: CifarSpec, where: Path, data: Dataset) -> None:
    """The official tarball's checksum, or else the official counts (a re-packed but complete copy is fine)."""
    if where.is_file() and md5sum(where) == spec.md5:
        return
    expected = CIFAR_COUNTS[data.split]
    if len(data) != expected:
        raise UserError(
            f"checksum mismatch for {where}: not the official archive (md5 {spec.md5}) and {len(data)} {data.split} "
            f"images instead of {expected:,}; delete it and run `resnetlab data fetch {spec.name}`"
        )


CIFAR_COUNTS = {"train": 50_000, "test": 10_000}


def _read_cifar(spec: CifarSpec, split: str, read: Callable[[str], bytes], where: str) -> Dataset:
    images, labels = [], []
    for name in spec.train_files if split == "train" else spec.test_files:
        batch = _unpickle(read(name), f"{where}:{name}")
        pixels, batch_labels = (
            _field(batch, b"data", f"{where}:{name}"),
            _field(batch, spec.label_key, f"{where}:{name}"),
        )
        try:
            # Rows of 3072 bytes: 1024 red, 1024 green, 1024 blue, each 32x32 row-major -> (N, 32, 32, 3).
            rows = np.asarray(pixels, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            batch_labels = np.asarray(batch_labels, np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as err:
            raise UserError(f"{where}:{name} is not a CIFAR batch ({err}); fetch the dataset again") from err
        if len(rows) != len(batch_labels) or (len(batch_labels) and batch_labels.min() < 0):
            raise UserError(f"{where}:{name} is not a CIFAR batch ({len(rows)} images, {len(batch_labels)} labels)")
        images.append(rows)
        labels.append(batch_labels)
    names = _field(_unpickle(read(spec.meta_file), f"{where}:{spec.meta_file}"), spec.names_key, where)
    if not isinstance(names, list) or not names:
        raise UserError(f"{where}:{spec.meta_file} lists no class names; fetch the dataset again")
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    label_array = np.concatenate(labels)
    if len(label_array) and label_array.max() >= len(classes):
        raise UserError(f"{where} has label {label_array.max()} for {len(classes)} classes; fetch the dataset again")
    info = INFOS[spec.name]
    info = DatasetInfo(info.name, info.mean, info.std, info.input_size, tuple(classes), info.hflip)
    return Dataset(np.ascontiguousarray(np.concatenate(images)), label_array, classes, info, split, where)


def _field(batch: object, key: bytes, where: str) -> object:
    if not isinstance(batch, dict) or key not in batch:
        raise UserError(f"{where} is not a CIFAR batch (no {key.decode()!r} entry); fetch the dataset again")
    return batch[key]


# ---------------------------------------------------------------------------------------------------
# Synthetic data (for tests and smoke runs: generated, not real images)


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


# ---------------------------------------------------------------------------------------------------
# One entry point

NAMES = ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "synthetic")
ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}


def canonical(name: str) -> str:
    """A dataset name in its registered spelling ('FMNIST' -> 'fashion-mnist'); other text lower-cased."""
    return ALIASES.get(name.lower(), name.lower())


def same_data(a: str, b: str | None) -> bool:
    """Whether two dataset names or paths mean the same data (aliases, relative and absolute paths)."""
    if not a or not b:
        return False
    if Path(a).expanduser().exists() and Path(b).expanduser().exists():
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return canonical(a) == canonical(b)


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
    candidate = Path(name_or_path).expanduser()
    if key not in NAMES and candidate.is_dir() and not any("idx3" in p.name for p in candidate.iterdir()):
        return folder_parts(candidate, image_size=image_size, channels=channels, centre_crop=centre_crop)

    def reader(split: str) -> Callable[[], Dataset]:
        return lambda: _load_split(key, candidate, split, path, allow_download)

    if key not in NAMES and not candidate.exists():
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
    explicit = Path(path).expanduser() if path else None
    if key == "synthetic":
        return synthetic(split)
    if key in IDX_SPECS:
        return load_idx(IDX_SPECS[key], split, explicit, allow_download)
    if key in CIFAR_SPECS:
        return load_cifar(CIFAR_SPECS[key], split, explicit, allow_download)
    if candidate.is_file() and tarfile.is_tarfile(candidate):
        spec = CIFAR_SPECS["cifar100" if "100" in candidate.name else "cifar10"]
        return load_cifar(spec, split, candidate, allow_download=False)
    if candidate.is_dir():
        return load_idx_path(candidate, split)
    raise UserError(
        f"dataset {str(candidate) if candidate.parts[:-1] else key!r} is neither a known name"
        f"{did_you_mean(key, list(NAMES))} nor an existing path; use one of {', '.join(NAMES)} or a folder of images"
    )


def dataset_info(name: str) -> DatasetInfo | None:
    """Metadata of a named dataset without reading it (None for folders: they are measured when read)."""
    return INFOS.get(canonical(name))
