"""The search: claim a trial, run it, and again, until the study holds `trials` trials or the wall-clock budget
cannot fit another; then the ending (ending.py). Every process that runs the same command on the same study
takes part (study.py says how they share it)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError, RunStopped, TrainingDiverged
from ..training.config import TrainConfig
from .space import Dimension, default_space, parse_space, recipe_values
from .study import DONE, claim_lock, counted, fail_gone_trials, open_storage, open_study
from .trial import ImpossibleValues, TrialPlan, run_trial

log = logging.getLogger("resnetlab")


@dataclass
class TuneSettings:
    recipe: str | None
    overrides: list[str]  # training settings, as key=value
    space: dict[str, str]  # key -> spec, as given (command line over the recipe's `space:`); {}: the default
    trials: int = 0  # 0: as many as the budget fits
    budget_s: float = 0.0  # 0: no wall-clock limit
    storage: str = ""  # '' : SQLite in the tune directory
    out: str = "tunes"
    name: str = ""
    pruner: str = "auto"
    sampler_seed: int | None = None


@dataclass
class Search:
    settings: TuneSettings
    tune_dir: Path
    plan: TrialPlan
    study: optuna.Study
    storage: Any
    started: float  # perf_counter() at this process's start


PRUNERS = ("auto", "median", "hyperband", "none")


def open_search(settings: TuneSettings, base: TrainConfig, recipe_space: dict[str, Any]) -> Search:
    """Check the settings, make the tune directory, open (or continue) the study."""
    if settings.trials <= 0 and settings.budget_s <= 0:
        raise ConfigError("tune needs trials=N, budget= (such as budget=60m), or both")
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"pruner={settings.pruner!r} is not one of {', '.join(PRUNERS)}")
    refuse_for_tune(base)
    specs = settings.space or recipe_space
    space = parse_space(specs, base) if specs else default_space(base)
    tune_dir = Path(settings.out) / (settings.name or tune_name(settings.recipe, base))
    (tune_dir / "trials").mkdir(parents=True, exist_ok=True)
    recorded = {
        "recipe": settings.recipe or "",
        "overrides": sorted(settings.overrides),
        "space": {d.key: d.spec for d in space},
    }
    plan = TrialPlan(base, space, tune_dir / "trials", say=lambda line: log.info("tune: %s", line))
    chosen_pruner, why = pruner(settings.pruner, space)
    if why:
        plan.say(why)
    with claim_lock(tune_dir):  # two processes starting at once: one creates the database, the other opens it
        storage = open_storage(settings.storage, tune_dir)
        study = open_study(storage, recorded, optuna.samplers.TPESampler(), chosen_pruner)
        # A seeded search draws on from where the study is: a continued tune does not repeat its first values.
        study.sampler = sampler(settings.sampler_seed, len(study.get_trials(deepcopy=False)))
        own = recipe_values(base, space)
        if own and not study.get_trials(deepcopy=False):  # a new study: the recipe's own values first
            study.enqueue_trial(own, user_attrs={"recipe_values": True})
    return Search(settings, tune_dir, plan, study, storage, time.perf_counter())


def refuse_for_tune(base: TrainConfig) -> None:
    """Settings a search cannot use: each trial is one process, is scored on validation, and starts anew."""
    if base.run.nproc > 1:
        raise ConfigError(
            f"run.nproc={base.run.nproc}: tune runs each trial in its own process; to search on several, start "
            "the same tune command in each (they share the study)"
        )
    if base.output.resume:
        raise ConfigError("resume= continues one run; a tune continues by itself: give the same tune command again")
    if base.data.val_fraction <= 0:
        raise ConfigError(
            f"data.val_fraction={base.data.val_fraction}: tune scores trials on validation only; hold out a part of "
            "train, such as val_fraction=0.1"
        )


def tune_name(recipe: str | None, base: TrainConfig) -> str:
    """tunes/<recipe>, or <model>-<data> for settings without a recipe."""
    return Path(recipe).stem if recipe else f"{base.model.name or 'resnet20'}-{Path(base.data.name).name}"


def sampler(seed: int | None, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """TPE. Without a seed each process draws its own start (two processes seeded alike would try the same
    values); with one, a single-process search is repeatable. With several processes each assumes the running
    trials' results are poor (constant liar), so that they do not all try the same promising point."""
    return optuna.samplers.TPESampler(seed=None if seed is None else seed + trials_so_far, constant_liar=True)


