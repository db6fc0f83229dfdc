"""fit: one training run, told as a story of phases, each in its own file.

    result = fit(load_config("fashion_mnist_fast"))
    print(result.run_dir, result.summary["test_top1"])

1. session.py    settings, process group, device and arithmetic, what to resume or initialise from
2. run_data.py   the splits (train, a held-out validation part, test), normalisation and loaders
3. trainer.py    the model, optimizer, scaler, EMA and schedule
4. start.py      a new run directory, or exactly where the checkpoint left off; the run's first lines
5. epochs.py     each epoch: the steps, then evaluation, selection on validation, files and a checkpoint
6. finish.py     the selected weights scored once on test; plots and summary

Everything random follows from the seeds; a run resumed from its last checkpoint (written at every epoch end,
and every `checkpoint_every` steps or `checkpoint_minutes`) ends with the same weights as one never stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.rowfile import CacheChanged
from ..errors import TrainingDiverged, resume_with
from ..evaluation import evaluate
from .config import TrainConfig
from .device import resolve_device, resolve_precision
from .epochs import Run
from .finish import final_scores, finish
from .report import tensorboard_writer
from .run_data import load_data
from .session import open_session
from .setup import make_loader
from .signals import StopSignals
from .start import announce, start_or_restore
from .trainer import build_trainer

EpochHook = Callable[[dict[str, Any]], None]

__all__ = ["RunResult", "TrainingDiverged", "evaluate", "fit", "make_loader", "resolve_device", "resolve_precision"]


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


def fit(cfg: TrainConfig, on_epoch: EpochHook | None = None) -> RunResult:
    """Train as `cfg` says; returns the run directory, the summary and the per-epoch metrics.

    `on_epoch(row)`, when given, sees each epoch's metrics row (the rows a resumed run had come first) after its
    files and checkpoint are written; an exception it raises ends the run there (tune's pruner does so).

    Under torchrun, every process calls this: they join one process group (distributed.py), share each
    global batch and agree at every step. SIGTERM / SIGINT stop the run at the next step with a checkpoint
    written (RunStopped, see signals.py)."""
    with StopSignals() as stop, contextlib.ExitStack() as leaving:
        return _fit(cfg, stop, leaving, on_epoch or (lambda row: None))


def _fit(cfg: TrainConfig, stop: StopSignals, leaving: contextlib.ExitStack, on_epoch: EpochHook) -> RunResult:
    session = open_session(cfg, leaving)  # nothing is written before the data is known to be there
    data = load_data(session)
    trainer = build_trainer(session, data)
    state, run_dir, changed = start_or_restore(session, trainer)
    trainer.ready(session, state.step)
    announce(session, data, trainer, state, run_dir, changed)
    writer = tensorboard_writer(run_dir, session.cfg) if session.world.is_main else None
    run = Run(session, data, trainer, state, run_dir, writer, stop, wall_start=time.perf_counter() - state.wall_s)
    start_epoch, start_batch = state.epoch, state.batch_in_epoch
    for row in list(state.rows):
        on_epoch(row)
    with resumable(run_dir):
        for epoch in range(start_epoch, trainer.epochs):
            run.train_epoch(epoch, first=start_batch if epoch == start_epoch else 0)
            run.end_epoch(epoch)
            on_epoch(state.rows[-1])
        scores = final_scores(run)  # every process scores its share of the final split
    if not session.world.is_main:
        return RunResult(run_dir, {}, state.rows)  # rank 0 writes the summary
    return RunResult(run_dir, finish(run, scores, time.perf_counter() - run.wall_start), state.rows)


@contextlib.contextmanager
def resumable(run_dir: Path) -> Iterator[None]:
    """A cache that changed under the run stops it (rowfile.py); the message says how to carry on from the run's
    checkpoint, when it has one."""
    try:
        yield
    except CacheChanged as err:
        if (run_dir / "last.pt").is_file():
            err.next_step = resume_with(run_dir)
        raise
