"""One trial: an ordinary resnetlab run (its own run directory under the tune's `trials/`, resumable, the same
files) with the trial's values set and test scoring off, scored by its best validation top-1. After each epoch
the validation figure goes to the pruner, which may stop the run there."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from ..errors import ConfigError, RunStopped, UserError
from ..training.config import TrainConfig
from ..training.loop import fit
from ..training.report import read_metrics
from ..training.settings import apply, load_config
from .space import Dimension, applied
from .study import Lock, owner, queue_retry


@dataclass
class TrialPlan:
    base: TrainConfig  # the recipe with the command's overrides
    space: list[Dimension]
    trials_dir: Path
    say: Any  # print one line (the tune's voice)


class ImpossibleValues(ConfigError):
    """A trial's values that are each possible but not together: the trial fails, the search goes on."""


def run_trial(trial: optuna.Trial, plan: TrialPlan, lock: Lock) -> float:
    """Optuna's objective: the trial's run, its best validation top-1 returned (raises TrialPruned when the
    pruner stops it). `lock` (the claim) is let go once the trial exists in the study with its runner."""
    trial.set_user_attr("owner", owner())
    lock.release()
    params = {d.key: d.suggest(trial) for d in plan.space}
    retry_of = trial.user_attrs.get("retry_of")
    trial.set_user_attr("threads", torch.get_num_threads())
    started, epochs = time.perf_counter(), []
    try:
        cfg, run_dir, how = trial_config(plan, trial.number, params, retry_of, trial.user_attrs.get("run_dir"))
        trial.set_user_attr("run_dir", str(run_dir))
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        own = " (the recipe's own values)" if trial.user_attrs.get("recipe_values") else ""
        plan.say(f"trial {trial.number}: {shown}{own}{how}")
        replayed = len(read_metrics(run_dir / "metrics.csv")) if (run_dir / "metrics.csv").is_file() else 0
        summary = finished_summary(run_dir)
        if summary is None:  # the usual case; a retry of a trial whose run had finished just reads it
            summary = fit(cfg, on_epoch=lambda row: report_epoch(trial, row, epochs)).summary
        else:
            for row in read_metrics(run_dir / "metrics.csv"):
                report_epoch(trial, row, epochs)
    except optuna.TrialPruned as pruned:
        plan.say(f"trial {trial.number}: pruned ({pruned})")
        raise
    except (RunStopped, KeyboardInterrupt):  # a stop on request: queued to go on from the checkpoint
        queue_retry(trial.study, trial, stopped=True)
        raise
    except UserError as err:  # settings that cannot train (a diverging lr): they would fail again, no retry
        trial.set_user_attr("error", str(err))
        plan.say(f"trial {trial.number}: failed: {err}")
        raise
    finally:  # how long the epochs trained by this process took, for the budget's plan
        trial.set_user_attr("seconds", time.perf_counter() - started)
        trial.set_user_attr("epochs_trained", max(len(epochs) - replayed, 0))
    for key in ("precision", "channels_last", "train_images_per_s", "best_epoch"):
        trial.set_user_attr(key, summary[key])
    value = summary["best_val_top1"]
    plan.say(f"trial {trial.number}: val top-1 {100 * value:.2f}% (epoch {summary['best_epoch']}) -> {run_dir}")
    return value


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a trial's run that finished (its process died before the study heard of it), or None."""
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def trial_config(
    plan: TrialPlan, number: int, params: dict[str, Any], retry_of: int | None, retry_dir: str | None
) -> tuple[TrainConfig, Path, str]:
    """The trial's settings, its run directory, and how it starts: afresh, or (a retry of an interrupted trial,
    whose run is in `retry_dir`) from that run's checkpoint, or from the start where it left none."""
    if retry_of is not None and retry_dir and (Path(retry_dir) / "summary.json").is_file():
        return plan.base, Path(retry_dir), f" (trial {retry_of}'s run had finished: its result is read)"
    if retry_of is not None and retry_dir and (Path(retry_dir) / "last.pt").is_file():
        cfg = load_config(None, [f"resume={retry_dir}"])  # the run's own settings come from its checkpoint
        apply(cfg, "run.quiet", plan.base.run.quiet)
        return cfg, Path(retry_dir), f" (resumes trial {retry_of}'s run from its checkpoint in {retry_dir})"
    run_dir = (plan.trials_dir / f"trial-{number:03d}").resolve()  # absolute: read by the tune's ending
    if run_dir.exists():
        raise UserError(
            f"{run_dir} already exists, but the study has no trial that made it (was study.db removed?); "
            "give name= for a new tune"
        )
    try:
        cfg = applied(plan.base, params)
    except ConfigError as err:
        raise ImpossibleValues(str(err)) from None
    apply(cfg, "output.out", str(run_dir.parent))
    apply(cfg, "output.name", run_dir.name)
    apply(cfg, "output.score_test", False)
    how = f" (reruns trial {retry_of}: it left no checkpoint)" if retry_of is not None else ""
    return cfg, run_dir, how


def report_epoch(trial: optuna.Trial, row: dict[str, Any], seen: list[int]) -> None:
    """An epoch's validation top-1 to the pruner (`seen` keeps the epochs); stop the run where it says so."""
    value, epoch = row.get("val_top1"), int(row["epoch"])
    seen.append(epoch)
    if value is None:
        return
    trial.report(float(value), epoch)
    if trial.should_prune():
        trial.set_user_attr("pruned_after", epoch)
        raise optuna.TrialPruned(f"val top-1 {100 * value:.2f}% after epoch {epoch}, behind the other trials")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
