"""Streaming from the memory-mapped cache: the same batches as holding the images whole, parts of a cache
that read nothing until asked, the choice by size, and the background reader's life cycle."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab.data.stream as stream
from image_folders import colour_folder
from resnetlab.data import AugmentConfig, BatchLoader, Dataset, DatasetInfo, load_dataset
from resnetlab.data.dataset import Rows, channel_stats
from resnetlab.data.stream import ahead, residency
from resnetlab.training import load_config
from resnetlab.training.loop import fit


def mapped_dataset(tmp_path, n: int = 100, size: int = 12) -> Dataset:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    info = DatasetInfo("mapped", (0.5,) * 3, (0.25,) * 3, (3, size, size), tuple("abcd"), True)
    return Dataset(images, rng.integers(0, 4, n), list("abcd"), info, "train", "test")


AUGMENT = AugmentConfig(
    crop_padding=2, hflip=True, cutout=4, mixup=0.4, cutmix=1.0, brightness=0.3, hue=0.1, grey=0.2, erase=0.5
)


PHOTO = AugmentConfig(
    crop_scale=(0.3, 1.0), hflip=True, saturation=0.4, rotate=20, shear=10, zoom=0.2, translate=0.1,
    policy="randaugment",
)  # fmt: skip


@pytest.mark.parametrize("augment", [AUGMENT, PHOTO])
@pytest.mark.parametrize("world", [1, 2])
def test_streamed_batches_are_the_held_batches_bit_for_bit(tmp_path, world, augment):
    data = mapped_dataset(tmp_path).subset(np.arange(3, 97), "train", "a part")  # rows of the map, not a copy
    assert isinstance(data.images, Rows)
    for train in (True, False):
        for rank in range(world):
            kw = dict(train=train, augment=augment, seed=3, rank=rank, world_size=world)
            held = BatchLoader(data, 16, stream="false", **kw)
            streamed = BatchLoader(data, 16, stream="true", **kw)
            # channels_last: the same numbers in that layout
            held_cl = BatchLoader(data, 16, stream="false", channels_last=True, **kw)
            streamed_cl = BatchLoader(data, 16, stream="true", channels_last=True, **kw)
            assert held.residency.held and not streamed.residency.held
            for epoch, start in ((0, 0), (1, 2)):  # and from a batch in the middle, as a resumed run starts
                loaders = (held, streamed, held_cl, streamed_cl)
                for (xa, ya), *others in zip(*(loader.epoch(epoch, start) for loader in loaders), strict=True):
                    for i, (xb, yb) in enumerate(others):
                        assert torch.equal(xa, xb) and torch.equal(ya, yb)
                        assert i == 0 or xb.is_contiguous(memory_format=torch.channels_last)


def test_a_part_of_a_memory_map_reads_nothing_until_asked(tmp_path):
    whole = mapped_dataset(tmp_path)
    part = whole.subset(np.array([5, 7, 9, 11]), "val", "some")
    inner = part.subset(np.array([1, 3]), "val", "fewer")  # a part of a part: positions compose
    assert isinstance(inner.images, Rows) and inner.images.base is whole.images
    assert inner.images.shape == (2, 12, 12, 3) and inner.images.nbytes == 2 * 12 * 12 * 3
    assert np.array_equal(np.asarray(inner.images), whole.images[[7, 11]])
    assert np.array_equal(inner.images[1], whole.images[11]) and list(inner.positions()) == [7, 11]
    picked = np.asarray(whole.images)[[7, 11]]
    for key in [(Ellipsis, 0), (0, 0), (slice(0, 2), 1), (np.array([1, 0]), slice(None), 2), slice(1, 2), (), (None,)]:
        assert np.array_equal(inner.images[key], picked[key]), key  # indexes like the array it stands for
    in_memory = Dataset(np.asarray(whole.images), whole.labels, whole.classes, whole.info, "train", "x")
    assert isinstance(in_memory.subset(np.array([1, 2]), "val", "x").images, np.ndarray)  # already read: copied


def test_auto_holds_what_fits_and_streams_what_does_not(tmp_path, monkeypatch):
    images = mapped_dataset(tmp_path).images  # 43 kB
    cpu = torch.device("cpu")
    monkeypatch.setattr(stream, "memory_available", lambda: 10**9)
    assert residency(images, cpu).held
    monkeypatch.setattr(stream, "memory_available", lambda: 100_000)  # a quarter is 25 kB: too little
    choice = residency(images, cpu)
    assert not choice.held and "streamed from the cache" in choice.reason and "memory available" in choice.reason
    assert residency(np.asarray(images), cpu).reason.endswith("in memory")  # read whole already: held
    assert not residency(images, cpu, "true").held and residency(images, cpu, "false").held


def test_the_background_reader_keeps_order_raises_and_stops_with_its_consumer():
    assert list(ahead(lambda i: i * i, range(7))) == [i * i for i in range(7)]

    def fails(i: int) -> int:
        if i == 3:
            raise OSError("disk gone")
        return i

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for value in ahead(fails, range(10)):
            got.append(value)
    assert got == [0, 1, 2]
    before = threading.active_count()
    reader = ahead(lambda i: i, range(1000))
    assert next(reader) == 0
    reader.close()  # a stopped run: the thread ends instead of filling its queue forever
    assert threading.active_count() == before


def test_a_folder_trains_to_the_same_weights_streamed_or_held(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    colour_folder(tmp_path / "photos", per_class=20, size=20, noise=40)
    settings = ["model=resnet8", f"data={tmp_path / 'photos'}", "data.image_size=16", "epochs=2", "batch_size=8",
                "data.cutout=4", "quiet=true", "output.tensorboard=false", f"out={tmp_path}"]  # fmt: skip
    held = fit(load_config(None, [*settings, "stream=false", "name=held"]))
    streamed = fit(load_config(None, [*settings, "stream=true", "name=streamed"]))
    a, b = held.run_dir / "last.safetensors", streamed.run_dir / "last.safetensors"
    assert a.read_bytes() == b.read_bytes()
    assert held.summary["val_top1"] == streamed.summary["val_top1"]
    assert isinstance(load_dataset(str(tmp_path / "photos"), "train", image_size=16).images, Rows)


def test_channel_statistics_are_computed_a_chunk_at_a_time_and_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, (300, 9, 7, 3), dtype=np.uint8)
    mean, std = channel_stats(images, limit=10**6, chunk=7)
    pixels = images.astype(np.float64) / 255.0
    assert np.allclose(mean, pixels.mean((0, 1, 2))) and np.allclose(std, pixels.std((0, 1, 2)))
    every_third = channel_stats(images, limit=100)[0]  # at most `limit` images: every 3rd here
    assert np.allclose(every_third, pixels[::3].mean((0, 1, 2)))


def test_data_cache_lists_a_folders_caches_with_size_and_source_and_clears_them(tmp_path, monkeypatch, capsys):
    from resnetlab.cli import main

    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    for name in ("cats", "dogs"):
        for c in ("a", "b"):
            (tmp_path / name / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (10, 10), (i * 50, 0, 0)).save(tmp_path / name / c / f"{i}.png")
        load_dataset(str(tmp_path / name), "train", image_size=8, val_fraction=0.0)
    capsys.readouterr()
    assert main(["data", "cache"]) == 0
    listed = capsys.readouterr().out
    assert "6 images of 9x9x3" in listed  # stored at 8 / 0.875
    assert str(tmp_path / "cats") in listed and "in all: 2 cache(s)" in listed
    assert main(["data", "cache", str(tmp_path / "dogs"), "--clear"]) == 0
    assert "removed: 1 cache(s)" in capsys.readouterr().out
    assert main(["data", "cache"]) == 0
    left = capsys.readouterr().out
    assert str(tmp_path / "cats") in left and str(tmp_path / "dogs") not in left
    assert main(["data", "cache", str(tmp_path / "nowhere")]) == 2


def small_folder(root, size: tuple[int, int], mode: str, per_class: int = 4):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new(mode, size, 40 * i if mode == "L" else (40 * i, 90, 10)).save(root / c / f"{mode}{i}.png")
    return root


def test_a_folder_keeps_its_own_image_size_and_grey_stays_grey(tmp_path):
    from resnetlab.data.folders import natural_shape

    assert natural_shape(small_folder(tmp_path / "digits", (28, 28), "L"))[:2] == (28, 1)
    assert natural_shape(small_folder(tmp_path / "wide", (40, 30), "RGB"))[:2] == (30, 3)
    size, channels, line = natural_shape(small_folder(tmp_path / "photos", (640, 480), "RGB"))
    assert (size, channels) == (224, 3) and "480 px, kept within 16..224" in line
    assert natural_shape(small_folder(tmp_path / "digits", (28, 28), "RGB"))[1] == 3  # one colour image: RGB


def test_training_on_a_grey_folder_records_the_size_it_chose_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    folder = small_folder(tmp_path / "digits", (20, 20), "L", per_class=10)
    result = fit(load_config(None, ["model=resnet8", f"data={folder}", "epochs=1", "batch_size=4",
                                    "output.tensorboard=false", f"out={tmp_path}"]))  # fmt: skip
    said = capsys.readouterr().out
    assert said.count("image size 20 x 20, grey: the median short side of 20 sampled images is 20 px") == 1
    recorded = load_config(str(result.run_dir / "config.yaml"), [])
    assert (recorded.data.image_size, recorded.data.channels) == (20, 1)
    assert "images of 23x23x1 (cropped to 20x20)" in said  # the run's header: cached at 20 / 0.875, as trained on


RSS_SCRIPT = """
import json, sys, threading, time
peak = [0]

