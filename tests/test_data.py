"""Data: real formats written small and read back, failures that are clear, and a deterministic loader."""

import gzip
import io
import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data import AugmentConfig, BatchLoader, load_dataset
from resnetlab.data.download import download, md5sum
from resnetlab.data.generated import synthetic
from resnetlab.data.idx import IdxFiles, fetch_idx, read_idx
from resnetlab.data.registry import NamedDataset
from resnetlab.errors import UserError


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "datadir"))


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train=6, n_test=4, gz=True) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_train, 5, 4), dtype=np.uint8)
    labels = np.arange(n_train, dtype=np.uint8) % 3
    for name, arr in (
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", labels),
        ("t10k-images-idx3-ubyte", images[:n_test]),
        ("t10k-labels-idx1-ubyte", labels[:n_test]),
    ):
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_read_back_plain_and_gzipped(tmp_path, gz):
    images, labels = write_idx_set(tmp_path / "emnist-like", gz=gz)
    data = load_dataset(str(tmp_path / "emnist-like"), "train", val_fraction=0.0)
    assert data.images.shape == (6, 5, 4, 1) and data.images.dtype == np.uint8
    assert np.array_equal(data.images[..., 0], images) and np.array_equal(data.labels, labels)
    assert data.labels.dtype == np.int64
    assert len(load_dataset(str(tmp_path / "emnist-like"), "test")) == 4


def test_truncated_idx_is_a_clear_error(tmp_path):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 4, 4)))[:-5])
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"hello world")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(path)


def idx_dataset(name: str, files: IdxFiles) -> NamedDataset:
    return NamedDataset(
        name=name, about="a test's", classes=(), mean=(0.5,), std=(0.5,), input_size=(1, 5, 4), hflip=False, files=files
    )


def _mirror_spec(mirror: Path, md5s: dict | None = None) -> NamedDataset:
    files = {
        "train-images": "train-images-idx3-ubyte.gz",
        "train-labels": "train-labels-idx1-ubyte.gz",
        "test-images": "t10k-images-idx3-ubyte.gz",
        "test-labels": "t10k-labels-idx1-ubyte.gz",
    }
    md5s = md5s or {role: md5sum(mirror / name) for role, name in files.items()}
    return idx_dataset(
        "tinyset", IdxFiles((mirror.as_uri() + "/",), {r: (n, md5s[r]) for r, n in files.items()}, {"train": 6})
    )


def test_download_verifies_checksums_and_fills_the_data_dir(tmp_path):
    write_idx_set(tmp_path / "mirror")
    spec = _mirror_spec(tmp_path / "mirror")
    data = spec.read("train")  # nothing local: fetched from the (file://) mirror
    assert len(data) == 6 and "datadir" in data.source
    assert (Path(os.environ["RESNETLAB_DATA"]) / "tinyset" / "train-images-idx3-ubyte.gz").is_file()


def test_checksum_failure_is_an_error_and_leaves_no_file(tmp_path):
    write_idx_set(tmp_path / "mirror")
    src = tmp_path / "mirror" / "train-images-idx3-ubyte.gz"
    dest = tmp_path / "out" / "x.gz"
    with pytest.raises(UserError, match="checksum mismatch"):
        download(src.as_uri(), dest, "0" * 32)
    assert not dest.exists() and not list(dest.parent.iterdir())
    download(src.as_uri(), dest, md5sum(src))
    assert dest.read_bytes() == src.read_bytes()
    bad = _mirror_spec(
        tmp_path / "mirror", {r: "0" * 32 for r in ("train-images", "train-labels", "test-images", "test-labels")}
    )
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch_idx(bad.files, tmp_path / "target")


