"""Faults end in a clear message, a resumable run and nothing lost: SIGTERM / SIGINT checkpoint and exit
143 / 130, a long epoch is checkpointed by wall time, non-finite weights or validation loss never reach a
checkpoint, impossible settings fail before a run directory exists."""

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from resnetlab.cli import main
from resnetlab.errors import ConfigError, UserError
from resnetlab.training import load_config
from resnetlab.training import loop as loop_module
from resnetlab.training.loop import TrainingDiverged, fit
from test_resume import interrupted

SETTINGS = [
    "model=resnet8",
    "data=synthetic",
    "epochs=2",
    "batch_size=16",
    "quiet=true",
    "output.tensorboard=false",
]


def start(out: Path, name: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "resnetlab", "train", *SETTINGS, f"out={out}", f"name={name}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / name / "config.yaml").exists() and time.time() < deadline:  # written just before step 1
        time.sleep(0.02)
    time.sleep(0.5)  # a few steps into the first epoch
    return proc


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_in_the_first_epoch_checkpoints_says_how_to_resume_and_resumes_exactly(tmp_path, signum, code):
    proc = start(tmp_path, "victim")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    run = tmp_path / "victim"
    assert f"resume with: resnetlab train resume={run}" in err and "Traceback" not in err
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and 0 < state["batch_in_epoch"] < 56  # stopped inside the first epoch
    if signum == signal.SIGTERM:  # the stopped run continues to exactly the uninterrupted result
        resumed = fit(load_config(None, [f"resume={run}", "quiet=true"]))
        reference = fit(load_config(None, SETTINGS + [f"out={tmp_path / 'ref'}"]))
        a, b = load_file(reference.run_dir / "last.safetensors"), load_file(resumed.run_dir / "last.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_long_epoch_is_checkpointed_by_wall_time(tmp_path, monkeypatch):
    run = interrupted(monkeypatch, SETTINGS + [f"out={tmp_path}", "run.checkpoint_minutes=1e-9"], after_steps=7)
    state = torch.load(run / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch_in_epoch"]) == (0, 7)  # no checkpoint_every: the clock asked for it


def test_a_non_finite_validation_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = loop_module.evaluate
    calls = []

    def nan_on_second_call(*args, **kwargs):
        calls.append(None)
        result = real(*args, **kwargs)
        return {**result, "loss": math.nan} if len(calls) == 2 else result

    monkeypatch.setattr(loop_module, "evaluate", nan_on_second_call)
    with pytest.raises(TrainingDiverged, match="val loss became nan after epoch 2"):
        fit(load_config(None, SETTINGS + [f"out={tmp_path}", "limit_train=128"]))
    (run,) = tmp_path.iterdir()
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1  # the good one stays
    assert load_file(run / "best.safetensors").keys()


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path, monkeypatch):
    real_step = torch.optim.SGD.step
    steps = []

    def step_then_poison(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        steps.append(None)
        if len(steps) == 16:  # the last step of epoch 2 (8 a epoch): no forward pass sees the NaN
            self.param_groups[0]["params"][0].data[0] = math.nan
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_poison)
    with pytest.raises(TrainingDiverged, match="weights stopped being finite"):
        fit(load_config(None, SETTINGS + [f"out={tmp_path}", "limit_train=128"]))
    (run,) = tmp_path.iterdir()
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    for name in ("last.safetensors", "best.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(run / name).values())


@pytest.mark.parametrize(
    "bad,match",
    [
        ("lr=nan", "optim.lr=nan is not a finite number"),
        ("lr=inf", "optim.lr=inf is not a finite number"),
        ("batch_size=0", "must be positive"),
        ("batch_size=5000", "batch_size=5000 is larger than the 900 training images"),
        ("epochs=-1", "must be >= 1"),
    ],
)
def test_impossible_settings_fail_before_a_run_directory_exists(tmp_path, bad, match, capsys):
    with pytest.raises((ConfigError, UserError), match=match):
        fit(load_config(None, SETTINGS + [f"out={tmp_path}", bad]))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    assert main(["train", *SETTINGS, f"out={tmp_path}", bad]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from resnetlab import create_model
    from resnetlab.files import save_weights

    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    meta = {
        "model": "resnet8",
        "args": {},
        "num_classes": 10,
        "in_chans": 3,
        "classes": [str(i) for i in range(10)],
        "input_size": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_weights(path, create_model("resnet8").state_dict(), meta)
    return path


@pytest.mark.parametrize(
    "argv,match",
    [
        (["predict", "{w}", "{img}", "--topk", "-1"], "--topk -1 should be a positive number"),
        (["embed", "{w}", "{img}", "--batch-size", "0"], "--batch-size 0 should be a positive number"),
        (["export", "{w}", "format=onnx", "batch=0", "out={tmp}/m.onnx"], "batch=0 is not a batch size"),
        (["export", "{w}", "format=torchscript", "out=/proc/resnetlab/m.pt"], "cannot write /proc/resnetlab/m.pt"),
    ],
)
def test_command_line_user_errors_exit_2_in_one_sentence_and_write_nothing(weights, tmp_path, argv, match, capsys):
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 10)).save(tmp_path / "x.png")
    args = [a.format(w=weights, img=tmp_path / "x.png", tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # nothing written


def test_file_names_that_are_not_utf8_are_read_or_skipped_and_reported(tmp_path, weights, capsys, monkeypatch):
    import os

    from PIL import Image

    from resnetlab.data import load_dataset

    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    root = tmp_path / "odd"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(root / c / f"{i}.png")
    Image.new("RGB", (8, 8)).save(os.fsdecode(bytes(root / "a") + b"/caf\xe9.png"))  # Latin-1, not UTF-8
    (Path(os.fsdecode(bytes(root / "b") + b"/broken\xfe.png"))).write_text("not an image")
    data = load_dataset(str(root), "train", image_size=8, val_fraction=0.0)
    assert len(data) == 7 and data.skipped == [os.fsdecode(b"b/broken\xfe.png")]
    listing = next((tmp_path / "cache" / "folders").glob("odd-*/skipped.txt")).read_bytes()
    assert listing.startswith(b"b/broken\xfe.png\t")  # the name as the file system has it
    out = tmp_path / "features.npy"
    assert main(["embed", str(weights), str(root), f"out={out}"]) == 0
    assert out.stat().st_size > 0 and b"caf\xe9.png" in out.with_suffix(".txt").read_bytes()
    assert "broken\\xfe.png" in capsys.readouterr().out


def test_high_bit_depth_and_unusual_modes_convert_without_saturating(tmp_path):
    import numpy as np
    from PIL import Image

    from resnetlab.data.folders import decode

    grey16 = np.full((8, 8), 32768, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert abs(int(decode(tmp_path / "g16.png", 8, 1).mean()) - 128) <= 1  # not clipped to 255
    assert abs(int(decode(tmp_path / "g16.png", 8, 3).mean()) - 128) <= 1
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    red = decode(tmp_path / "cmyk.jpg", 8, 3).mean((0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    assert decode(tmp_path / "pal.png", 8, 3)[..., 1].mean() > 150
    rotated = Image.new("RGB", (16, 8), (0, 0, 0))
    rotated.paste((255, 255, 255), (0, 0, 8, 8))  # white left half, landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rotated.save(tmp_path / "rot.jpg", exif=exif)
    upright = decode(tmp_path / "rot.jpg", 8, 3)  # 8 wide, 16 tall when upright: the white half on top
    assert upright[:3].mean() > 200 and upright[-3:].mean() < 60  # stored as is, the white half is on the left
