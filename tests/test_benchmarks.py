"""The benchmark scripts run (their figures are measured by hand, never asserted: this machine is shared)."""

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


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is not installed")
def test_time_to_accuracy_times_both_arms_end_to_end():
    out = run("time_to_accuracy.py", "--epochs", "1", "--limit", "1024", "--target", "0")
    assert "time_to_accuracy: resnetlab/peer = " in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("resnetlab ", "bare "))}
    assert set(rows) == {"resnetlab", "bare"} and all(row.endswith(" s") for row in rows.values())
