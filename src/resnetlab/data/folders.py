"""Folders of images: decoded once with Pillow, cached as a uint8 memory-mapped array beside a small index.

Layouts: root/<class>/*.jpg (validation held out of it by val_fraction), or root/train/<class>/... with
root/val/ (or valid/, validation/) and/or root/test/ (see splits.py for how each part is used). Each
image is stored a little larger than the size the network sees, as the ImageNet recipes prepare it: its
shorter side resized to round(image_size / centre_crop) (256 for 224 at the usual 0.875), then
centre-cropped to that square. Evaluation takes the centre image_size square of it (torchvision's and
timm's Resize(256) + CenterCrop(224)); training crops and scales from the whole stored square. Unreadable,
truncated and non-image files are skipped, counted, named in one warning line and listed in skipped.txt
beside the cache; they never stop a run half-way.
A folder may say of itself, in a resnetlab.yaml beside its class folders (or beside train/), that mirroring
changes its labels (`hflip: false`): its training then never flips it, and flip test-time augmentation refuses it.
The cache is keyed by folder, size and channels, and rebuilt when any file's size or mtime changes.
It is safe to build from several processes at once (each writes its own temporary files, and renames them
into place: the array under a name that holds the fingerprint of its contents, then the index that names
it). A damaged cache is detected and rebuilt: the index must parse, and the array must have the size the
index recorded and, up to VERIFY_BYTES, its CRC-32 (larger arrays are checked by size and header only, so
that opening a many-gigabyte cache stays instant). Every image also has a CRC-32 of its own, checked as a run
reads it (rowfile.py): a cache damaged or cut short while a run reads it stops the run with one sentence.
A cache written by an older version of resnetlab is rebuilt once, and the log says so.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageOps
from tqdm import tqdm

from ..errors import UserError, WriteFailed
from ..files import atomic_write
from .dataset import Dataset, DatasetInfo, channel_stats, data_dir
from .rowfile import CacheChanged, CheckedRows

log = logging.getLogger("resnetlab")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
VAL_NAMES = ("val", "valid", "validation")
CACHE_VERSION = 4  # 3: JPEGs decoded in draft mode where the size allows; 4: a CRC-32 per image (rowfile.py)
BUILD_CHUNK = 256  # images decoded at once while building a cache (bounds the memory a build takes)
CENTRE_CROP = 0.875  # the share of the stored square that evaluation keeps (timm's crop_pct; 224 of 256)
VERIFY_BYTES = 1 << 29  # CRC-check arrays up to 512 MiB on every open (about 0.3 s at that size)
_warned: set[str] = set()  # caches whose skipped files were reported in this process


def printable(name: str) -> str:
    """A file name for messages: bytes that are not UTF-8 (kept by Python as surrogates) shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def own_splits(root: Path) -> dict[str, Path | None]:
    """The folders holding each split's class folders: root/train, root/val (valid/, validation/), root/test;
    a flat root/<class>/ layout has only a train part (validation is then held out of it)."""
    if not (root / "train").is_dir():
        return {"train": root, "val": None, "test": None}
    val = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    return {"train": root / "train", "val": val, "test": root / "test" if (root / "test").is_dir() else None}


def scan(class_root: Path, classes: list[str]) -> tuple[list[tuple[str, int, int, int]], list[tuple[str, str]]]:
    """(relative path, label, size, mtime_ns) of every image-named file, and (path, reason) of the others."""
    files, skipped = [], []
    for label, name in enumerate(classes):
        class_dir = class_root / name
        if not class_dir.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue  # .DS_Store and friends
                full = Path(dirpath) / filename
                rel = str(full.relative_to(class_root))
                if full.suffix.lower() not in IMAGE_EXTENSIONS:
                    skipped.append((rel, "not an image file name"))
                    continue
                problem = broken_link(full)
                if problem:
                    skipped.append((rel, problem))
                    continue
                st = full.stat()
                files.append((rel, label, st.st_size, st.st_mtime_ns))
    return files, skipped


