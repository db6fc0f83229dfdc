"""A run's first phase: the settings it runs with, its process group and device, its arithmetic, and what it
starts from (a checkpoint to resume, or weights to initialise from)."""

from __future__ import annotations

import contextlib
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from ..checkpoint import Checkpoint
from ..errors import RunStopped, TrainingDiverged, UserError
from ..records import WeightsMeta
from .config import TrainConfig, validate
from .device import Precision, choose_precision, resolve_device
from .distributed import World, continue_after_restart, join
from .resolve import annotated_yaml, resolve

log = logging.getLogger("resnetlab")


@dataclass
class Session:
    cfg: TrainConfig  # resolved: a resumed run's own settings, the data's shape, the init weights' defaults
    world: World
    device: torch.device
    precision: Precision
    resumed: Checkpoint | None = None  # the checkpoint to continue from
    run_dir: Path | None = None  # the resumed run's directory, or (after a torchrun restart) the one to start in
    restarted: bool = False  # run_dir is a restarted group's directory without a checkpoint: start in it
    changed: dict[str, list[Any]] = field(default_factory=dict)  # arithmetic settings a resume changed
    init_state: dict[str, torch.Tensor] = field(default_factory=dict)  # init= weights
    init_meta: WeightsMeta | None = None  # what resnetlab init weights say of themselves (None: foreign)


def open_session(cfg: TrainConfig, leaving: contextlib.ExitStack) -> Session:
    """Validate, find what to resume, join the process group (left again by `leaving`), choose the device and
    arithmetic, seed, and read init weights. Nothing is written yet."""
    validate(cfg)
    # Under torchrun the group is joined first: rank 0 reads what only its disk may hold (a run to resume, init
    # weights) and sends it to the others, whose nodes may share no disk with it.
    world, joined_device = join(cfg.run.backend, resolve_device(cfg.run.device))
    leaving.push(lambda kind, _, tb: leave(world, kind, tb))
    cfg, restarted_in = continue_after_restart(cfg, world)  # torchrun --max-restarts restarted the group: find its run
    resolved = resolve(cfg, world)
    cfg = resolved.cfg
    device = joined_device if world.size > 1 else resolve_device(cfg.run.device)  # a resumed run's own device
    if world.size > 1:
        check_joined_as_resolved(cfg, joined_device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.sync_bn and device.type != "cuda":
        raise UserError("run.sync_bn=true needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU")
    precision = choose_precision(cfg.run.precision, cfg.run.channels_last, device)
    torch.manual_seed(cfg.run.seed)
    if not world.is_main:
        log.setLevel(logging.ERROR)  # one voice: rank 0 reports, the others only fail
    elif not cfg.run.quiet:
        print(annotated_yaml(resolved), flush=True)  # the settings as they will run, and why
    run_dir = restarted_in if restarted_in is not None else resolved.run_dir
    restarted = restarted_in is not None
    return Session(
        cfg, world, device, precision, resolved.resumed, run_dir, restarted, resolved.changed,
        resolved.init_state, resolved.init_meta,
    )  # fmt: skip


def check_joined_as_resolved(cfg: TrainConfig, joined: torch.device) -> None:
    """A run resumed under torchrun joined its process group on the device the command gave; the run's own
    settings, read from its checkpoint afterwards, must name the same kind of device."""
    wanted = resolve_device(cfg.run.device)
    if wanted.type != joined.type:
        raise UserError(
            f"the resumed run trained with run.device={cfg.run.device!r} ({wanted.type}), but this job's processes "
            f"joined on {joined.type}; give run.device={wanted.type} with resume= (or another device, as an "
            "arithmetic change)"
        )


def leave(world: World, kind: type[BaseException] | None, tb: TracebackType | None) -> None:
    """Leave the process group: together after a finished run or a stop every rank agreed on (a signal, a loss
    that is not finite); at once after an error, as a peer may be gone."""
    agreed = kind is None or issubclass(kind, RunStopped | TrainingDiverged)
    if tb is not None and agreed:
        traceback.clear_frames(tb)  # the frames hold the model, and DistributedDataParallel holds the group
    world.leave(together=agreed)
