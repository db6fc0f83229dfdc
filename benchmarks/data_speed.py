"""Augmented images per second: resnetlab's BatchLoader, holding the images or streaming them from a
memory-mapped cache file, against a torchvision-transforms DataLoader.

All do the same work per image (pad 4 + random crop, horizontal flip, to float, normalise) on the same
uint8 images, in one run, on this machine's CPU. The streamed loader reads each batch's rows from an .npy
file mapped into memory (after a warm-up epoch, so from the page cache, as a cache that fits the page cache
is read in training), a background thread reading one batch ahead.
Then a folder of photo-sized JPEGs: the cost of its cache, resnetlab building it (every core, JPEGs decoded
in draft mode where the target is small) against a plain Pillow loop a user would write (open, convert,
resize the short side and centre-crop to the same stored size, into one array); and the photo recipe's
training loader at 128 px (random resized crop of 8-100% of the area, flip, to float, normalise), resnetlab's
from its cache (held, and streamed) against what a user would write instead: torchvision's ImageFolder with
transforms.v2 (RandomResizedCrop, RandomHorizontalFlip, ToImage, ToDtype, Normalize) in a DataLoader with
worker processes and pinned memory; beside them, the images per second a ResNet-18 trains at 128 px here
(fp32), which the loader must outpace.
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

    print("\nchecks on a streamed cache (the file's stat before and after each batch; each image's CRC-32 on its "
          "first read),\nagainst the same loader reading the memory map unchecked (img/s, median of 5 interleaved "
          "rounds)")  # fmt: skip
    print(f"{'input':<12} {'unchecked':>10} {'first epoch':>12} {'later epochs':>13} {'cost first':>11} "
          f"{'cost later':>11}")  # fmt: skip
    for size, channels in ((28, 1), (32, 3), (146, 3)):
        count = args.images if size < 64 else args.photos
        check_cost(synthetic("train", n=count, size=size, channels=channels), args.batch_size)

    with tempfile.TemporaryDirectory() as tmp:
        folder = photo_folder(Path(tmp) / "photos", args.photos)
        build_speed(folder, Path(tmp), args.photos)
        photo_loader_speed(folder, Path(tmp), args)


def check_cost(data, batch_size: int, rounds: int = 5) -> None:
    """Streamed images per second with a folder cache's checks (rowfile.py) against the same rows unchecked: the
    first epoch (every image's CRC-32 computed once) and later ones (the file's stat only), medians of interleaved
    rounds."""
    import zlib

    from resnetlab.data.rowfile import CheckedRows

    augment = AugmentConfig(crop_padding=4, hflip=True)
    with tempfile.TemporaryDirectory() as tmp:
        array = Path(tmp) / "images.npy"
        np.save(array, data.images)
        crcs = np.array([zlib.crc32(row) for row in data.images.reshape(len(data), -1)], np.uint32)
        unchecked = replace(data, images=np.load(array, mmap_mode="r"))

        def loader(checked: bool) -> BatchLoader:
            checks = CheckedRows(array, crcs, Path(tmp) / "index.json") if checked else None
            return BatchLoader(
                replace(unchecked, checks=checks), batch_size, train=True, augment=augment, stream="true"
            )

        rate(loader(False).epoch(0), len(data))  # warm-up: the file in the page cache
        plain, first, later = [], [], []
        for _ in range(rounds):  # interleaved, so that a slow moment of a shared machine hits every arm alike
            unchecked_loader, checked_loader = loader(False), loader(True)
            plain.append(rate(unchecked_loader.epoch(1), len(data)))
            first.append(rate(checked_loader.epoch(1), len(data)))  # every image's CRC-32, once
            plain.append(rate(unchecked_loader.epoch(2), len(data)))
            later.append(rate(checked_loader.epoch(2), len(data)))  # the file's stat only
    best = float(np.median(plain)), float(np.median(first)), float(np.median(later))
    label = "x".join(str(v) for v in data.images.shape[1:])
    print(f"{label:<12} {best[0]:>10,.0f} {best[1]:>12,.0f} {best[2]:>13,.0f} "
          f"{1 - best[1] / best[0]:>10.1%} {1 - best[2] / best[0]:>10.1%}")  # fmt: skip


def photo_folder(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        (folder / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)  # smooth, photo-like content
        Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC).save(folder / f"c{i % 4}" / f"{i}.jpg",
                                                                                 quality=90)  # fmt: skip
    return folder


def build_speed(folder: Path, tmp: Path, count: int) -> None:
    """Images per second of building a folder's cache, resnetlab against a plain Pillow loop."""
    import os

    from PIL import ImageOps

    from resnetlab.data import load_dataset
    from resnetlab.data.folders import stored_size

    print(f"\ncache build: {count} JPEGs of 500x375 (quality 90), {os.cpu_count()} cores")
    print(f"{'input (stored)':<15} {'resnetlab img/s':>16} {'Pillow loop img/s':>18} {'ratio':>6}")
    files = sorted(folder.rglob("*.jpg"))
    for size in (64, 224):
        stored = stored_size(size)
        os.environ["RESNETLAB_DATA"] = str(tmp / f"cache{size}")
        start = time.perf_counter()
        load_dataset(str(folder), "train", image_size=size, val_fraction=0.0)
        ours = count / (time.perf_counter() - start)
        start = time.perf_counter()
        out = np.empty((count, stored, stored, 3), np.uint8)
        for i, path in enumerate(files):
            with Image.open(path) as img:
                fitted = ImageOps.fit(img.convert("RGB"), (stored, stored), Image.Resampling.BILINEAR)
                out[i] = np.asarray(fitted)
        plain = count / (time.perf_counter() - start)
        print(f"{f'{size} ({stored})':<15} {ours:>16,.0f} {plain:>18,.0f} {ours / plain:>5.1f}x")


