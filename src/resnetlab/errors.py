"""Errors a user can fix (the CLI prints their one-sentence message and exits with status 2), faults outside
the user's input such as a write the operating system refused (exit 1), and the signal that a run stopped on
request with its checkpoint written (exit 128 + the signal)."""

from __future__ import annotations

import difflib
import errno
import signal
from pathlib import Path


class UserError(ValueError):
    """Bad input from the user: a wrong name, value, path or file. Never a bug in resnetlab."""


class ConfigError(UserError):
    """A configuration value that cannot work; the message names it and what would."""


class OneProcessError(UserError):
    """A user error that one process of several met where the others did not (its node's own copy of the data):
    under torchrun it says it itself, where other user errors are said by process 0 alone."""


class TrainingDiverged(UserError):
    """The loss stopped being a finite number; the last good checkpoint is left as it was."""


def closest(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """The few choices that look most like `name` (for 'did you mean' hints)."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean a or b?)' or '' when nothing is close."""
    near = closest(name, choices)
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def near_path(given: str | Path) -> str:
    """' (did you mean runs/resnet20-fashion-mnist?)' for a path that does not exist but whose folder holds a
    name close to its last part; '' otherwise."""
    path = Path(given).expanduser()
    try:
        siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
    except OSError:
        return ""
    near = closest(path.name, siblings, n=2)
    return f" (did you mean {' or '.join(str(path.parent / n) for n in near)}?)" if near else ""


def resume_with(run_dir: Path | str) -> str:
    """How to carry on from a run's checkpoint, as every message that suggests it says it."""
    return f"resume with: resnetlab train resume={run_dir}"


class RunStopped(Exception):
    """A run stopped on request with its checkpoint written; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, run_dir: Path | None, where: str, next_step: str = "") -> None:
        self.signum, self.run_dir, self.where = signum, run_dir, where
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        next_step = next_step or (resume_with(run_dir) if run_dir else "")
        super().__init__(f"stopped by {name} at {where}, checkpoint written{'; ' if next_step else ''}{next_step}")


class Fault(Exception):
    """Something went wrong outside the user's input (a refused write, a file changed under a run): the CLI prints
    its one sentence and exits 1. `next_step` (how to carry on, e.g. the resume command) may be set by whoever
    knows it."""

    exit_code = 1
    next_step: str | None = None


class WriteFailed(Fault):
    """The operating system refused a write (no space, quota, permission); the file it would replace is intact."""

    def __init__(self, path: Path, err: OSError, next_step: str | None = None) -> None:
        self.path, self.errno, self.next_step = Path(path), err.errno, next_step
        self.reason = (err.strerror or str(err)).lower()
        super().__init__(self.reason)

    def __str__(self) -> str:
        if self.errno == errno.EROFS:  # the folder itself cannot change: resuming there would fail again
            advice = f"copy {self.path.parent} to a writable folder and carry on from the copy"
        else:
            fix = {
                errno.ENOSPC: "free some space",
                errno.EDQUOT: "free some space",
                errno.EACCES: f"make {self.path.parent} writable",
            }.get(self.errno or 0, "check the folder")
            advice = f"{fix}, then {self.next_step or 'run again'}"
        return f"{self.reason} while writing {self.path}; nothing was replaced ({advice})"
