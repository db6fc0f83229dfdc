"""Augmented images per second: resnetlab's BatchLoader, holding the images or streaming them from a
memory-mapped cache file, against a torchvision-transforms DataLoader.

All do the same work per image (pad 4 + random crop, horizontal flip, to float, normalise) on the same
uint8 images, in one run, on this machine's CPU. The streamed loader reads each batch's rows from an .npy
file mapped into memory (after a warm-up epoch, so from the page cache, as a cache that fits the page cache
is read in training), a background thread reading one batch ahead.
Then the cost of a folder's cache: resnetlab building it (every core, JPEGs decoded in draft mode where the
target is small) against a plain Pillow loop a user would write (open, convert, resize the short side and
centre-crop, into one array), on the same photo-sized JPEGs.
Run: .venv/bin/python benchmarks/data_speed.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from resnetlab.data import AugmentConfig, BatchLoader
from resnetlab.data.sources import synthetic


class PILDataset(torch.utils.data.Dataset):
    """The usual peer: one PIL image at a time through torchvision transforms, in worker processes."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(pil), int(self.labels[i])


def rate(batches, n_images: int) -> float:
    start = time.perf_counter()
    seen = 0
    for x, _ in batches:
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--photos", type=int, default=2000, help="JPEGs for the cache-build comparison")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {args.images} images, batch {args.batch_size}, peer with {args.workers} workers")
    print(f"{'input':<10} {'held img/s':>11} {'streamed img/s':>15} {'torchvision img/s':>18} {'held/peer':>10} "
          f"{'streamed/peer':>14}")  # fmt: skip
    for size, channels in ((32, 3), (28, 1)):
        data = synthetic("train", n=args.images, size=size, channels=channels)
        augment = AugmentConfig(crop_padding=4, hflip=True)
        ours_rate, streamed_rate = 0.0, 0.0
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "images.npy", data.images)
            mapped = replace(data, images=np.load(Path(tmp) / "images.npy", mmap_mode="r"))
            for stream, source in (("false", data), ("true", mapped)):
                ours = BatchLoader(source, args.batch_size, train=True, augment=augment, stream=stream)
                rate(ours.epoch(0), len(data))  # warm-up
                best = max(rate(ours.epoch(e), len(data)) for e in (1, 2))
                ours_rate, streamed_rate = (best, streamed_rate) if stream == "false" else (ours_rate, best)
        transform = T.Compose(
            [
                T.RandomCrop(size, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(data.info.mean, data.info.std),
            ]
        )
        peer = torch.utils.data.DataLoader(
            PILDataset(data.images, data.labels, transform),
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )
        rate(peer, len(data))  # warm-up (starts the workers)
        peer_rate = max(rate(peer, len(data)) for _ in range(2))
        label = f"{size}x{size}x{channels}"
        print(
            f"{label:<10} {ours_rate:>11,.0f} {streamed_rate:>15,.0f} {peer_rate:>18,.0f} "
            f"{ours_rate / peer_rate:>9.1f}x {streamed_rate / peer_rate:>13.1f}x"
        )

    build_speed(args.photos)


def build_speed(count: int) -> None:
    """Images per second of building a folder's cache, resnetlab against a plain Pillow loop."""
    import os

    from PIL import ImageOps

    from resnetlab.data import load_dataset

    rng = np.random.default_rng(0)
    print(f"\ncache build: {count} JPEGs of 500x375 (quality 90), {os.cpu_count()} cores")
    print(f"{'target':<8} {'resnetlab img/s':>16} {'Pillow loop img/s':>18} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        for i in range(count):
            (folder / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)  # smooth, photo-like content
            Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC).save(folder / f"c{i % 4}" / f"{i}.jpg",
                                                                                     quality=90)  # fmt: skip
        files = sorted(folder.rglob("*.jpg"))
        for size in (64, 224):
            os.environ["RESNETLAB_DATA"] = str(Path(tmp) / f"cache{size}")
            start = time.perf_counter()
            load_dataset(str(folder), "train", image_size=size, val_fraction=0.0)
            ours = count / (time.perf_counter() - start)
            start = time.perf_counter()
            out = np.empty((count, size, size, 3), np.uint8)
            for i, path in enumerate(files):
                with Image.open(path) as img:
                    fitted = ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
                    out[i] = np.asarray(fitted)
            plain = count / (time.perf_counter() - start)
            print(f"{size:<8} {ours:>16,.0f} {plain:>18,.0f} {ours / plain:>5.1f}x")


if __name__ == "__main__":
    main()
