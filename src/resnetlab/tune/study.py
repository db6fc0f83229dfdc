"""Where a tune's trials are kept (an Optuna study), and how processes share it.

- Storage: SQLite in the tune's directory by default; any database URL Optuna supports (postgresql://...,
  mysql://...) or `journal:PATH` (Optuna's journal file, on a disk the machines share) for several machines.
- The study records the settings it searches (recipe, overrides, space): the same command continues it, another
  one is refused rather than mixed in.
- Claiming a trial: under a lock on the tune directory, a process counts the trials that are done, running or
  waiting, and starts one only while fewer than `trials` are; so two processes on one machine never run more
  trials between them than asked. (Processes on other machines share the study but not the lock: each may start
  one trial more than asked, when they claim at the same moment.)
- A trial that was interrupted is retried once: when a signal stopped it, at once (its process queues the
  retry); when its process died, as soon as another process claims a trial: on this machine by its process
  id, on another through Optuna's heartbeat (a shared database; with a journal file, only on its own machine).
  The retry resumes the trial's run from its checkpoint, or reruns it where it left none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import UserError

STUDY_NAME = "resnetlab"
HEARTBEAT_S = 30  # a running trial's process writes a heartbeat this often (shared databases)
GRACE_S = 120  # and is taken for dead when none came for this long
MAX_ATTEMPTS = 3  # a trial whose process died this many times is not retried again
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
COUNTED = (*DONE, TrialState.RUNNING, TrialState.WAITING)


def open_storage(url: str, tune_dir: Path) -> Any:
    """An Optuna storage for `url` ('' : SQLite in the tune directory; 'journal:PATH'; a database URL).

    A database other than SQLite may be shared by machines: there a trial's process writes a heartbeat, and one
    silent for GRACE_S is taken for dead (and retried). On one machine (SQLite, a journal file) a trial's runner
    is known by its process: no heartbeat, so a process that is merely slow (stopped, suspended) is never
    mistaken for a dead one."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:")).expanduser()
        if not path.parent.is_dir():
            raise UserError(f"storage={url}: the folder {path.parent} does not exist; give a journal file in one")
        return JournalStorage(JournalFileBackend(str(path)))
    url = url or f"sqlite:///{(tune_dir / 'study.db').resolve()}"
    local = url.startswith("sqlite")
    # SQLite lets one writer in at a time; a process waits up to a minute for its turn instead of failing.
    options: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if local else {
        "heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S, "heartbeat_stale_trial_callback": queue_retry,
    }  # fmt: skip
    from sqlalchemy.exc import SQLAlchemyError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's options
        try:
            return optuna.storages.RDBStorage(url, **options)
        except (ImportError, ValueError, SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
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
        key = next(k for k in sorted(set(settings) | set(recorded)) if settings.get(k) != recorded.get(k))
        raise UserError(
            f"this tune's study searches other settings ({key}: {recorded.get(key)!r} there, {settings.get(key)!r} "
            "now); give the same command to continue it, or name= for a new tune"
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
    """Who runs a trial, recorded on it before the claim is let go: the machine, the process and when that
    process started (a process id alone may be reused)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def process_start(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot, with the boot's id ('' where /proc is absent)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return ""
    return f"{boot}:{fields[19]}"  # field 22 of stat: the start time; fields[0] here is field 3


def runner_gone(runner: dict[str, Any]) -> bool:
    """Whether the process recorded as a trial's runner on this machine no longer runs it: no such process,
    or another process under its id."""
    pid = int(runner.get("pid", 0))
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process under that id
        return True
    return bool(runner.get("started")) and process_start(pid) != runner["started"]


def fail_gone_trials(study: optuna.Study, storage: Any) -> list[FrozenTrial]:
    """Under the claim lock: mark this machine's running trials whose process is gone as failed and queue their
    retries; and any trial that still has no runner a minute after its creation (its process died before it
    recorded itself, which takes milliseconds). Other machines' trials are left
    to the heartbeat (shared databases). Returns the trials marked here."""
    here, gone = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        runner = trial.user_attrs.get("owner")
        if runner is None:  # recorded within milliseconds of the trial's creation, unless its process died
            orphan = trial.datetime_start is not None and (datetime.now() - trial.datetime_start).total_seconds() > 60
            if not orphan:
                continue
        elif runner.get("host") != here or not runner_gone(runner):
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                gone.append(trial)
                queue_retry(study, trial)
        except optuna.exceptions.UpdateFinishedTrialError:  # finished meanwhile (told by its own process)
            pass
    return gone


def queue_retry(study: optuna.Study, trial: FrozenTrial | optuna.Trial, stopped: bool = False) -> None:
    """Queue a retry of an interrupted trial: the same values, the same run directory (resumed from its
    checkpoint where it has one). Called once per interruption, by the process that saw it: the trial's own
    (stopped by a signal), or the one that marked it failed. A trial whose process died MAX_ATTEMPTS times is
    not retried again (a stop on request does not count)."""
    deaths = trial.user_attrs.get("deaths", 0) + (0 if stopped else 1)
    if deaths >= MAX_ATTEMPTS or not trial.params:
        return
    carried = {"retry_of": trial.number, "deaths": deaths, "run_dir": trial.user_attrs.get("run_dir")}
    study.enqueue_trial(trial.params, user_attrs=carried, skip_if_exists=False)


def retried(study: optuna.Study) -> set[int]:
    return {t.user_attrs["retry_of"] for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}


def counted(study: optuna.Study) -> int:
    """Trials that count towards trials=N: done, running, waiting, or failed and not retried (settings that
    cannot train, such as a learning rate that diverges). An interrupted trial counts through its retry."""
    again = retried(study)
    return sum(
        1 for t in study.get_trials(deepcopy=False) if t.state in COUNTED or (t.state == TrialState.FAIL and
                                                                              t.number not in again)
    )  # fmt: skip
