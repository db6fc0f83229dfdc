"""A run's fifth phase: the epochs. `Run.train_epoch` takes the steps (the hot loop, free of host reads but at
its read points); `Run.end_epoch` re-estimates young BatchNorm statistics, evaluates, selects, and writes the
epoch's files; `Run.checkpoint` writes last.pt. One Run object carries what every phase reads."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import Best, Checkpoint, EpochSums, RngState, RunState
from ..errors import RunStopped, TrainingDiverged
from ..evaluation import evaluate
from ..files import save_weights
from .device import autocast
from .distributed import World
from .finetune import apply_freeze, still_frozen
from .norm_stats import reestimate, young_norms
from .report import about, epoch_line, say, write_metrics
from .run_data import RunData
from .session import Session
from .signals import StopSignals
from .tally import NO_STEP, Read
from .trainer import Trainer


@dataclass
class Run:
    session: Session
    data: RunData
    trainer: Trainer
    state: RunState
    run_dir: Path
    writer: Any  # TensorBoard's SummaryWriter, or None
    stop: StopSignals
    wall_start: float = field(default_factory=time.perf_counter)  # perf_counter() at the run's second 0
    saved_at: float = field(default_factory=time.perf_counter)  # when the last checkpoint was written
    estimated: bool = False  # whether the run's length was said (once, early in the run)
    first_read: tuple[float, int] | None = None  # (perf_counter(), step) at this session's first read point

    def checkpoint(self, epoch: int, batch_in_epoch: int) -> None:
        """Everything needed to continue exactly: written atomically, plain types only, finite weights only."""
        world, state, trainer = self.session.world, self.state, self.trainer
        self.saved_at = time.perf_counter()
        state.epoch, state.batch_in_epoch, state.wall_s = epoch, batch_in_epoch, time.perf_counter() - self.wall_start
        rng = RngState.capture(world, self.session.device)  # every rank's, for exact resume (raises if a peer died)
        sums = global_sums(state.partial, world)
        if not world.is_main:
            return
        refuse_non_finite(trainer.model, f"epoch {epoch + (batch_in_epoch > 0)}, step {state.step}", self.run_dir)
        assert trainer.step is not None and rng is not None
        Checkpoint(
            config=self.session.cfg.to_dict(),
            weights_meta=self.data.meta,
            model=trainer.model.state_dict(),
            optimizer=trainer.step.optimizer_state(),
            ema=trainer.ema.state_dict() if trainer.ema is not None else None,
            scaler=trainer.scaler.state_dict(),
            state=replace(state, partial=sums),
            rng=rng,
        ).save(self.run_dir / "last.pt")

    def train_epoch(self, epoch: int, first: int) -> None:
        """The epoch's steps from batch `first` (> 0 when resuming inside it). The host reads the device only at
        the read points: the progress bar's refresh, before a checkpoint, at the epoch's end."""
        cfg, world, trainer, state, stop = self.session.cfg, self.session.world, self.trainer, self.state, self.stop
        assert trainer.step is not None
        step, steps_per_epoch = trainer.step, trainer.steps_per_epoch
        trainer.model.train()
        apply_freeze(
            trainer.model, still_frozen(trainer.frozen, epoch, cfg.finetune.unfreeze_every), cfg.finetune.freeze_bn
        )
        if first == 0:
            state.partial = EpochSums()
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            leave=False,
            disable=True if cfg.run.quiet or not world.is_main else None,  # None: only on a terminal
            desc=f"epoch {epoch + 1}/{trainer.epochs}",
            dynamic_ncols=True,
        )
        tick = time.perf_counter()
        for b, (x, y) in enumerate(self.data.train_loader.epoch(epoch, first), start=first):
            if state.step >= trainer.total_steps:
                break
            step.set_lr(trainer.base_lrs, trainer.multiplier(state.step))
            step(x, y)  # forward, backward, update, EMA, running figures (step.py); eager or a CUDA graph
            state.step += 1
            bar.update(1)
            # Every process reaches the same read points (a step count), except that a single process also
            # stops at once for a signal or the checkpoint clock, which are host-side facts.
            due = bool(cfg.run.checkpoint_every) and state.step % cfg.run.checkpoint_every == 0
            late = (
                bool(cfg.run.checkpoint_minutes)
                and time.perf_counter() - self.saved_at >= 60 * cfg.run.checkpoint_minutes
            )
            ends = b == steps_per_epoch - 1 or state.step >= trainer.total_steps
            alone_now = world.size == 1 and (late or stop.requested)
            if not (due or ends or alone_now or step.tally.pending >= cfg.run.log_every):
                continue
            figures = step.tally.read()
            partial = state.partial
            partial.loss += figures.loss
            partial.correct += figures.correct
            partial.seen += figures.seen
            self.show_progress(bar, partial.seen / max(partial.time + time.perf_counter() - tick, 1e-9), ends)
            # One decision for every process: any rank's signal, clock or non-finite loss counts for all.
            bad_flag = 0.0 if figures.bad_step == NO_STEP else 1.0
            signum, late, bad = world.agree(stop.requested or 0, late, bad_flag)
            if bad:
                lr = trainer.base_lrs[0] * trainer.multiplier(max(figures.bad_step, 0))
                raise diverged(figures, epoch, lr, self.run_dir)
            stop.requested = int(signum) or None
            if ((due or late) and b + 1 < steps_per_epoch) or stop.requested:
                partial.time += time.perf_counter() - tick
                tick = time.perf_counter()
                self.checkpoint(epoch, b + 1)
                if stop.requested:
                    bar.close()
                    raise RunStopped(stop.requested, self.run_dir, f"epoch {epoch + 1}, step {state.step}")
        bar.close()
        state.partial.time += time.perf_counter() - tick

    def show_progress(self, bar: tqdm, rate: float, ends: bool) -> None:
        """The progress bar's figures at a read point (`rate`: this process's training images/s), with the time
        the run has left; early in the run, one line with its estimated length: at the second read point, from
        the steps since the first (the first steps are slower: memory is allocated, kernels are chosen), or at
        the first when the epoch ends there."""
        partial, world, state = self.state.partial, self.session.world, self.state
        bar.set_postfix(
            loss=f"{partial.loss / max(partial.seen, 1):.4f}",
            acc=f"{100 * partial.correct / max(partial.seen, 1):.2f}%",
            img_s=f"{rate:.0f}",
            run_left=about(self.seconds_left(rate * world.size)),
        )
        if self.estimated or not world.is_main:
            return
        now = (time.perf_counter(), state.step)
        if self.first_read is None and not ends:
            self.first_read = now
            return
        if self.first_read is not None and now[1] > self.first_read[1]:
            steps_per_s = (now[1] - self.first_read[1]) / max(now[0] - self.first_read[0], 1e-9)
            rate = steps_per_s * self.session.cfg.optim.batch_size / world.size
        self.estimated = True
        length = about(now[0] - self.wall_start + self.seconds_left(rate * world.size))
        speed = f"{rate * world.size:,.0f} training images/s"
        say(self.session.cfg, f"estimated length of the run: {length} on this machine ({speed}; the progress bar "
                              "keeps the estimate up to date)", force=True)  # fmt: skip

    def seconds_left(self, train_rate: float) -> float:
        """The run's remaining seconds at `train_rate` training images/s (all processes): the steps left, and an
        evaluation of the watched split after each epoch left and of the test split once, counted at three times
        the training rate (a forward pass alone, about a third of a step's arithmetic)."""
        trainer, state, data = self.trainer, self.state, self.data
        images = (trainer.total_steps - state.step) * self.session.cfg.optim.batch_size
        epochs_left = trainer.epochs - state.epoch
        watched_split = data.splits.part(data.watch_split) if data.watch_split else None
        watched = len(watched_split) if watched_split is not None else 0
        scored = len(data.splits.test) if data.splits.test is not None else 0
        return images / max(train_rate, 1e-9) + (epochs_left * watched + scored) / max(3 * train_rate, 1e-9)

    def end_epoch(self, epoch: int) -> None:
        """Re-estimate young BatchNorm statistics, evaluate, select the best epoch, write the epoch's files and
        the checkpoint; stop here if a signal came during evaluation."""
        cfg, world, trainer, state, data = self.session.cfg, self.session.world, self.trainer, self.state, self.data
        device, dtype = self.session.device, self.session.precision.dtype
        sums = global_sums(state.partial, world)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": trainer.step.lr() if trainer.step else 0.0,
            "train_loss": sums.loss / max(sums.seen, 1),
            "train_acc": sums.correct / max(sums.seen, 1),
        }
        eval_model = trainer.eval_model
        refuse_non_finite(eval_model, f"the end of epoch {epoch + 1}", self.run_dir)
        young = young_norms(trainer.model, any_age=trainer.ema is not None)  # averages still near their start
        if young:
            with autocast(device, dtype):
                reestimate(eval_model, young, (x for x, _ in data.settle_loader.epoch(0)))
        split = data.watch_split
        if data.watch_loader is not None:
            watched = evaluate(eval_model, data.watch_loader, device, dtype, data.num_classes, world.sum)
            row.update({f"{split}_{k}": watched[k] for k in ("loss", "top1", "top5")})
            if not math.isfinite(watched["loss"]):
                raise TrainingDiverged(
                    f"the {split} loss became {watched['loss']} after epoch {epoch + 1}; "
                    f"{kept_checkpoint(self.run_dir)}; lower lr, add warm-up or set optim.grad_clip"
                )
        now = time.perf_counter()
        row.update(images_per_s=sums.seen / max(state.partial.time, 1e-9), epoch_s=state.partial.time)
        row.update(wall_s=now - self.wall_start)
        state.rows.append(row)
        # Selection is on validation only; with nothing held out, the latest epoch is "best" (best = last).
        improved = split != "val" or row["val_top1"] > state.best.top1
        if improved:
            state.best = Best(row["val_top1"] if split == "val" else -1.0, epoch + 1)
        if world.is_main:
            say(cfg, epoch_line(row, trainer.epochs, split), force=True)
            self.write_epoch_files(row, improved)
        self.checkpoint(epoch + 1, 0)
        self.stop.requested = int(world.agree(self.stop.requested or 0)[0]) or None  # a signal during evaluation
        if self.stop.requested:
            raise RunStopped(self.stop.requested, self.run_dir, f"the end of epoch {epoch + 1}")

    def write_epoch_files(self, row: dict[str, Any], improved: bool) -> None:
        """best.safetensors (when the epoch is the best so far), last.safetensors, metrics.csv, TensorBoard."""
        weights = self.trainer.eval_model.state_dict()
        tagged = self.data.meta.tagged(epoch=row["epoch"], val_top1=row.get("val_top1"))
        if improved:
            selected_on = "val" if self.data.watch_split == "val" else "none: nothing held out, the last epoch"
            save_weights(self.run_dir / "best.safetensors", weights, tagged.tagged(selected_on=selected_on).to_dict())
        save_weights(self.run_dir / "last.safetensors", weights, tagged.to_dict())
        write_metrics(self.run_dir / "metrics.csv", self.state.rows)
        if self.writer is not None:
            for key in row:
                if key not in ("epoch", "step"):
                    self.writer.add_scalar(key, row[key], row["epoch"])
            self.writer.flush()


