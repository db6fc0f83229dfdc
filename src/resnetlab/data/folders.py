"""Folders of images: decoded once with Pillow, cached as a uint8 memory-mapped array beside a small index.

Layouts: root/<class>/*.jpg (validation held out of it by val_fraction), or root/train/<class>/... with
root/val/ (or valid/, validation/) and/or root/test/ (see splits.py for how each part is used). Each
image is resized so that its shorter side is `image_size`, then centre-cropped to a square. Unreadable,
truncated and non-image files are skipped, counted, named in one warning line and listed in skipped.txt
beside the cache; they never stop a run half-way.
The cache is keyed by folder, size and channels, and rebuilt when any file's size or mtime changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import UserError
from .dataset import Dataset, DatasetInfo, data_dir

log = logging.getLogger("resnetlab")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
VAL_NAMES = ("val", "valid", "validation")
CACHE_VERSION = 1


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
                st = full.stat()
                files.append((rel, label, st.st_size, st.st_mtime_ns))
    return files, skipped


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
        img.load()  # decode fully now: a truncated file fails here, not later
        img = to_8bit(ImageOps.exif_transpose(img), channels)  # upright, as the camera meant it
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5))
        array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def folder_parts(root: Path, *, image_size: int = 224, channels: int = 3) -> dict[str, Callable[[], Dataset] | None]:
    """Loaders of the folder's own parts (train, and val / test where it has those folders)."""
    root = root.expanduser().resolve()
    if channels not in (1, 3):
        raise UserError(f"channels={channels} is not supported for image folders; use 1 (grayscale) or 3 (RGB)")
    if image_size < 8:
        raise UserError(f"image_size={image_size} is too small; use at least 8 (32 for CIFAR-like, 224 for ImageNet)")
    dirs = own_splits(root)
    train_root = dirs["train"]
    assert train_root is not None
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{train_root} has no class folders; expected {train_root}/<class name>/<images>")

    def reader(split: str, class_root: Path) -> Callable[[], Dataset]:
        return lambda: _cached(class_root, classes, image_size, channels, root.name, split)

    return {split: reader(split, d) if d is not None else None for split, d in dirs.items()}


def _cached(class_root: Path, classes: list[str], size: int, channels: int, shown_as: str, split: str) -> Dataset:
    files, skipped = scan(class_root, classes)
    fingerprint = hashlib.sha1(json.dumps([CACHE_VERSION, classes, files, skipped]).encode()).hexdigest()
    key = hashlib.sha1(f"{class_root}|{size}|{channels}".encode()).hexdigest()[:16]
    cache = data_dir() / "folders" / f"{class_root.name}-{key}"
    index_path, array_path = cache / "index.json", cache / "images.npy"
    index = _read_index(index_path)
    if index is None or index.get("fingerprint") != fingerprint or not array_path.is_file():
        index = _build(class_root, classes, files, skipped, size, channels, cache, fingerprint)
    images = np.load(array_path, mmap_mode="r")
    if len(index["skipped"]):
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
    info = DatasetInfo(shown_as, mean, std, (channels, size, size), tuple(classes), hflip=True)
    skipped = [p for p, _ in index["skipped"]]
    return Dataset(images, labels, list(classes), info, split, str(class_root), skipped, files=list(index["files"]))


def _read_index(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # no cache yet, or a damaged one: rebuild


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

    def work(entry: tuple[str, int, int, int]) -> np.ndarray | str:
        try:
            return decode(class_root / entry[0], size, channels)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # Pillow decodes without the GIL
        results = list(pool.map(work, files))
    good = [(entry, r) for entry, r in zip(files, results) if not isinstance(r, str)]
    skipped = skipped + [(entry[0], r) for entry, r in zip(files, results) if isinstance(r, str)]
    tmp = cache / "images.npy.tmp"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(good), size, size, channels))
    for i, (_, img) in enumerate(good):
        array[i] = img
    array.flush()
    sample = np.asarray(array[:: max(1, len(good) // 5000)], np.float32) / 255.0  # mean/std from <= ~5k images
    mean = sample.mean((0, 1, 2)).tolist() if len(good) else [0.5] * channels
    std = sample.std((0, 1, 2)).tolist() if len(good) else [0.25] * channels
    del array
    os.replace(tmp, cache / "images.npy")
    index = {
        "fingerprint": fingerprint,
        "root": str(class_root),
        "classes": classes,
        "files": [entry[0] for entry, _ in good],
        "labels": [entry[1] for entry, _ in good],
        "skipped": skipped,
        "mean": mean,
        "std": std,
    }
    # File names are whatever bytes the file system allows: written back as those bytes (surrogateescape).
    listing = "".join(f"{p}\t{reason}\n" for p, reason in skipped)
    (cache / "skipped.txt").write_text(listing, encoding="utf-8", errors="surrogateescape")
    tmp_index = cache / "index.json.tmp"
    tmp_index.write_text(json.dumps(index))
    os.replace(tmp_index, cache / "index.json")
    return index
