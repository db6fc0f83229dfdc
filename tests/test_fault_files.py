"""Files that are not what they claim, full disks and concurrent caches: each ends in one sentence naming the
file, a skipped image with its reason, or a rebuilt cache; never a traceback, and nothing earlier is lost."""

import contextlib
import errno
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import resnetlab
from image_folders import colour_folder
from resnetlab import checkpoint as ckpt
from resnetlab.cli import main
from resnetlab.data import BatchLoader, folders, load_dataset
from resnetlab.data.rowfile import CacheChanged
from resnetlab.errors import UserError, WriteFailed
from resnetlab.files import read_weights, save_weights
from resnetlab.training import load_config
from resnetlab.training.loop import fit

META = {
    "model": "resnet8",
    "args": {},
    "num_classes": 2,
    "in_chans": 3,
    "classes": ["a", "b"],
    "input_size": [3, 16, 16],
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
}


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, resnetlab.create_model("resnet8", num_classes=2).state_dict(), META)
    return path


def noisy_folder(root: Path, per_class: int = 4, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


# ---------------------------------------------------------------------------------------------------
# Damaged checkpoints and weights


def damaged_files(tmp_path: Path, weights: Path) -> dict[str, Path]:
    """name -> a file that is not the checkpoint or weights it looks like."""
    rng = np.random.default_rng(1)
    good_ckpt = tmp_path / "good.pt"
    ckpt.save_checkpoint(good_ckpt, {"epoch": 1, "model": {"w": torch.ones(4)}})
    files = {
        "random.pt": rng.bytes(5000),
        "zip-looking.pt": b"PK\x03\x04" + rng.bytes(3000),
        "truncated.pt": good_ckpt.read_bytes()[:300],
        "empty.pt": b"",
        "random.safetensors": rng.bytes(5000),
        "truncated.safetensors": weights.read_bytes()[:200],
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / "bad" / name
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_bytes(data)
    return paths


def test_damaged_checkpoints_and_weights_are_one_sentence_naming_the_file(tmp_path, weights, capsys):
    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    for name, path in damaged_files(tmp_path, weights).items():
        loaders = [ckpt.load_checkpoint, resnetlab.load] if name.endswith(".pt") else [read_weights, resnetlab.load]
        for load in loaders:
            with pytest.raises(UserError) as caught:
                load(path)
            message = str(caught.value)
            assert str(path) in message and "could run code" not in message, (name, message)
            assert "\n" not in message
        for argv in (["predict", str(path), str(tmp_path / "x.png")], ["eval", str(path)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert str(path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"\x80\x02garbage")
    assert main(["train", f"resume={run}"]) == 2
    assert f"{run / 'last.pt'} is truncated or is not a PyTorch checkpoint" in capsys.readouterr().err


def test_only_a_file_that_really_pickles_code_is_called_unsafe(tmp_path):
    path = tmp_path / "code.pt"
    torch.save({"model": {"w": torch.ones(1)}, "why": Path("/")}, path)  # a Path object: arbitrary pickling
    with pytest.raises(UserError, match=r"asks to run code when loaded \(pathlib.PosixPath\), so it was not loaded"):
        ckpt.load_checkpoint(path)


def test_a_pickle_that_calls_the_shell_is_named_and_random_bytes_get_one_plain_sentence(tmp_path):
    """Issue 27, item 15: torch 2.14 says "unsupported GLOBAL posix.system", which a case-sensitive check missed,
    and both cases ended in torch's 120-character weights_only preamble."""

    class Shell:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Shell()}, evil)
    with pytest.raises(UserError) as caught:
        ckpt.load_checkpoint(evil)
    assert re.search(r"asks to run code when loaded \((posix|nt)\.system\), so it was not loaded", str(caught.value))
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(UserError) as caught:
        ckpt.load_checkpoint(noise)
    message = str(caught.value)
    assert "is truncated or is not a PyTorch checkpoint" in message and "Weights only load failed" not in message
    assert "In PyTorch 2.6" not in message and "\n" not in message


@pytest.mark.parametrize(
    "metadata,problem",
    [
        ({"resnetlab": "{not json"}, "malformed resnetlab metadata (not JSON"),
        ({"resnetlab": "[1, 2]"}, "malformed resnetlab metadata (a JSON list, not an object)"),
        ({"resnetlab": json.dumps({"model": "resnet8"})}, "malformed resnetlab metadata (num_classes, in_chans"),
        ({"resnetlab": json.dumps({**META, "classes": ["a"]})}, "classes (1 names for 2 classes)"),
        (
            {"resnetlab": json.dumps({**META, "args": {"wings": 2}})},
            "malformed resnetlab metadata (unknown ResNet argument(s) wings",
        ),
        ({"resnetlab": json.dumps({**META, "model": "resnet9000"})}, "malformed resnetlab metadata (unknown model"),
        ({}, "carries no resnetlab metadata"),
    ],
)
def test_safetensors_with_missing_or_malformed_metadata_say_what_is_wrong(tmp_path, metadata, problem):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(resnetlab.create_model("resnet8", num_classes=2).state_dict(), str(path), metadata=metadata)
    with pytest.raises(UserError, match=re.escape(problem)) as caught:
        resnetlab.load(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"classes": 5}, "classes missing or wrong"),
        ({"input_size": [-1, 0]}, "input_size ([-1, 0]: not positive)"),
        ({"input_size": [3, -1, 0]}, "input_size ([3, -1, 0]: not positive)"),
        ({"std": [0.2, 0.0, 0.2]}, "std ([0.2, 0.0, 0.2]: not positive)"),
    ],
)
def test_init_weights_with_malformed_metadata_are_refused_in_one_sentence(tmp_path, change, problem, capsys):
    path = tmp_path / "w.safetensors"  # issue 27, item 11: a TypeError or ValueError deep in the run before
    save_weights(path, resnetlab.create_model("resnet8", num_classes=2).state_dict(), {**META, **change})
    runs = tmp_path / "runs"
    assert main(["train", f"init={path}", "data=synthetic", "epochs=1", f"out={runs}", "quiet=true"]) == 2
    err = capsys.readouterr().err
    assert f"{path} has malformed resnetlab metadata" in err and problem in err and "Traceback" not in err
    assert not runs.exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------------