def broken_link(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (its target is missing, or it leads round in a loop), else None."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        return "a symbolic link to a missing file"
    except (OSError, RuntimeError):  # ELOOP; Python before 3.13 raises RuntimeError for a loop
        return "a symbolic link that leads round in a loop"
    return None


def to_8bit(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode as 8-bit L or RGB, without saturating: 16-bit grey (I;16, or I holding 0..65535) is
    scaled by 255/65535 (Pillow's convert("L") clips it at 255); transparent palette images go through RGBA."""
    if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255):
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("L" if channels == 1 else "RGB")


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """(size, size, channels) uint8: shorter side to `size`, centre crop; raises OSError/ValueError if bad."""
    with Image.open(path) as img:
        img.draft(img.mode, (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale where that still covers `size`
        img.load()  # decode fully now: a truncated file fails here, not later
        img = to_8bit(ImageOps.exif_transpose(img), channels)  # upright, as the camera meant it
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5))
        array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def read_image(path: Path, size: int, channels: int) -> np.ndarray | str:
    """decode(path, ...), or the reason it cannot be used: unreadable, truncated, a decompression bomb (more
    than twice Pillow's MAX_IMAGE_PIXELS), or too large for memory. Never raises for a bad file."""
    problem = broken_link(path)
    if problem:
        return problem
    try:
        return decode(path, size, channels)
    except Image.DecompressionBombError as err:
        return f"decompression bomb: {err}"
    except MemoryError:
        return "too large to decode in the memory available"
    except Exception as err:  # Pillow's decoders report damaged bytes as many types (OSError, SyntaxError, ...)
        return f"{type(err).__name__}: {err}"


def stored_size(image_size: int, centre_crop: float = CENTRE_CROP) -> int:
    """The side of the square a folder's images are cached at, for a network input of `image_size`."""
    if not 0.25 <= centre_crop <= 1:
        raise UserError(f"centre_crop={centre_crop} must be in [0.25, 1]: 0.875 is the ImageNet way, 1 no border")
    return max(image_size, round(image_size / centre_crop))


def folder_parts(
    root: Path, *, image_size: int = 224, channels: int = 3, centre_crop: float = CENTRE_CROP
) -> dict[str, Callable[[], Dataset] | None]:
    """Loaders of the folder's own parts (train, and val / test where it has those folders): images of
    `image_size` for the network, cached at stored_size(image_size, centre_crop)."""
    root = root.expanduser().resolve()
    if channels not in (1, 3):
        raise UserError(f"channels={channels} is not supported for image folders; use 1 (grayscale) or 3 (RGB)")
    if image_size < 8:
        raise UserError(f"image_size={image_size} is too small; use at least 8 (32 for CIFAR-like, 224 for ImageNet)")
    stored = stored_size(image_size, centre_crop)
    dirs = own_splits(root)
    train_root = dirs["train"]
    assert train_root is not None
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{train_root} has no class folders; expected {train_root}/<class name>/<images>")

    hflip, _ = folder_flips(root)

    def reader(split: str, class_root: Path) -> Callable[[], Dataset]:
        return lambda: _cached(class_root, classes, (image_size, stored), channels, (root.name, hflip), split)

    return {split: reader(split, d) if d is not None else None for split, d in dirs.items()}


DECLARATION = "resnetlab.yaml"  # beside a folder's class folders (or its train/): what it says of itself
DECLARABLE = {"hflip": bool}  # key -> type


def declared(root: Path) -> dict:
    """What a folder says of itself in its resnetlab.yaml ({} when it has none), each key checked."""
    path = Path(root).expanduser() / DECLARATION
    if not path.is_file():
        return {}
    try:
        said = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path} cannot be read as YAML ({type(err).__name__}); write it as `hflip: false`") from None
    if not isinstance(said, dict):
        raise UserError(f"{path} should be a mapping such as `hflip: false`, not {type(said).__name__}")
    for key, value in said.items():
        if key not in DECLARABLE:
            raise UserError(f"{path} declares {key!r}, which is unknown; a folder can declare {', '.join(DECLARABLE)}")
        if not isinstance(value, DECLARABLE[key]):
            raise UserError(f"{path}: {key}: {value!r} should be true or false")
    return said


def folder_flips(root: Path) -> tuple[bool, str]:
    """Whether a folder's training flips its images, and why: the convention (torchvision and timm flip every
    folder), unless the folder declares `hflip: false` in its resnetlab.yaml."""
    said = declared(root)
    if "hflip" in said:
        return said["hflip"], f"declared in {Path(root).expanduser() / DECLARATION}"
    path = Path(root).expanduser() / DECLARATION
    return True, (
        f"an image folder is flipped, as torchvision and timm do; for images that mirroring changes (digits, text), "
        f"write `hflip: false` in {path} or set data.hflip=false"
    )


GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
NATURAL_SIZES = (16, 224)  # a folder's own image size is kept within these bounds (224: the ImageNet convention)


def natural_shape(root: Path, sample: int = 200) -> tuple[int, int, str]:
    """(image size, channels, a line saying why) that a folder's own images suggest: the median short side of
    up to `sample` of its training images (read from their headers, not decoded), within NATURAL_SIZES, and
    1 channel when every sampled image is grey."""
    root = root.expanduser().resolve()
    train_root = own_splits(root)["train"]
    assert train_root is not None
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, _ = scan(train_root, classes)
    sides, modes = [], set()
    for rel, *_ in files[:: max(1, len(files) // sample)][:sample]:
        try:
            with Image.open(train_root / rel) as img:
                sides.append(min(img.size))
                modes.add(img.mode)
        except Exception:  # noqa: BLE001 - an unreadable file is skipped (and reported) when the cache is built
            continue
    if not sides:
        return 224, 3, "no readable image to measure: 224 x 224, RGB"
    median = int(np.median(sides))
    size = min(max(median, NATURAL_SIZES[0]), NATURAL_SIZES[1])
    channels = 1 if modes <= GREY_MODES else 3
    bounded = f", kept within {NATURAL_SIZES[0]}..{NATURAL_SIZES[1]}" if size != median else ""
    return (
        size,
        channels,
        (
            f"image size {size} x {size}, {'grey' if channels == 1 else 'RGB'}: the median short side of {len(sides)} "
            f"sampled images is {median} px{bounded} (set data.image_size / data.channels for another)"
        ),
    )


def _cached(
    class_root: Path, classes: list[str], sizes: tuple[int, int], channels: int, about: tuple[str, bool], split: str
) -> Dataset:
    """The folder's images at sizes = (network input, stored square), from its cache (built if need be); `about`
    is (the name it is shown by, whether flips keep its labels)."""
    image_size, size = sizes
    shown_as, hflip = about
    files, skipped = scan(class_root, classes)
    fingerprint = hashlib.sha1(json.dumps([CACHE_VERSION, classes, files, skipped]).encode()).hexdigest()
    key = hashlib.sha1(f"{class_root}|{size}|{channels}".encode()).hexdigest()[:16]
    cache = data_dir() / "folders" / f"{class_root.name}-{key}"
    opened = _open_cache(cache, fingerprint)
    if opened is None:
        index = _build(class_root, classes, files, skipped, size, channels, cache, fingerprint)
        opened = index, CheckedRows(cache / index["array"], np.load(cache / index["checks"]), cache / "index.json")
    index, checks = opened
    images = checks.mapped()  # the memory map of the very file the checks hold open
    if index["skipped"] and fingerprint not in _warned:  # once per process, however often the folder is read
        _warned.add(fingerprint)
        shown = ", ".join(printable(p) for p, _ in index["skipped"][:5]) + (
            ", ..." if len(index["skipped"]) > 5 else ""
        )
        log.warning(
            "skipped %d of %d files in %s (%s); the list is in %s",
            len(index["skipped"]),
            len(index["skipped"]) + len(index["labels"]),
            class_root,
            shown,
            cache / "skipped.txt",
        )
    labels = np.asarray(index["labels"], np.int64)
    for label, name in enumerate(classes):
        if not (labels == label).any():
            raise UserError(f"class folder {class_root / name} has no readable images; add images or remove it")
    mean, std = tuple(index["mean"]), tuple(index["std"])
    info = DatasetInfo(shown_as, mean, std, (channels, image_size, image_size), tuple(classes), hflip=hflip)
    skipped = [p for p, _ in index["skipped"]]
    return Dataset(
        images, labels, list(classes), info, split, str(class_root), skipped, files=list(index["files"]), checks=checks
    )


def _open_cache(cache: Path, fingerprint: str) -> tuple[dict, CheckedRows] | None:
    """(index, the array opened with its checks) of a sound cache of these files, else None: not built yet,
    built from other files or by an earlier resnetlab, or damaged (then say so: it is rebuilt)."""
    try:
        index = json.loads((cache / "index.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("the cache index %s is damaged; rebuilding it", cache / "index.json")
        return None
    if not isinstance(index, dict):
        return None
    if index.get("version") != CACHE_VERSION and "fingerprint" in index:
        log.warning(
            "the cache %s was written by an earlier resnetlab (cache format %s); rebuilding it once in format %d "
            "(a checksum per image)", cache, index.get("version", "3 or older"), CACHE_VERSION,
        )  # fmt: skip
        return None
    if index.get("fingerprint") != fingerprint or "array" not in index:
        return None  # another version of the folder: rebuild quietly
    path = cache / index["array"]
    problem = _array_problem(path, index)
    if problem is None:
        try:
            checks = np.load(cache / index["checks"])
            opened = CheckedRows(path, checks, cache / "index.json")  # the file the run reads, from here on
            if len(checks) == len(index["labels"]):
                return index, opened
            problem = f"{len(checks)} checksums for {len(index['labels'])} labels"
        except (KeyError, OSError, ValueError, CacheChanged) as err:
            problem = str(err)
    log.warning("the image cache %s is damaged (%s); rebuilding it", path, problem)
    return None


def _array_problem(path: Path, index: dict) -> str | None:
    """Why the array file does not match what the index recorded, or None."""
    try:
        actual = path.stat().st_size
    except OSError:
        return "missing"
    if actual != index["bytes"]:
        return f"{actual:,} bytes, the index recorded {index['bytes']:,}"
    if actual <= VERIFY_BYTES and _crc32(path) != index["crc32"]:
        return "its CRC-32 differs from the one recorded"
    return None


def _cut_rows(path: Path, rows: int) -> None:
    """Keep the first `rows` rows of an .npy file in place: rewrite its header's shape and truncate. (numpy
    pads headers so that the shape can change length in place; if it ever could not, the rows are copied.)"""
    fmt = np.lib.format
    with open(path, "r+b") as f:
        version = fmt.read_magic(f)
        read, write = (
            (fmt.read_array_header_1_0, fmt.write_array_header_1_0)
            if version == (1, 0)
            else (fmt.read_array_header_2_0, fmt.write_array_header_2_0)
        )
        shape, fortran, dtype = read(f)
        offset = f.tell()
        new_shape = (rows, *shape[1:])
        header = io.BytesIO()
        write(header, {"descr": fmt.dtype_to_descr(dtype), "fortran_order": fortran, "shape": new_shape})
        if len(header.getvalue()) == offset:
            f.seek(0)
            f.write(header.getvalue())
            f.truncate(offset + int(np.prod(new_shape)) * dtype.itemsize)
            return
    old = np.load(path, mmap_mode="r")
    copy = path.with_name(path.name + ".cut")
    try:
        packed = np.lib.format.open_memmap(copy, mode="w+", dtype=dtype, shape=new_shape)
        for start in range(0, rows, BUILD_CHUNK):
            packed[start : start + BUILD_CHUNK] = old[start : min(start + BUILD_CHUNK, rows)]
        packed.flush()
        del packed, old
        os.replace(copy, path)
    finally:
        copy.unlink(missing_ok=True)


def _sweep_stale(cache: Path, age_s: float = 3600.0) -> None:
    """Remove temporary files that builders killed mid-way (SIGKILL, a power cut) left behind: those not written
    to for an hour (a live builder writes to its own every few seconds)."""
    now = time.time()
    for stale in cache.glob(".images-*.tmp*"):
        try:
            if now - stale.stat().st_mtime > age_s:
                stale.unlink()
        except OSError:
            pass


@contextlib.contextmanager
def _scratch(cache: Path, array_name: str) -> Iterator[Path]:
    """A temporary file name of this process's own in `cache`, removed afterwards unless renamed into place."""
    fd, name = tempfile.mkstemp(dir=cache, prefix=f".{array_name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def reserve_blocks(path: Path) -> None:
    """Allocate a new file's blocks before it is written through a memory map: on a full disk, a sparse file's
    mapped writes die of SIGBUS with no message, while the allocation fails here with ENOSPC (WriteFailed, which
    names the file; the scratch file is then removed)."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: no such call
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise WriteFailed(path, err) from err
        # EOPNOTSUPP, EINVAL: a file system that cannot allocate ahead; the build goes on as before
    finally:
        os.close(fd)


def npy_bytes(array: np.ndarray) -> bytes:
    """`array` as the bytes of an .npy file (np.save to a path would add ".npy" to a temporary file's name)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


def _build(
    class_root: Path,
    classes: list[str],
    files: list[tuple[str, int, int, int]],
    skipped: list[tuple[str, str]],
    size: int,
    channels: int,
    cache: Path,
    fingerprint: str,
) -> dict:
    if not files:
        raise UserError(f"{class_root} has no image files in its class folders ({', '.join(classes[:5])}...)")
    cache.mkdir(parents=True, exist_ok=True)
    skipped = list(skipped)  # the scan's, then the files that would not decode
    array_name = f"images-{fingerprint[:16]}.npy"  # a name per content: a concurrent builder writes the same bytes
    shape = (size, size, channels)
    _sweep_stale(cache)
    with _scratch(cache, array_name) as scratch:
        # Decoded a chunk at a time straight into the memory-mapped file, so that a folder larger than memory
        # never sits in it; readable images are packed from the front, and the file is cut to them at the end.
        array = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=(len(files), *shape))
        reserve_blocks(scratch)
        good: list[tuple[str, int, int, int]] = []
        crcs: list[int] = []  # of each good image's bytes, as written
        with (
            ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,  # Pillow decodes without the GIL
            tqdm(total=len(files), unit="img", desc=f"caching {class_root.name}", disable=None, leave=False) as bar,
        ):
            for start in range(0, len(files), BUILD_CHUNK):
                chunk = files[start : start + BUILD_CHUNK]
                decoded = pool.map(lambda entry: read_image(class_root / entry[0], size, channels), chunk)
                for entry, result in zip(chunk, decoded):
                    if isinstance(result, str):
                        skipped.append((entry[0], result))
                    else:
                        array[len(good)] = result
                        good.append(entry)
                        crcs.append(zlib.crc32(np.ascontiguousarray(result)))
                bar.update(len(chunk))
        if not good:
            raise UserError(f"none of the {len(files)} image files in {class_root} could be read ({skipped[-1][1]})")
        array.flush()
        del array
        if len(good) < len(files):
            _cut_rows(scratch, len(good))
        mean, std = channel_stats(np.load(scratch, mmap_mode="r"))
        os.replace(scratch, cache / array_name)
    checks_name = f"checks-{fingerprint[:16]}.npy"
    atomic_write(cache / checks_name, lambda tmp: tmp.write_bytes(npy_bytes(np.asarray(crcs, np.uint32))))
    index = {
        "version": CACHE_VERSION,
        "fingerprint": fingerprint,
        "root": str(class_root),
        "classes": classes,
        "files": [entry[0] for entry in good],
        "labels": [entry[1] for entry in good],
        "skipped": skipped,
        "mean": mean,
        "std": std,
        "array": array_name,
        "checks": checks_name,
        "bytes": (cache / array_name).stat().st_size,
        "crc32": _crc32(cache / array_name) if (cache / array_name).stat().st_size <= VERIFY_BYTES else None,
    }
    # File names are whatever bytes the file system allows: written back as those bytes (surrogateescape).
    listing = "".join(f"{p}\t{reason}\n" for p, reason in skipped).encode("utf-8", "surrogateescape")
    atomic_write(cache / "skipped.txt", lambda tmp: tmp.write_bytes(listing))
    atomic_write(cache / "index.json", lambda tmp: tmp.write_text(json.dumps(index)))
    for old in [*cache.glob("images*.npy"), *cache.glob("checks*.npy")]:  # of earlier versions of the folder
        if old.name not in (array_name, checks_name):
            old.unlink(missing_ok=True)  # a process still reading one keeps its memory map (POSIX)
    return index


# ---------------------------------------------------------------------------------------------------
# The caches on disk (`resnetlab data cache`)


@dataclass(frozen=True)
class CacheEntry:
    path: Path  # the cache directory
    root: str | None  # the split folder it was built from (None: no readable index)
    images: int
    shape: tuple[int, ...]  # (H, W, C) of each cached image
    bytes: int  # on disk, every file of the directory


def list_caches(folder: Path | None = None) -> list[CacheEntry]:
    """Every image-folder cache in the data directory, largest first; with `folder`, those built from it
    (or from its train/val/test parts)."""
    base = data_dir() / "folders"
    entries = [_describe(d) for d in sorted(base.iterdir()) if d.is_dir()] if base.is_dir() else []
    if folder is not None:
        wanted = folder.expanduser().resolve()
        entries = [e for e in entries if e.root is not None and wanted in (Path(e.root), *Path(e.root).parents)]
    return sorted(entries, key=lambda e: -e.bytes)


def clear_caches(folder: Path | None = None) -> list[CacheEntry]:
    """Remove the caches `list_caches(folder)` names (a process still reading one keeps its memory map)."""
    removed = list_caches(folder)
    for entry in removed:
        shutil.rmtree(entry.path, ignore_errors=True)
    return removed


def _describe(cache: Path) -> CacheEntry:
    size = sum(f.stat().st_size for f in cache.iterdir() if f.is_file())
    try:
        index = json.loads((cache / "index.json").read_text())
        shape = tuple(np.load(cache / index["array"], mmap_mode="r").shape)
        return CacheEntry(cache, str(index["root"]), shape[0], shape[1:], size)
    except (OSError, ValueError, KeyError, TypeError):
        return CacheEntry(cache, None, 0, (), size)  # being built, or damaged: rebuilt when next read