def photo_loader_speed(folder: Path, tmp: Path, args: argparse.Namespace, size: int = 128) -> None:
    """The photo recipe's training loader at `size` px: resnetlab from its cache against ImageFolder + v2."""
    import os

    import torchvision
    from torchvision.transforms import v2

    from resnetlab.data import load_dataset

    os.environ["RESNETLAB_DATA"] = str(tmp / "cache-loader")
    data = load_dataset(str(folder), "train", image_size=size, val_fraction=0.0)  # built here, not timed
    augment = AugmentConfig(hflip=True, crop_scale=(0.08, 1.0))
    rates = {}
    for stream in ("false", "true"):
        ours = BatchLoader(data, args.batch_size, train=True, augment=augment, stream=stream)
        rate(ours.epoch(0), len(data))  # warm-up
        rates[stream] = max(rate(ours.epoch(e), len(data)) for e in (1, 2))
    transform = v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data.info.mean, data.info.std),
    ])  # fmt: skip
    peer = torch.utils.data.DataLoader(
        torchvision.datasets.ImageFolder(str(folder), transform=transform),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=torch.cuda.is_available(),  # pinned where there is a GPU to copy to
        persistent_workers=args.workers > 0,
    )
    rate(peer, len(data))  # warm-up (starts the workers)
    peer_rate = max(rate(peer, len(data)) for _ in range(2))
    model = torchvision.models.resnet18(num_classes=4)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(64, 3, size, size), torch.randint(0, 4, (64,))
    steps = []
    for _ in range(4):  # the first is a warm-up
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        steps.append(len(x) / (time.perf_counter() - start))
    train_rate = max(steps[1:])
    print(f"\nphoto training loader at {size} px (random resized crop + flip), {len(data)} photos, "
          f"peer: ImageFolder + transforms.v2, {args.workers} workers")  # fmt: skip
    print(f"{'resnetlab held':<20} {rates['false']:>8,.0f} img/s  {rates['false'] / peer_rate:>5.1f}x the peer")
    print(f"{'resnetlab streamed':<20} {rates['true']:>8,.0f} img/s  {rates['true'] / peer_rate:>5.1f}x the peer")
    print(f"{'ImageFolder + v2':<20} {peer_rate:>8,.0f} img/s")
    print(f"{'ResNet-18 trains':<20} {train_rate:>8,.0f} img/s  (fp32, batch 64): the streamed loader is "
          f"{rates['true'] / train_rate:,.0f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