def watch():  # the process's anonymous memory: what it holds itself, not the page cache behind the memory map
    while True:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        time.sleep(0.02)

threading.Thread(target=watch, daemon=True).start()
from resnetlab.data import AugmentConfig, BatchLoader, load_dataset
from resnetlab.training import load_config
from resnetlab.training.loop import fit

folder, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
fit(load_config(None, ["model=resnet8", f"data={folder}", f"data.image_size={size}", "stream=true", "iterations=6",
                       "batch_size=4", "limit_val=8", "quiet=true", "output.tensorboard=false", f"out={out}"]))
data = load_dataset(folder, "train", image_size=size, val_fraction=0.0)
loader = BatchLoader(data, 40, train=True, augment=AugmentConfig(crop_padding=8, hflip=True), stream="true")
time.sleep(0.1)
training, peak[0] = peak[0], 0
seen = sum(len(y) for _, y in loader.epoch(0))  # every image of the cache, read once
time.sleep(0.1)
print(json.dumps({"training": training, "reading": peak[0], "seen": seen, "cache": data.images.nbytes}))
"""


@pytest.mark.slow
def test_building_training_on_and_reading_a_3_gb_cache_keeps_the_process_own_memory_under_half_of_it(tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys

    folder, size, count = tmp_path / "big", 320, 10_000  # 10,000 x 320 x 320 x 3 bytes: a 3.07 GB cache
    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / f"c{i % 4}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((64, 64), Image.Resampling.BILINEAR).save(path, quality=90)
    env = {**os.environ, "RESNETLAB_DATA": str(tmp_path / "cache")}
    try:
        done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(folder), str(tmp_path / "runs"), str(size)],
                              capture_output=True, text=True, env=env, timeout=1800)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["seen"] == count and report["cache"] >= 3_000_000_000
        # Built, trained on and read whole, a 3.07 GB cache: the process itself (torch, the model, a few
        # batches of 320 x 320 images) peaked at 0.98 GB training and 1.24 GB reading here (AMD EPYC, torch 2.14).
        assert max(report["training"], report["reading"]) < report["cache"] / 2, report
    finally:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_a_cache_cleared_or_rebuilt_while_streamed_is_read_on_as_it_was(tmp_path, monkeypatch):
    """Clearing the caches (or a rebuild by another process) unlinks the array a run streams from; the run keeps
    the file open and reads it on, the same batches, without calling it changed (its change time moves with the
    unlink, its bytes do not)."""
    from resnetlab.data.folders import clear_caches

    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    root = colour_folder(tmp_path / "pics", per_class=20, size=16, noise=20)
    data = load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    loader = BatchLoader(data, 16, train=True, stream="true", augment=AUGMENT, seed=1)
    before = [x for x, _ in loader.epoch(0)]
    assert clear_caches(root)
    after = [x for x, _ in loader.epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