def pruner(name: str, space: list[Dimension]) -> tuple[optuna.pruners.BasePruner, str]:
    """The pruner, and a line saying why when "auto" chose none.

    median: stop a trial whose best validation top-1 so far is below the median of the finished trials' at
    the same epoch, from epoch 2 on and once 3 trials have finished. hyperband: successive halving over
    budgets of epochs. Both compare trials at equal epochs, which is fair only when every trial has the same
    schedule: with schedule.epochs in the space, "auto" prunes nothing."""
    if name == "auto":
        if any(d.key == "schedule.epochs" for d in space):
            why = (
                "pruner: none (schedule.epochs is searched: trials of other lengths cannot be compared epoch by epoch)"
            )
            return optuna.pruners.NopPruner(), why
        name = "median"
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1), ""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2), ""  # steps are epochs, from 1
    return optuna.pruners.NopPruner(), ""


def run_trials(search: Search) -> int:
    """Run trials until the study holds `trials` or the budget cannot fit one more; returns how many this
    process ran."""
    ran = 0
    while True:
        with claim_lock(search.tune_dir) as lock:
            for trial in fail_gone_trials(search.study, search.storage):
                search.plan.say(f"trial {trial.number} was running in a process that is gone: queued to run again")
            if not room_for_another(search):
                return ran
            # The trial is created inside optimize; run_trial lets the lock go once it exists.
            try:
                search.study.optimize(
                    lambda t: run_trial(t, search.plan, lock),
                    n_trials=1,
                    catch=(TrainingDiverged, ImpossibleValues),
                    gc_after_trial=True,
                )
            except RunStopped as stopped:  # SIGTERM / Ctrl-C: the trial is resumed when the tune goes on
                go_on = "give the same tune command again to go on: the trial resumes from its checkpoint"
                raise RunStopped(stopped.signum, stopped.run_dir, stopped.where, go_on) from None
        ran += 1


def room_for_another(search: Search) -> bool:
    """Whether another trial starts: fewer than `trials` counted (or a queued retry waits), and (with a budget)
    one more fits in the time left, at the seconds per epoch that trials have taken so far (the first trial always
    starts)."""
    settings, study = search.settings, search.study
    waiting = bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))  # retries: counted, not run yet
    if settings.trials and counted(study) >= settings.trials and not waiting:
        return False
    if not settings.budget_s:
        return True
    left = settings.budget_s - (time.perf_counter() - search.started)
    per_epoch = seconds_per_epoch(study)
    planned = per_epoch * max_epochs(search.plan.base, search.plan.space)
    if left <= 0 or (per_epoch and planned > left):
        search.plan.say(f"budget: {left / 60:.1f} min left, a trial takes about {planned / 60:.1f} min: no more trials")
        return False
    return True


def seconds_per_epoch(study: optuna.Study) -> float:
    """Wall seconds per epoch of the finished trials (start-up and evaluation included), 0 before any."""
    timed = [
        (t.user_attrs["seconds"], t.user_attrs["epochs_trained"])
        for t in study.get_trials(deepcopy=False, states=DONE)
        if t.user_attrs.get("epochs_trained")
    ]
    epochs = sum(n for _, n in timed)
    return sum(s for s, _ in timed) / epochs if epochs else 0.0


def max_epochs(base: TrainConfig, space: list[Dimension]) -> int:
    """The longest trial the space allows, in epochs."""
    for d in space:
        if d.key == "schedule.epochs":
            return int(max(d.values()))
    return base.schedule.epochs