def test_missing_dataset_lists_the_places_tried(tmp_path):
    spec = idx_dataset(
        "nowhere",
        IdxFiles(
            ((tmp_path / "no-mirror").as_uri() + "/",),
            {
                "train-images": ("train-images-idx3-ubyte.gz", ""),
                "train-labels": ("train-labels-idx1-ubyte.gz", ""),
                "test-images": ("t10k-images-idx3-ubyte.gz", ""),
                "test-labels": ("t10k-labels-idx1-ubyte.gz", ""),
            },
            {},
        ),
    )
    with pytest.raises(UserError) as err:
        spec.read("train")
    message = str(err.value)
    assert "tried" in message and "nowhere" in message and "download" in message and "data fetch" in message


def write_cifar(root: Path, n_per_batch=4) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_rows = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        all_rows.append(rows)
        batch = {b"data": rows, b"labels": list(range(n_per_batch))}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = [
        n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    ]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return np.concatenate(all_rows[:5])


def test_cifar_tarball_and_folder_read_back(tmp_path):
    rows = write_cifar(tmp_path)
    for source in (tmp_path / "cifar-10-python.tar.gz", tmp_path / "cifar-10-batches-py"):
        data = load_dataset("cifar10", "train", path=source, val_fraction=0.0)
        assert data.images.shape == (20, 32, 32, 3) and len(load_dataset("cifar10", "test", path=source)) == 4
        assert data.classes[0] == "airplane" and data.info.hflip
        # Row layout: 1024 red values, then green, then blue, each 32x32 row-major.
        assert data.images[0, 0, 1, 0] == rows[0, 1] and data.images[0, 0, 0, 1] == rows[0, 1024]
        assert data.images[0, 1, 0, 2] == rows[0, 2048 + 32]


def test_cifar_copy_in_the_data_dir_must_be_the_real_archive(tmp_path):
    write_cifar(tmp_path)
    target = Path(os.environ["RESNETLAB_DATA"]) / "cifar10"
    target.mkdir(parents=True)
    (tmp_path / "cifar-10-python.tar.gz").rename(target / "cifar-10-python.tar.gz")
    with pytest.raises(UserError, match="checksum mismatch.*20 train images instead of 50,000"):
        load_dataset("cifar10", "train", allow_download=False)


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="not a readable CIFAR batch"):
        load_dataset("cifar10", "test", path=tmp_path / "cifar-10-batches-py")


def save_image(path: Path, color, size=(40, 30), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)


def make_folder(root: Path):
    for i in range(3):
        save_image(root / "cat" / f"c{i}.png", (200, 10, 10))
        save_image(root / "dog" / f"d{i}.jpg", (10, 10, 200))
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 255, 0)).save(buf, "JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.png").write_text("this is text, not a picture")


def test_image_folder_skips_bad_files_counts_and_lists_them(tmp_path, caplog):
    make_folder(tmp_path / "pets")
    with caplog.at_level(logging.WARNING, logger="resnetlab"):
        data = load_dataset(str(tmp_path / "pets"), "train", image_size=16, val_fraction=0.0)
    assert data.images.shape == (6, 18, 18, 3) and data.classes == ["cat", "dog"]  # stored at 16 / 0.875
    assert data.info.input_size == (3, 16, 16) and data.view() == (16, 16)  # the network's input: the centre
    assert sorted(data.skipped) == ["cat/empty.jpg", "cat/notes.png", "dog/truncated.jpg"]
    assert "skipped 3 of 9 files" in caplog.text
    cache_dirs = list((Path(os.environ["RESNETLAB_DATA"]) / "folders").iterdir())
    assert (cache_dirs[0] / "skipped.txt").read_text().count("\n") == 3
    red = data.images[data.labels == 0]
    assert red[..., 0].min() > 150 and red[..., 2].max() < 60  # the cat images are red