# Images that are bombs, too large, or broken


def test_decompression_bombs_and_oversized_images_are_skipped_with_a_reason(tmp_path, weights, monkeypatch, capsys):
    from resnetlab.data import folders

    root = noisy_folder(tmp_path / "pics", size=16)
    Image.new("RGB", (64, 64), (9, 9, 9)).save(root / "a" / "bomb.png")  # 4,096 pixels: over twice the limit below
    Image.new("RGB", (16, 16)).save(root / "b" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # what Pillow calls a bomb, scaled down for a test
    real_decode = folders.decode

    def out_of_memory_for_huge(path, size, channels):
        if path.name == "huge.png":
            raise MemoryError
        return real_decode(path, size, channels)

    monkeypatch.setattr(folders, "decode", out_of_memory_for_huge)
    data = load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    assert sorted(data.skipped) == ["a/bomb.png", "b/huge.png"] and len(data) == 8
    listing = next((tmp_path / "cache" / "folders").glob("pics-*/skipped.txt")).read_text()
    assert "decompression bomb" in listing and "too large to decode" in listing

    results = resnetlab.predict(weights, [root / "a" / "0.png", root / "a" / "bomb.png", root / "b" / "huge.png"])
    assert "top" in results[0] and results[1]["skipped"].startswith("decompression bomb")
    assert results[2]["skipped"] == "too large to decode in the memory available"
    assert main(["predict", str(weights), str(root / "a" / "bomb.png"), str(root / "a" / "1.png")]) == 0
    assert "skipped: decompression bomb" in capsys.readouterr().out
    features, names, skipped = resnetlab.embed(weights, [root])
    assert len(names) == 8 and sorted(Path(f).name for f, _ in skipped) == ["bomb.png", "huge.png"]
    assert main(["predict", str(weights), str(root / "a" / "bomb.png")]) == 2  # nothing readable: a user error
    assert "none of the 1 images could be read" in capsys.readouterr().err


def test_a_large_photo_within_twice_pillows_limit_is_read_without_pillows_warning(tmp_path, weights, monkeypatch):
    """Issue 27, item 17: Pillow's raw DecompressionBombWarning was printed for a 10000x10000 photo."""
    import warnings

    Image.new("RGB", (40, 40), (9, 200, 9)).save(tmp_path / "large.png")  # 1,600 pixels: within twice the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", str(weights), str(tmp_path / "large.png")]) == 0
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    with pytest.warns(Image.DecompressionBombWarning):  # the library keeps Pillow's default for its users
        assert "top" in resnetlab.predict(weights, [tmp_path / "large.png"])[0]


def test_dangling_and_looping_links_are_skipped_with_a_reason_by_training_and_predict(tmp_path, weights, capsys):
    """Issue 27, items 4 and 9: a scan died of FileNotFoundError / ELOOP; predict left the links out unsaid."""
    root = noisy_folder(tmp_path / "linked", size=16)
    (root / "a" / "ghost.png").symlink_to(tmp_path / "deleted.png")
    (root / "b" / "loop.png").symlink_to(root / "b" / "loop.png")
    (root / "b" / "fine.png").symlink_to(root / "b" / "0.png")  # a link that works is an image like any other
    data = load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    assert len(data) == 9 and sorted(data.skipped) == ["a/ghost.png", "b/loop.png"]
    listing = next((tmp_path / "cache" / "folders").glob("linked-*/skipped.txt")).read_text()
    assert "a symbolic link to a missing file" in listing and "a symbolic link that leads round in a loop" in listing
    results = {str(Path(r["file"]).relative_to(root)): r for r in resnetlab.predict(weights, [root])}
    assert results["a/ghost.png"]["skipped"] == "a symbolic link to a missing file"
    assert results["b/loop.png"]["skipped"] == "a symbolic link that leads round in a loop"
    assert "top" in results["b/fine.png"] and len(results) == 11


def test_the_skipped_files_warning_is_printed_once_per_folder(tmp_path, caplog):
    root = noisy_folder(tmp_path / "once")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    for _ in range(3):  # train, then an evaluation, then another run: one warning
        load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    assert sum("skipped 1 of 9 files" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------------------------------------------
# Image-folder caches: built by two processes at once, damaged, truncated


def digest(root: Path) -> str:
    data = load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    return hashlib.sha1(np.ascontiguousarray(data.images).tobytes() + data.labels.tobytes()).hexdigest()


def test_a_cache_build_on_a_full_disk_is_one_sentence_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    """Issue 27, item 6: mapped writes to a sparse cache on a full disk died of SIGBUS (exit 135), silently,
    leaving a full-size temporary file. The disk is simulated full (the tests run as root, where a tmpfs mount
    may be refused): the block reservation fails as it would."""
    root = noisy_folder(tmp_path / "full", size=16)

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    runs = tmp_path / "runs"
    assert main(["train", f"data={root}", "model=resnet8", "epochs=1", f"out={runs}", "quiet=true"]) == 1
    err = capsys.readouterr().err
    assert "no space left on device while writing" in err and ".tmp; nothing was replaced (free some space" in err
    assert not list((tmp_path / "cache").rglob("*.tmp")) and "Traceback" not in err


def test_two_processes_building_the_same_cache_at_once_both_succeed(tmp_path):
    root = noisy_folder(tmp_path / "shared", per_class=150, size=40)
    code = (
        "import hashlib, sys, numpy as np; from resnetlab.data import load_dataset; "
        f"d = load_dataset({str(root)!r}, 'train', image_size=16, val_fraction=0.0); "
        "print(hashlib.sha1(np.ascontiguousarray(d.images).tobytes() + d.labels.tobytes()).hexdigest())"
    )
    env = {**os.environ, "RESNETLAB_DATA": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in "ab"]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1] == digest(root)
    (cache,) = (tmp_path / "cache" / "folders").iterdir()
    assert not list(cache.glob(".*tmp")) and len(list(cache.glob("images-*.npy"))) == 1  # no debris


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "garbage index", "empty array"])
def test_a_damaged_cache_is_detected_and_rebuilt(tmp_path, damage, caplog):
    root = noisy_folder(tmp_path / "pics")
    expected = digest(root)
    (cache,) = (tmp_path / "cache" / "folders").iterdir()
    (array,) = cache.glob("images-*.npy")
    raw = bytearray(array.read_bytes())
    if damage == "truncate":
        array.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip a byte":
        raw[len(raw) - 100] ^= 0xFF  # pixel data: the size is right, the CRC-32 is not
        array.write_bytes(raw)
    elif damage == "garbage index":
        (cache / "index.json").write_text('{"fingerprint": ')
    else:
        array.write_bytes(b"")
    caplog.clear()
    assert digest(root) == expected
    assert any("damaged" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)


