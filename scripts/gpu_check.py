"""The Python half of scripts/gpu-check.sh: versions, data, and the tier's JSON of step results.

Each command is one small job the shell script calls between its steps:

  init JSON TIER DRY                     start the tier's JSON
  versions FIG                           Python, torch, CUDA, cuDNN, GPU, and which helper packages import
  find-data CARRIED                      where resnetlab finds Fashion-MNIST (exit 1 with what to carry if nowhere)
  prepare CARRIED                        copy Fashion-MNIST's four .gz files into CARRIED (a git-ignored folder)
  record JSON STEP RC WALL_NS LOG FIG LIMIT   a step's status, wall time and figures (FIG's, or pytest's counts)
  skip JSON STEP WHY                     a step that did not run, and why
  passed JSON STEP                       print 1 if the step passed, else 0
  run-figures RUNS FIG                   the figures of the one resnetlab run under RUNS (its summary.json)
  summary JSON                           one line a step, for the end of the output

It imports no more than the standard library, apart from `versions` and the data commands.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

# Packages the checks use beyond torch, by distribution name (read from their metadata: importing them all
# would cost seconds).
HELPERS = ("torchvision", "timm", "pytest", "PyYAML", "tqdm", "matplotlib", "safetensors", "onnxruntime", "hypothesis")


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def save(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")  # whole or not at all: a step killed mid-write leaves the last one
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def init(path: Path, tier: str, dry: str) -> None:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    save(path, {"tier": int(tier), "dry": dry == "1", "started": started, "steps": {}})


def versions(fig: Path) -> None:
    import torch

    found: dict = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "host_cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    for name in HELPERS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    for key, value in found.items():
        print(f"{key}: {value}")
    fig.write_text(json.dumps(found, indent=2))


def fashion_mnist_files(carried: Path) -> dict[str, Path] | None:
    """The four IDX files in the carried folder, or where resnetlab looks for them ($RESNETLAB_DATA/fashion-mnist,
    Debian's package); None if some are nowhere."""
    from resnetlab.data.idx import locate_idx
    from resnetlab.data.registry import named

    return locate_idx(named("fashion-mnist"), carried)  # type: ignore[arg-type]


def find_data(carried: Path) -> int:
    files = fashion_mnist_files(carried)
    if files is None:
        print(
            f"Fashion-MNIST is not here: run `scripts/gpu-check.sh --prepare` where it is, and name {carried} in the "
            "device call's carry"
        )
        return 1
    folder = next(iter(files.values())).parent
    print(f"Fashion-MNIST: {folder}")
    if folder.resolve() != (Path(os.environ.get("RESNETLAB_DATA", "")) / "fashion-mnist").resolve():
        if not (folder.name == "fashion-mnist" or folder.parent.name == "fashion-mnist"):
            print(f"resnetlab may not look in {folder}: set RESNETLAB_DATA to the folder above fashion-mnist/")
    return 0


def prepare(carried: Path) -> int:
    files = fashion_mnist_files(carried)
    if files is None:
        print("Fashion-MNIST is not on this machine: `make demo` or `resnetlab data fetch fashion-mnist` first")
        return 1
    carried.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        if path.parent.resolve() != carried.resolve():
            shutil.copy2(path, carried / path.name)
    size = sum(p.stat().st_size for p in carried.iterdir()) / 2**20
    print(f"Fashion-MNIST's files are in {carried} ({size:.0f} MiB)")
    return 0


COUNTED = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def pytest_counts(log: str) -> dict:
    """pytest's closing counts ("3 failed, 40 passed, 2 skipped in 9.1s") and the names of what failed."""
    counts: dict = {}
    closing = [line for line in log.splitlines() if COUNTED.search(line)]
    for number, what in COUNTED.findall(closing[-1] if closing else ""):
        counts["error" if what.startswith("error") else what] = int(number)
    collected = re.search(r"(\d+) tests? collected", log)
    if collected:
        counts["collected"] = int(collected.group(1))
    failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", log, flags=re.MULTILINE)
    if failures:
        counts["failures"] = failures[:30]
    return counts


def record(path: Path, step: str, rc: str, wall_ns: str, log: Path, fig: Path, limit: str) -> None:
    code = int(rc)
    if code == 0:
        status = "ok"
    elif code in (124, 137):  # timeout's status, or its KILL after the grace period
        status = f"timed out after {limit} s"
    else:
        status = f"failed (exit {code})"
    text = log.read_text(errors="replace") if log.is_file() else ""
    figures = load(fig) if fig.is_file() else {}
    if "pytest" in step:
        figures.update(pytest_counts(text))
    entry = {"status": status, "wall_s": round(int(wall_ns) / 1e9, 1), "figures": figures}
    if code != 0:
        entry["last_lines"] = text.splitlines()[-15:]
    data = load(path)
    data.setdefault("steps", {})[step] = entry
    save(path, data)
    print(f"-- {step}: {status} in {entry['wall_s']} s")


def skip(path: Path, step: str, why: str) -> None:
    data = load(path)
    data.setdefault("steps", {})[step] = {"status": f"skipped: {why}", "wall_s": 0.0, "figures": {}}
    save(path, data)


def passed(path: Path, step: str) -> None:
    print(1 if load(path).get("steps", {}).get(step, {}).get("status") == "ok" else 0)


def run_figures(runs: Path, fig: Path) -> int:
    summaries = sorted(runs.glob("*/summary.json"))
    if len(summaries) != 1:
        print(f"expected one run with a summary.json under {runs}, found {len(summaries)}")
        return 1
    summary = json.loads(summaries[0].read_text())
    keep = ("model", "epochs", "best_epoch", "best_val_top1", "result_split", "test_top1", "test_top5", "wall_s")
    keep += ("train_images_per_s", "device", "precision", "channels_last", "seed", "parameters")
    fig.write_text(json.dumps({key: summary.get(key) for key in keep}, indent=2))
    return 0


def brief(figures: dict) -> str:
    """The figures worth a glance: speed tables as bare/resnetlab images/s, arms as top-1 and wall time."""
    parts = []
    for model, table in figures.get("models", {}).items():
        for mode, r in table["modes"].items():
            parts.append(f"{model} {mode} bare/resnetlab {r.get('bare', 0):.0f}/{r.get('resnetlab', 0):.0f} img/s")
    for arm, result in figures.get("arms", {}).items():
        parts.append(f"{arm} {100 * result['test_top1']:.2f}% in {result['wall_s']:.0f} s")
    flat = {k: v for k, v in figures.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(flat.items())[:8]]
    return "; ".join(parts)


def summary(path: Path) -> None:
    data = load(path)
    print(f"tier {data.get('tier')}{' (dry, CPU)' if data.get('dry') else ''}: {path}")
    for step, entry in data.get("steps", {}).items():
        print(f"  {step:<34}{entry['status']:<26}{entry['wall_s']:>7} s  {brief(entry.get('figures', {}))}")


COMMANDS = {  # name: (function, which arguments are paths)
    "init": (init, (0,)),
    "versions": (versions, (0,)),
    "find-data": (find_data, (0,)),
    "prepare": (prepare, (0,)),
    "record": (record, (0, 4, 5)),
    "skip": (skip, (0,)),
    "passed": (passed, (0,)),
    "run-figures": (run_figures, (0, 1)),
    "summary": (summary, (0,)),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: gpu_check.py {{{'|'.join(COMMANDS)}}} ARGS (see the docstring)")
    function, path_args = COMMANDS[sys.argv[1]]
    args = [Path(a) if i in path_args else a for i, a in enumerate(sys.argv[2:])]
    sys.exit(function(*args) or 0)
