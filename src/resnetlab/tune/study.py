"""Where a tune's trials are kept (an Optuna study), and how processes share it.

- Storage: SQLite in the tune's directory by default; any database URL Optuna supports (postgresql://...,
  mysql://...) or `journal:PATH` (Optuna's journal file, on a disk the machines share) for several machines.
- The study records the settings it searches (recipe, overrides, space): the same command continues it, another
  one is refused rather than mixed in.
- Claiming a trial: under a lock on the tune directory, a process counts the trials that are done, running or
  waiting, and starts one only while fewer than `trials` are; so two processes on one machine never run more
  trials between them than asked. (Processes on other machines share the study but not the lock: each may start
  one trial more than asked, when they claim at the same moment.)
- Trials that were interrupted (a stopped or killed process) are retried once their process is known to be gone:
  at once on this machine (its process id is no longer alive), after Optuna's heartbeat grace period on another
  (database storages only). The retry resumes the trial's run from its checkpoint, or reruns it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import UserError

STUDY_NAME = "resnetlab"
HEARTBEAT_S = 30  # a running trial's process writes a heartbeat this often (database storages)
GRACE_S = 120  # and is taken for dead when none came for this long
MAX_ATTEMPTS = 3  # a trial interrupted this many times is not retried again
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
COUNTED = (*DONE, TrialState.RUNNING, TrialState.WAITING)


def open_storage(url: str, tune_dir: Path) -> Any:
    """An Optuna storage for `url` ('' : SQLite in the tune directory; 'journal:PATH'; a database URL)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(Path(url.removeprefix("journal:")).expanduser())))
    url = url or f"sqlite:///{(tune_dir / 'study.db').resolve()}"
    # SQLite lets one writer in at a time; a process waits up to a minute for its turn instead of failing.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: stable in use
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
        except (ImportError, ValueError, optuna.exceptions.StorageInternalError) as err:
            raise UserError(
                f"storage={url} could not be opened ({str(err).splitlines()[0]}); give a database URL such as "
                "sqlite:///tune.db, or journal:PATH for Optuna's journal file"
            ) from None


def open_study(storage: Any, settings: dict[str, Any], sampler: Any, pruner: Any) -> optuna.Study:
    """The tune's study, created or continued; one that searches other settings is refused."""
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize",  # validation top-1
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", settings)
    elif recorded != settings:
        differ = [k for k in settings if settings.get(k) != recorded.get(k)]
        raise UserError(
            f"this tune's study searches other settings ({', '.join(differ)}: {recorded[differ[0]]!r} there, "
            f"{settings[differ[0]]!r} now); give the same command to continue it, or name= for a new tune"
        )
    return study


@contextlib.contextmanager
def claim_lock(tune_dir: Path) -> Iterator[Lock]:
    """The tune directory's lock, held while a process decides on a trial and creates it (see the docstring)."""
    with open(tune_dir / "claim.lock", "a+") as f:
        lock = Lock(f.fileno())
        lock.acquire()
        try:
            yield lock
        finally:
            lock.release()


class Lock:
    """An exclusive lock on an open file that may be released early (once the claimed trial exists)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.held = fd, False

    def acquire(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        if self.held:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False


def owner() -> dict[str, Any]:
    """Who runs a trial: recorded on it, so that another process can tell when its runner is gone."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def fail_gone_trials(study: optuna.Study, storage: Any) -> list[FrozenTrial]:
    """Mark running trials whose process is gone as failed: this machine's at once (their process id is not
    alive), other machines' after the heartbeat's grace period. Returns those marked here."""
    if isinstance(storage, optuna.storages.RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    here, gone = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        runner = trial.user_attrs.get("owner", {})
        if runner.get("host") == here and not alive(int(runner.get("pid", 0))):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            gone.append(trial)
    return gone


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that id: alive
        return True
    return True


def interrupted(trial: FrozenTrial) -> bool:
    """A failed trial that was stopped or killed (not one whose settings failed: those fail again)."""
    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def queue_retries(study: optuna.Study) -> list[FrozenTrial]:
    """Queue a retry (the same values, the same run directory) of every interrupted trial not retried yet."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    queued = []
    for trial in trials:
        attempt = trial.user_attrs.get("attempt", 1)
        if interrupted(trial) and trial.number not in retried and attempt < MAX_ATTEMPTS and trial.params:
            carried = {"retry_of": trial.number, "attempt": attempt + 1, "run_dir": trial.user_attrs.get("run_dir")}
            study.enqueue_trial(trial.params, user_attrs=carried, skip_if_exists=False)
            queued.append(trial)
    return queued


def counted(study: optuna.Study) -> int:
    """Trials that count towards trials=N: done, running, waiting, or failed for good (settings that cannot
    train, such as a learning rate that diverges). An interrupted trial counts through its retry."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in COUNTED or failed_for_good(t))


def failed_for_good(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and not interrupted(trial)
