"""resume=RUN: continue a run exactly as it was started, and say so when that cannot be bit for bit.

A setting given with resume= is one of three kinds (setting_kind, below):
- it changes what is learned (model, data, optimisation, schedule, augmentation, seed, init): when it
  differs from the run's, resuming is refused before anything is written, naming both values;
- it changes only the arithmetic (device, precision, layout, compile, threads): applied, recorded in the
  run's history, and the run says once that it will not be bit-identical to an uninterrupted one;
- it changes nothing computed (quiet, checkpoint frequency, TensorBoard): applied silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint
from ..data.sources import same_data
from ..errors import ConfigError, UserError
from ..records import SplitRecord
from .config import TrainConfig, get, validate
from .settings import from_dict, given_keys

# The settings that change only the arithmetic, and those that change nothing computed; every other one
# changes what is learned.
ARITHMETIC_KEYS = (
    "run.device",
    "run.precision",
    "run.channels_last",
    "run.compile",
    "run.cuda_graphs",
    "run.threads",
    "run.nproc",
    "run.backend",
)
DISPLAY_KEYS = (
    "data.stream",  # where the images are read from, not what they are
    "data.tta",  # an extra figure at the end, nothing learned
    "run.quiet",
    "run.checkpoint_every",
    "run.checkpoint_minutes",
    "run.log_every",
    "output.tensorboard",
    "output.out",
    "output.name",
    "output.resume",
    "output.score_test",  # whether the end scores test: nothing learned depends on it
)


def setting_kind(dotted: str) -> str:
    """'learning', 'arithmetic' or 'display' (see the module's docstring)."""
    if dotted in ARITHMETIC_KEYS:
        return "arithmetic"
    if dotted in DISPLAY_KEYS:
        return "display"
    return "learning"


def _same(key: str, mine: Any, theirs: Any) -> bool:
    return same_data(mine, theirs) if key == "data.name" else mine == theirs


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_same_split(checkpoint: Checkpoint, record: SplitRecord, run_dir: Path) -> None:
    """A resumed run must train and select on the images it started with."""
    old = checkpoint.weights_meta.split if checkpoint.weights_meta else None
    if old is None:
        raise UserError(
            f"{run_dir} was started before resnetlab recorded its data split (its validation images, if any, were "
            f"chosen another way), so it cannot go on with the same images; start a new run from its weights with "
            f"init={run_dir}"
        )
    differ = old.differences(record)
    if differ:
        raise UserError(
            f"the data of {run_dir} is not what it started with ({'; '.join(differ)}), so resuming would train or "
            f"select on other images; restore the data, or start a new run from its weights with init={run_dir}"
        )


def resumed_config(cfg: TrainConfig) -> tuple[TrainConfig, Checkpoint, Path, dict[str, list[Any]]]:
    """(the run's saved config with this session's permitted settings, its checkpoint, its directory,
    {key: [run's value, new value]} of the arithmetic settings that changed)."""
    path = Path(cfg.output.resume).expanduser()
    checkpoint = Checkpoint.load(path)
    run_dir = path if path.is_dir() else path.parent
    saved = from_dict(checkpoint.config)
    conflicts, arithmetic = [], {}
    for key in given_keys(cfg):
        mine, theirs = get(cfg, key), get(saved, key)
        if key == "output.resume" or _same(key, mine, theirs):
            continue
        kind = setting_kind(key)
        if kind == "learning":
            conflicts.append(f"{key} {_show(theirs)} (run) vs {_show(mine)} (given)")
            continue
        section, name = key.split(".")
        setattr(getattr(saved, section), name, mine)
        if kind == "arithmetic":
            arithmetic[key] = [theirs, mine]
    if conflicts:
        longer = any(c.startswith(("schedule.epochs", "schedule.iterations")) for c in conflicts)
        raise ConfigError(
            f"resume={cfg.output.resume} continues that run as it was started, but {'; '.join(conflicts)}; "
            f"drop {'this setting' if len(conflicts) == 1 else 'these settings'} to resume, or start a new run "
            f"from its weights with init={run_dir}"
            + (" (a longer schedule is a new run: init= with epochs=)" if longer else "")
        )
    saved.output.resume = ""  # validated without it: a fine-tuning run's saved init= is its record, not a conflict
    validate(saved)
    saved.output.resume = str(run_dir)
    return saved, checkpoint, run_dir, arithmetic
