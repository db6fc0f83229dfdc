"""scripts/gpu-check.sh: the GPU checks run dry on the CPU, so that no GPU minute is spent on a typo."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
HAVE_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist").is_dir() or (ROOT / "data" / "fashion-mnist").is_dir()


def gpu_check(*args: str, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out)}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def helper():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tier_1_runs_dry_on_the_cpu_and_records_every_step(tmp_path):
    done = gpu_check("--dry", "1", out=tmp_path)
    report = json.loads((tmp_path / "tier1.json").read_text())
    steps = report["steps"]
    assert list(steps) == ["versions", "data", "pytest_gpu", "pytest_cuda", "speed_resnet20", "demo"]
    assert report["tier"] == 1 and report["dry"] is True
    assert steps["versions"]["figures"]["torch"] == torch.__version__  # the versions come first, in the log too
    assert (tmp_path / "tier1.log").read_text().startswith("== versions")
    gpu_tests = steps["pytest_gpu"]["figures"]
    assert gpu_tests.get("skipped", 0) >= 1 and "failed" not in gpu_tests  # every gpu test skips on a CPU
    assert steps["pytest_cuda"]["figures"]["collected"] > 50
    eager = steps["speed_resnet20"]["figures"]["models"]["resnet20"]["modes"]["eager"]
    assert eager["bare"] > 0 and eager["resnetlab"] > 0 and "graphs" not in eager  # no CUDA graphs on a CPU
    if HAVE_FASHION_MNIST:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert all(s["status"] == "ok" for s in steps.values()), steps
        demo = steps["demo"]["figures"]
        assert demo["model"] == "resnet14" and demo["epochs"] == 1 and 0.0 <= demo["test_top1"] <= 1.0
    else:  # what to carry is said, and the steps that need the data say why they did not run
        assert done.returncode == 1
        assert steps["data"]["status"].startswith("failed") and "--prepare" in "\n".join(steps["data"]["last_lines"])
        assert steps["demo"]["status"].startswith("skipped: no Fashion-MNIST")


def test_a_wrong_call_is_refused_and_a_cpu_is_not_taken_for_a_gpu(tmp_path):
    wrong = gpu_check("4", out=tmp_path)
    assert wrong.returncode == 2 and "--dry TIER" in wrong.stderr
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    no_gpu = gpu_check("1", out=tmp_path)
    assert no_gpu.returncode == 2 and "no CUDA device here" in no_gpu.stdout
    assert list(json.loads((tmp_path / "tier1.json").read_text())["steps"]) == ["versions"]  # nothing else ran


def test_step_records_say_timed_out_failed_or_ok_with_pytests_counts(tmp_path):
    gpu_check = helper()
    report = tmp_path / "tier.json"
    gpu_check.init(report, "1", "0")
    log = tmp_path / "step.log"
    log.write_text("....F\nFAILED tests/test_x.py::test_y - assert 1 == 2\n1 failed, 4 passed, 2 skipped in 3.1s\n")
    gpu_check.record(report, "pytest_gpu", "1", "2500000000", log, tmp_path / "none.json", "120")
    gpu_check.record(report, "speed", "124", "90000000000", log, tmp_path / "none.json", "90")
    (tmp_path / "fig.json").write_text('{"test_top1": 0.93}')
    gpu_check.record(report, "demo", "0", "30000000000", tmp_path / "none.log", tmp_path / "fig.json", "90")
    steps = json.loads(report.read_text())["steps"]
    assert steps["pytest_gpu"]["status"] == "failed (exit 1)" and steps["pytest_gpu"]["wall_s"] == 2.5
    counts = steps["pytest_gpu"]["figures"]
    assert counts == {"failed": 1, "passed": 4, "skipped": 2, "failures": ["tests/test_x.py::test_y"]}
    assert steps["speed"]["status"] == "timed out after 90 s"
    assert steps["speed"]["last_lines"][-1].startswith("1 failed")  # the end of its output, to see why
    assert steps["demo"] == {"status": "ok", "wall_s": 30.0, "figures": {"test_top1": 0.93}}


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Fashion-MNIST is not installed")
@pytest.mark.parametrize("tier", ["2", "3"])
def test_tiers_2_and_3_run_dry_on_the_cpu(tmp_path, tier):
    done = gpu_check("--dry", tier, out=tmp_path, timeout=900)
    steps = json.loads((tmp_path / f"tier{tier}.json").read_text())["steps"]
    assert done.returncode == 0 and all(s["status"] == "ok" for s in steps.values()), steps
    if tier == "2":
        assert {"speed_resnet20_compiled", "speed_resnet50", "speed_resnet50_compile"} <= steps.keys()
    else:
        arms = steps["time_to_accuracy"]["figures"]["arms"]
        assert set(arms) == {"resnetlab", "bare"} and all(0 <= a["test_top1"] <= 1 for a in arms.values())
        assert {"fashion_mnist_gpu_fast", "fashion_mnist_gpu_best"} <= steps.keys()