def damage_in_place(array: Path, how: str) -> None:
    """Change a cache's array under a reader, as another program would: XOR a run of pixel bytes in place (the
    same file, the same size), or cut the file to half its length."""
    if how == "truncate":
        os.truncate(array, array.stat().st_size // 2)
        return
    with open(array, "r+b") as f:
        f.seek(array.stat().st_size // 2)
        chunk = bytearray(f.read(4096))
        f.seek(array.stat().st_size // 2)
        f.write(bytes(b ^ 0x5A for b in chunk))


@pytest.mark.parametrize("how", ["xor", "truncate"])
@pytest.mark.parametrize("stream", ["true", "false"])
def test_a_cache_that_changes_under_a_reader_stops_it_naming_the_cache(tmp_path, how, stream):
    """Issue 27, items 2 and 6: a streamed run read damaged rows without noticing (a val top-1 of 73% that eval
    scored at 100%), and a cache cut short under it died of SIGBUS. The file is now checked against change
    before and after each streamed batch, and a held dataset is read with pread (which a cut file cannot crash);
    the cache's index is withdrawn, so that the next read rebuilds it."""
    root = noisy_folder(tmp_path / "pics", per_class=40, size=16)
    expected = digest(root)
    data = load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    (cache,) = (tmp_path / "cache" / "folders").iterdir()
    (array,) = cache.glob("images-*.npy")
    if stream == "true":
        loader = BatchLoader(data, 16, train=True, stream="true")
        next(iter(loader.epoch(0)))  # reading works before the change
    damage_in_place(array, how)
    with pytest.raises(CacheChanged) as caught:
        loader = BatchLoader(data, 16, train=True, stream=stream)
        for _ in loader.epoch(1):
            pass
    said = str(caught.value)
    assert said.startswith(f"the image cache {array} changed while it was read (")
    assert ("cut short" if how == "truncate" else "written to after this run opened it") in said
    assert not (cache / "index.json").exists()  # withdrawn: the next read rebuilds from the image files
    assert digest(root) == expected


def test_a_large_cache_damaged_before_a_run_is_caught_by_each_images_checksum(tmp_path, monkeypatch):
    """Caches over VERIFY_BYTES are not CRC-checked whole on opening (that would take seconds a gigabyte): the
    damage is found when a damaged image is first read, by its own checksum."""
    root = noisy_folder(tmp_path / "pics", per_class=40, size=16)
    load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    (array,) = (tmp_path / "cache" / "folders").glob("*/images-*.npy")
    damage_in_place(array, "xor")
    monkeypatch.setattr(folders, "VERIFY_BYTES", 0)  # as if it were large
    data = load_dataset(str(root), "train", image_size=16, val_fraction=0.0)
    loader = BatchLoader(data, 16, train=True, stream="true")
    with pytest.raises(CacheChanged, match="no longer matches the checksum recorded for it"):
        for _ in loader.epoch(0):
            pass


def test_a_cache_damaged_under_a_streamed_run_stops_it_and_the_resumed_run_ends_as_if_untouched(
    tmp_path, monkeypatch, capsys
):
    """The reproduction of item 2, end to end: the cache is damaged after the first checkpoint. The run stops with
    one sentence naming the cache and exit status 1, its checkpoint intact; resumed, it rebuilds the cache and
    ends with exactly the weights of a run never disturbed."""
    root = noisy_folder(tmp_path / "pics", per_class=40, size=16)
    settings = [f"data={root}", "model=resnet8", "epochs=2", "batch_size=16", "data.stream=true", "quiet=true"]
    reference = fit(load_config(None, [*settings, f"out={tmp_path / 'ref'}"]))
    real_write = ckpt.write_bytes

    def damage_after_the_first_checkpoint(path, data):
        real_write(path, data)
        (array,) = (tmp_path / "cache" / "folders").glob("*/images-*.npy")
        damage_in_place(array, "xor")

    monkeypatch.setattr(ckpt, "write_bytes", damage_after_the_first_checkpoint)
    run = tmp_path / "runs" / "victim"
    assert main(["train", *settings, f"out={run.parent}", "name=victim"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("resnetlab: error: the image cache ") and "changed while it was read" in err
    assert err.endswith(f"resume with: resnetlab train resume={run}") and len(err.splitlines()) == 1
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1  # the first epoch's checkpoint
    monkeypatch.setattr(ckpt, "write_bytes", real_write)
    resumed = fit(load_config(None, [f"resume={run}", "quiet=true"]))
    a, b = load_file(reference.run_dir / "last.safetensors"), load_file(resumed.run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_cache_of_an_earlier_format_is_rebuilt_once_and_says_so(tmp_path, caplog):
    root = noisy_folder(tmp_path / "pics")
    expected = digest(root)
    (cache,) = (tmp_path / "cache" / "folders").iterdir()
    index = json.loads((cache / "index.json").read_text())
    del index["version"], index["checks"]  # as format 3 wrote it
    (cache / "index.json").write_text(json.dumps(index))
    caplog.clear()
    assert digest(root) == expected
    said = [r.getMessage() for r in caplog.records if "earlier resnetlab" in r.getMessage()]
    assert len(said) == 1 and "rebuilding it once in format" in said[0]
    caplog.clear()
    assert digest(root) == expected and not caplog.records  # once: the rebuilt cache is current


# ---------------------------------------------------------------------------------------------------
# The same faults on real mounts: a small tmpfs, and one remounted read-only. Where mounting is not allowed (a
# container without CAP_SYS_ADMIN, a user who is not root) they skip, saying so; the simulated variants above run
# everywhere.


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command here; the simulated variant of this fault runs instead")
    if done.returncode:
        pytest.skip(f"mounting a tmpfs is not allowed here ({done.stderr.strip()}); the simulated variant runs instead")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_cache_build_on_a_real_full_tmpfs_is_one_sentence_and_leaves_the_disk_as_it_was(
    tmp_path, monkeypatch, capsys
):
    """Item 6 as reported: RESNETLAB_DATA on a 3 MB tmpfs and a 13 MB cache to build."""
    root = colour_folder(tmp_path / "photos", per_class=70, size=128, noise=30)
    with tmpfs(tmp_path / "small", "3m") as small:
        monkeypatch.setenv("RESNETLAB_DATA", str(small))
        runs = tmp_path / "runs"
        assert main(["train", f"data={root}", "model=resnet8", "epochs=1", f"out={runs}", "quiet=true"]) == 1
        err = capsys.readouterr().err.strip()
        assert "no space left on device while writing" in err and len(err.splitlines()) == 1, err
        left = [p for p in small.rglob("*") if p.is_file()]
        assert sum(p.stat().st_size for p in left) < 100_000, left  # no full-size temporary file fills the disk


def test_out_on_a_real_read_only_mount_is_one_sentence_and_exit_2(tmp_path, capsys):
    """Item 8 as reported: out= on a read-only file system."""
    with tmpfs(tmp_path / "ro", "1m") as ro:
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True, text=True)
        if remounted.returncode:
            pytest.skip(f"remounting read-only is not allowed here ({remounted.stderr.strip()})")
        assert main(["train", *TRAIN, f"out={ro / 'runs'}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "read-only file system" in err and "choose another out=" in err and len(err.splitlines()) == 1, err
        assert not list(ro.iterdir())


# ---------------------------------------------------------------------------------------------------
# A disk that fills while a checkpoint is being written

TRAIN = ["model=resnet8", "data=synthetic", "epochs=2", "batch_size=64", "quiet=true", "output.tensorboard=false"]


def test_a_full_disk_while_checkpointing_exits_1_and_the_previous_checkpoint_resumes(tmp_path, monkeypatch, capsys):
    writes = []
    real_write = ckpt.write_bytes

    def disk_fills_on_the_second_checkpoint(path, data):
        writes.append(path)
        if len(writes) == 2:
            Path(path).write_bytes(bytes(data[: len(data) // 3]))  # part of it reached the disk, then no space
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, data)

    monkeypatch.setattr(ckpt, "write_bytes", disk_fills_on_the_second_checkpoint)
    run = tmp_path / "full"
    assert main(["train", *TRAIN, f"out={tmp_path}", "name=full"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"resnetlab: error: no space left on device while writing {run / 'last.pt'}; nothing was replaced "
        f"(free some space, then resume with: resnetlab train resume={run})"
    )
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1  # the first epoch's checkpoint
    monkeypatch.setattr(ckpt, "write_bytes", real_write)  # space freed
    resumed = fit(load_config(None, [f"resume={run}", "quiet=true"]))
    assert resumed.summary["epochs"] == 2


def test_write_failed_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_weights(path, {"w": torch.ones(2)}, {})
    before = path.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EDQUOT, "Disk quota exceeded")))
    with pytest.raises(WriteFailed, match=r"^disk quota exceeded while writing .*w\.safetensors; nothing was replaced"):
        save_weights(path, {"w": torch.zeros(2)}, {})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
