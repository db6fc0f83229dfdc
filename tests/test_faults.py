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