def diverged(figures: Read, epoch: int, lr: float, run_dir: Path | None) -> Exception:
    """The first non-finite training loss, with the step where it appeared (on this process, or another's)."""
    where = (
        f"became {figures.bad_loss} at epoch {epoch + 1}, step {figures.bad_step + 1} (lr {lr:.4g})"
        if figures.bad_step != NO_STEP
        else f"stopped being a finite number on another process (epoch {epoch + 1})"
    )
    return TrainingDiverged(
        f"the training loss {where}; {kept_checkpoint(run_dir)}; lower lr, add warm-up or set optim.grad_clip"
    )


def global_sums(partial: EpochSums, world: World) -> EpochSums:
    """The epoch's running loss, correct count and images seen, summed over the processes."""
    if world.size == 1:
        return replace(partial)
    loss, correct, seen = world.sum(
        torch.tensor([partial.loss, partial.correct, partial.seen], dtype=torch.float64, device=world.device)
    ).tolist()
    return EpochSums(loss, correct, int(seen), partial.time)


def kept_checkpoint(run_dir: Path | None) -> str:
    """What a diverged run leaves to resume from: its last checkpoint, untouched, or none yet."""
    if run_dir is not None and (run_dir / "last.pt").is_file():
        return f"{run_dir / 'last.pt'} is left as it was"
    return "no checkpoint had been written yet, so there is nothing to resume"


def refuse_non_finite(model: nn.Module, where: str, run_dir: Path | None) -> None:
    """No checkpoint or weights file ever holds NaN or Inf: stop the run before writing one."""
    tensors = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    finite = torch.stack([torch.isfinite(t).all() for t in tensors.values()]).tolist()  # one host read
    bad = [name for name, ok in zip(tensors, finite) if not ok]
    if bad:
        raise TrainingDiverged(
            f"the weights stopped being finite numbers ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) at "
            f"{where}; {kept_checkpoint(run_dir)}; lower lr, add warm-up or set optim.grad_clip"
        )
