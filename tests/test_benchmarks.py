"""The benchmark scripts run (their figures are measured by hand, never asserted: this machine is shared)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600, cwd=BENCH.parent
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_gpu_speed_runs_its_bare_and_resnetlab_loops_on_the_cpu_too():
    out = run("gpu_speed.py", "--device", "cpu", "--models", "resnet20", "--modes", "eager", "--steps", "2",
              "--batch-scale", "0.03")  # fmt: skip
    assert "device: CPU" in out and "batch 15" in out
    (ratio,) = [line for line in out.splitlines() if line.startswith("resnet20: resnetlab/peer = ")]
    assert float(ratio.split("=")[1].rstrip("x")) > 0


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is not installed")
def test_int8_speed_quantizes_times_and_scores_both_models_on_tiny_settings(tmp_path, monkeypatch):
    from image_folders import colour_folder

    colour_folder(tmp_path / "cells" / "train", per_class=20, size=40, noise=30)  # stands in for ELPV's photos
    colour_folder(tmp_path / "cells" / "test", per_class=4, size=40, noise=30)
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))  # the folder's cache, not the user's
    out = run("int8_speed.py", "--models", "demo,resnet18", "--photos", str(tmp_path / "cells"), "--side", "32",
              "--epochs", "1", "--train-limit", "256", "--limit", "64", "--calibration", "16", "--rounds", "1",
              "--seconds", "0.01")  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("CPU ") and " threads; " in lines[0]
    assert "no --run given: training fashion_mnist_fast here with epochs=1" in out
    assert "no ImageNet weights are available offline" in out
    for name in ("fp32", "int8", "int8/fp32"):
        assert sum(bool(re.match(rf"{name} +[-+]?\d", line)) for line in lines) == 2  # a row in each table
    assert "int8 vs fp32 on the 64 test images: top-1 agrees on" in out
    for name in ("demo", "resnet18"):
        (ratio,) = [line for line in lines if line.startswith(f"int8_{name}: int8/fp32 = ")]
        assert float(ratio.split("=")[1].rstrip("x")) > 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is not installed")
def test_time_to_accuracy_times_both_arms_end_to_end():
    out = run("time_to_accuracy.py", "--epochs", "1", "--limit", "1024", "--target", "0")
    assert "time_to_accuracy: resnetlab/peer = " in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("resnetlab ", "bare "))}
    assert set(rows) == {"resnetlab", "bare"} and all(row.endswith(" s") for row in rows.values())


def test_the_cpu_is_named_with_its_family_units_and_cores():
    from resnetlab.training.device import cpu_description, cpu_has_fast_bf16

    described = cpu_description()  # e.g. "AMD EPYC (family 26 model 2, AVX-512 BF16, 2 cores)"
    assert described.endswith(f"{len(os.sched_getaffinity(0))} cores)")
    if cpu_has_fast_bf16():  # what precision=auto reads, and what the name says, agree
        assert "AMX" in described or "AVX-512 BF16" in described


def test_time_to_accuracy_asks_for_timms_train_py_for_the_timm_arm(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "time_to_accuracy.py"), "--arms", "resnetlab,timm", "--timm-train",
         str(tmp_path / "train.py")], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "timm arm needs --timm-train PATH to timm's train.py" in done.stderr
    assert str(tmp_path / "train.py") in done.stderr and "pytorch-image-models" in done.stderr
    wrong = subprocess.run([sys.executable, str(BENCH / "time_to_accuracy.py"), "--arms", "tf"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert wrong.returncode == 2 and "--arms tf: the arms are resnetlab, bare and timm" in wrong.stderr
    other = subprocess.run([sys.executable, str(BENCH / "time_to_accuracy.py"), "--recipe", "cifar10_resnet_paper",
                            "--arms", "bare"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert other.returncode == 2 and "with sgd and a multistep schedule; the bare loop writes" in other.stderr
    (tmp_path / "cut.yaml").write_text("data: {cutout: 8}\noptim: {optimizer: sgd}\nschedule: {name: onecycle}\n")
    cut = subprocess.run([sys.executable, str(BENCH / "time_to_accuracy.py"), "--recipe", str(tmp_path / "cut.yaml"),
                          "--arms", "resnetlab,timm", "--timm-train", str(BENCH / "time_to_accuracy.py")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cut.returncode == 2
    assert "sets data.cutout=8, which the bare loop does not write out; leave it at 0" in cut.stderr


TIMM_TRAIN = os.environ.get("RESNETLAB_TIMM_TRAIN", "")  # timm's train.py, from a pytorch-image-models checkout


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is not installed")
@pytest.mark.skipif(not Path(TIMM_TRAIN).is_file(), reason="set RESNETLAB_TIMM_TRAIN to timm's train.py")
def test_time_to_accuracy_runs_timms_own_train_and_validate_scripts():
    out = run("time_to_accuracy.py", "--arms", "resnetlab,timm", "--epochs", "1", "--limit", "1024", "--target",
              "0", "--timm-train", TIMM_TRAIN)  # fmt: skip
    assert "time_to_accuracy_timm: resnetlab/peer = " in out
    (row,) = [line for line in out.splitlines() if line.startswith("timm ")]
    assert row.endswith(" s")


def test_data_speed_measures_the_cost_of_a_caches_checks(capsys):
    """The streamed-cache checks' cost row: unchecked, first epoch, later epochs, and the two costs."""
    sys.path.insert(0, str(BENCH))
    try:
        from data_speed import check_cost
    finally:
        sys.path.remove(str(BENCH))
    from resnetlab.data.sources import synthetic

    check_cost(synthetic("train", n=512, size=28, channels=1), 64, rounds=1)
    row = capsys.readouterr().out.split()
    assert row[0] == "28x28x1" and len(row) == 6 and all(v.endswith("%") for v in row[4:])
