"""A run's fourth phase: start afresh in a new run directory, or restore exactly where the checkpoint left
off; then say what runs (the run's first lines) and write its config."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import RunState
from ..data import Dataset
from ..errors import UserError, WriteFailed
from ..files import atomic_write, chosen_output, remove_orphan_temporaries
from ..models.summary import count_params
from .config import TrainConfig
from .distributed import RUN_ID_FILE, mark_run
from .optim import describe_optimization, total_steps
from .report import say
from .run_data import RunData
from .session import Session
from .trainer import Trainer


def new_run_dir(cfg: TrainConfig) -> Path:
    """runs/<name>, or <name>-2, -3, ... : an existing run is never overwritten."""
    base = Path(cfg.output.out) / (cfg.output.name or f"{cfg.model.name}-{Path(cfg.data.name).name}")
    path, n = base, 1
    with chosen_output(base):  # a read-only folder, or out= naming a file: one sentence asking for another out=
        while True:
            try:
                path.mkdir(parents=True, exist_ok=False)
                return path
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")


def start_or_restore(session: Session, trainer: Trainer) -> tuple[RunState, Path, dict[str, list]]:
    """The run's state and directory, new or the checkpoint's (its weights, optimizer and random states back in
    place, so that the run goes on as if never stopped), and the arithmetic settings a resume changed."""
    world, device, precision = session.world, session.device, session.precision
    # What "auto" became here: a resume on other hardware may resolve it differently (not bit-identical).
    resolved = {"device": device.type, "precision": precision.name, "channels_last": precision.channels_last}
    if world.size > 1:
        resolved["processes"] = world.size
    if trainer.graphs:
        resolved["cuda_graphs"] = True
    resumed, run_dir, changed = session.resumed, session.run_dir, dict(session.changed)
    if resumed is None:
        state = RunState(resolved=resolved)
        if world.is_main:
            run_dir = run_dir if session.restarted and run_dir else new_run_dir(session.cfg)
            mark_run(run_dir)
    else:
        assert run_dir is not None
        state = resumed.state.for_rank(world.rank)
        trainer.restore(resumed)
        resumed.rng.restore(world, device)
        # summary.json is on process 0's disk alone when nodes share none: its answer holds for every process
        if world.from_main(lambda: state.epoch >= trainer.epochs and (run_dir / "summary.json").is_file()):
            raise UserError(
                f"{run_dir} already finished its {trainer.epochs} epochs; to train on, start a new run with "
                f"init={run_dir}"
            )
        if state.resolved not in ({}, resolved):
            changed["resolved"] = [state.resolved, resolved]
        # DistributedDataParallel reduces its first step's gradients in one bucket, later steps' in buckets rebuilt
        # in backward's order; a ring all-reduce over three or more processes sums each element in an order set by
        # its place in the bucket, so a resumed run's first step rounds otherwise (two: a + b is b + a).
        if world.size > 2:
            changed["gradient sums"] = ["in DDP's rebuilt buckets", "in one bucket at the first step"]
        state.resolved = resolved
        if changed:
            state.history.append({"resumed_at_step": state.step, "changed": changed})
    run_dir = world.broadcast(run_dir)
    assert run_dir is not None
    return state, run_dir, changed


def announce(
    session: Session, data: RunData, trainer: Trainer, state: RunState, run_dir: Path, changed: dict[str, list]
) -> None:
    """Rank 0 writes the resolved config and says what runs: model, data, device, arithmetic, split, changes."""
    cfg, device, precision, splits = session.cfg, session.device, session.precision, data.splits
    if not session.world.is_main:
        return
    if session.resumed is not None:
        remove_orphan_temporaries(run_dir)  # what writes killed mid-way (kill -9, a power cut) left behind
    try:
        atomic_write(run_dir / "config.yaml", lambda tmp: tmp.write_text(cfg.to_yaml()))
    except WriteFailed:  # a full disk at the first file: a new run leaves no empty directory behind
        if session.resumed is None and not session.restarted:
            remove_new_run_dir(run_dir)
        raise
    say(cfg, f"run {run_dir}  ({'resuming at epoch ' + str(state.epoch + 1) if session.resumed else 'new'})")
    sizes = ", ".join(
        f"{len(d):,} {n}" for n, d in (("train", data.train), ("val", splits.val), ("test", splits.test)) if d
    )
    say(
        cfg,
        f"{cfg.model.name}: {count_params(trainer.model):,} parameters; {data.train.info.name}: {sizes} images of "
        f"{image_shape(data.train)}; device {device}, {precision.name}"
        f"{', channels_last' if precision.channels_last else ''} ({precision.reason}); "
        f"{trainer.epochs} epochs of {trainer.steps_per_epoch} steps",
        force=True,  # facts, kept under quiet=true (which hides progress)
    )
    test = ""
    if splits.test:
        off = "not scored (output.score_test=false)"
        test = "; the test split is " + ("scored once, at the end" if cfg.output.score_test else off)
    say(cfg, splits.record.describe() + test, force=True)
    say(cfg, f"augmentations: {data.train_loader.augment.describe()}", force=True)
    total = total_steps(cfg.schedule, trainer.steps_per_epoch)
    say(cfg, describe_optimization(cfg.optim, cfg.schedule, trainer.multiplier, total), force=True)
    say(cfg, f"training images: {data.train_loader.residency.reason}")
    if device.type == "cuda":
        say(cfg, f"CUDA graphs {trainer.graphs_why}")
    if changed:
        what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        say(cfg, f"resumed with other arithmetic ({what}): the result will not be bit-identical", force=True)
    if trainer.init_line:
        say(cfg, trainer.init_line, force=True)


def remove_new_run_dir(run_dir: Path) -> None:
    """Remove a run directory this session made, if it holds nothing but the torchrun job's marker."""
    contents = list(run_dir.iterdir())
    if all(p.name == RUN_ID_FILE for p in contents):
        for p in contents:
            p.unlink()
        run_dir.rmdir()


def image_shape(data: Dataset) -> str:
    """'28x28x1', or for a folder cached larger than the network's input '256x256x3 (cropped to 224x224)'."""
    stored = "x".join(map(str, data.images.shape[1:]))
    view = data.view()
    return stored if view == tuple(data.images.shape[1:3]) else f"{stored} (cropped to {view[0]}x{view[1]})"