def test_image_folder_cache_is_reused_and_rebuilt_when_files_change(tmp_path):
    make_folder(tmp_path / "pets")
    load_dataset(str(tmp_path / "pets"), "train", image_size=16, val_fraction=0.0)
    folder = next((Path(os.environ["RESNETLAB_DATA"]) / "folders").iterdir())
    (cache,) = folder.glob("images-*.npy")
    stamp = cache.stat().st_mtime_ns
    assert len(load_dataset(str(tmp_path / "pets"), "train", image_size=16, val_fraction=0.0)) == 6
    assert cache.stat().st_mtime_ns == stamp  # reused
    save_image(tmp_path / "pets" / "dog" / "new.png", (0, 0, 255))
    assert len(load_dataset(str(tmp_path / "pets"), "train", image_size=16, val_fraction=0.0)) == 7  # rebuilt
    assert [p.name for p in folder.glob("images-*.npy")] != [cache.name]  # the old array was replaced


def test_image_folder_layouts_and_errors(tmp_path):
    root = tmp_path / "split"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            for i in range(2):
                save_image(root / split / cls / f"{i}.png", (i * 100, 50, 50), mode="RGB")
    assert len(load_dataset(str(root), "val", image_size=8)) == 4
    gray = load_dataset(str(root), "train", image_size=8, channels=1)
    assert gray.images.shape == (4, 9, 9, 1)
    assert load_dataset(str(root), "train", image_size=8, centre_crop=1.0).images.shape == (4, 8, 8, 3)

    make_folder(tmp_path / "flat")
    train = load_dataset(str(tmp_path / "flat"), "train", image_size=8, val_fraction=0.5, seed=1)
    val = load_dataset(str(tmp_path / "flat"), "val", image_size=8, val_fraction=0.5, seed=1)
    assert len(train) + len(val) == 6
    with pytest.raises(UserError, match="val_fraction"):
        load_dataset(str(tmp_path / "flat"), "val", image_size=8, val_fraction=0.0)
    with pytest.raises(UserError, match="no test part"):
        load_dataset(str(tmp_path / "flat"), "test", image_size=8)

    (tmp_path / "flat" / "empty_class").mkdir()
    with pytest.raises(UserError, match="empty_class"):
        load_dataset(str(tmp_path / "flat"), "train", image_size=8)
    (tmp_path / "nothing" / "x").mkdir(parents=True)
    with pytest.raises(UserError, match="no image files"):
        load_dataset(str(tmp_path / "nothing"), "train", image_size=8)
    with pytest.raises(UserError, match="neither a known name"):
        load_dataset("fashion-mnst", "train")


# ------------------------------------------------------------------------------------------ loader


def loader(data, **kw):
    defaults = dict(batch_size=64, train=True, augment=AugmentConfig(crop_padding=4, hflip=True), seed=3)
    defaults.update(kw)
    return BatchLoader(data, **defaults)


def test_augmentation_keeps_shapes_dtype_and_normalises():
    data = synthetic("train", n=300)
    batches = list(loader(data, augment=AugmentConfig(crop_padding=4, hflip=True, cutout=8)).epoch(0))
    assert len(batches) == 300 // 64
    x, y = batches[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    ev = list(loader(data, train=False).epoch(0))
    assert sum(len(b[1]) for b in ev) == 300  # evaluation keeps the last partial batch
    mean = torch.cat([b[0] for b in ev]).mean((0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=0.3)  # normalised with the dataset's mean/std


def _raw(data, idx):
    return torch.from_numpy(data.images[idx.numpy()]).permute(0, 3, 1, 2).float()


def test_flip_is_exact_and_crop_stays_in_bounds():
    data = synthetic("train", n=128)
    ld = loader(data, batch_size=128, augment=AugmentConfig(crop_padding=0, hflip=True))
    plan = ld.plan(0)
    x, _ = next(ld.epoch(0))
    raw = _raw(data, plan.order[:128])
    restored = (x - ld.bias) / ld.scale  # undo the normalisation
    expected = torch.where(plan.flips[:128, None, None, None], raw.flip(3), raw)
    assert torch.allclose(restored, expected, atol=1e-3)
    assert 30 < plan.flips[:128].sum() < 98

    ld = loader(data, batch_size=128, augment=AugmentConfig(crop_padding=4, hflip=False))
    plan = ld.plan(0)
    assert plan.offsets.min() >= 0 and plan.offsets.max() <= 8
    x, _ = next(ld.epoch(0))
    padded = torch.nn.functional.pad(_raw(data, plan.order[:128]), (4, 4, 4, 4))
    restored = (x - ld.bias) / ld.scale
    for i in range(0, 128, 17):
        dy, dx = plan.offsets[i].tolist()
        assert torch.allclose(restored[i], padded[i, :, dy : dy + 32, dx : dx + 32], atol=1e-3)


def test_same_seed_and_epoch_give_the_same_batches_and_resume_mid_epoch():
    data = synthetic("train", n=300)
    aug = AugmentConfig(crop_padding=4, hflip=True, cutout=6, mixup=0.2, cutmix=1.0)
    a = list(loader(data, augment=aug).epoch(2))
    b = list(loader(data, augment=aug).epoch(2))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    c = list(loader(data, augment=aug).epoch(3))
    assert not torch.equal(a[0][0], c[0][0])
    tail = list(loader(data, augment=aug).epoch(2, start_batch=2))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a[2:], tail))


