"""SIGTERM and SIGINT (what schedulers and Ctrl-C send) end a run at the next step boundary, checkpointed.

    with StopSignals() as stop:
        for step ...:
            ...
            if stop.requested:
                checkpoint(...)
                raise RunStopped(stop.requested, run_dir, where)

The handler only sets a flag, so a signal never lands in the middle of a write; the loop checks the flag
after each step and at the end of each epoch, writes `last.pt` and raises RunStopped, which the CLI turns
into a one-line message saying how to resume and exit status 128 + signal (143 for SIGTERM, 130 for
SIGINT). A second Ctrl-C stops at once (KeyboardInterrupt), as users expect. Handlers can only be set from
the main thread; elsewhere (a library call from a worker thread) the defaults stay.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from ..errors import RunStopped

__all__ = ["RunStopped", "StopSignals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context in which SIGTERM / SIGINT request a stop at the next step instead of killing the process."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the step to end
        self.requested = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