def test_mixup_targets_are_probabilities():
    data = synthetic("train", n=128)
    x, y = next(loader(data, augment=AugmentConfig(mixup=0.4)).epoch(0))
    assert y.shape == (64, 10) and torch.allclose(y.sum(1), torch.ones(64))
    x, y = next(loader(data, augment=AugmentConfig(cutmix=1.0)).epoch(0))
    assert y.shape == (64, 10) and (y.max(1).values < 1).any()


def test_the_ranks_batches_together_are_exactly_the_one_process_batch():
    data = synthetic("train", n=301)
    augment = AugmentConfig(crop_padding=4, hflip=True, cutout=8)
    whole = list(loader(data, batch_size=15, train=True, augment=augment, seed=3).epoch(2))
    parts = [list(loader(data, batch_size=15, train=True, augment=augment, seed=3, rank=r, world_size=3).epoch(2))
             for r in range(3)]  # fmt: skip
    assert [len(p) for p in parts] == [len(whole)] * 3 == [20] * 3  # the same number of steps on every rank
    for b, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([p[b][0] for p in parts]), x) and torch.equal(
            torch.cat([p[b][1] for p in parts]), y
        )
    with pytest.raises(UserError, match="batch_size=16 does not divide among 3 processes.*such as 15"):
        loader(data, batch_size=16, train=True, rank=0, world_size=3)


def test_evaluation_shards_score_every_image_once():
    data = synthetic("test", n=301)
    seen = [torch.cat([y for _, y in loader(data, batch_size=16, train=False, rank=r, world_size=3).epoch(0)])
            for r in range(3)]  # fmt: skip
    orders = [loader(data, batch_size=16, train=False, rank=r, world_size=3).plan(0).order for r in range(3)]
    assert sorted(torch.cat(orders).tolist()) == list(range(301)) and sum(len(s) for s in seen) == 301


def test_channels_last_output():
    x, _ = next(loader(synthetic("train", n=64), channels_last=True).epoch(0))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_bad_loader_arguments_are_user_errors():
    with pytest.raises(UserError, match="batch_size=0"):
        loader(synthetic("train", n=10), batch_size=0)
    with pytest.raises(UserError, match="pad_mode"):
        loader(synthetic("train", n=10), augment=AugmentConfig(pad_mode="wrap"))


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_real_fashion_mnist_from_the_debian_package():
    train = load_dataset("fashion-mnist", "train", val_fraction=0.0)
    test = load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60_000, 28, 28, 1) and test.images.shape == (10_000, 28, 28, 1)
    assert len(train.classes) == 10 and np.bincount(train.labels).tolist() == [6000] * 10
    assert train.source == "/usr/share/datasets/fashion-mnist"
