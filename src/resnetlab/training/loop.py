"""fit and evaluate: one training run, top to bottom.

    result = fit(load_config("fashion_mnist_fast"))
    print(result.run_dir, result.summary["test_top1"])

The order of a run: resolve the config -> read the data (train, a held-out validation part, test) ->
build the model (and load init weights) -> create the run directory -> for every epoch: train, validate,
keep the best weights by validation, write metrics and checkpoints -> score the selected weights on
test, once -> plots and summary. Everything random follows from the seeds; a run resumed from its last
checkpoint (written at every epoch end, and every `checkpoint_every` steps) ends with the same weights
as one never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..checkpoint import Best, Checkpoint, EpochSums, RngState, RunState
from ..data import BatchLoader, Dataset
from ..data.splits import SETTLE, describe, sample
from ..errors import UserError
from ..files import atomic_write, read_weights, remove_orphan_temporaries, save_weights
from ..models.pretrained import load_into, read_state_dict
from ..models.summary import count_macs, count_params
from .config import TrainConfig, validate
from .device import Precision, autocast, choose_precision, resolve_device, resolve_precision
from .distributed import World, continue_after_restart, join, mark_run
from .ema import WeightAverage
from .finetune import apply_freeze, frozen_parts, param_groups, still_frozen
from .norm_stats import BATCHES, reestimate, young_norms
from .optim import build_optimizer, load_optimizer_state, lr_multiplier, total_steps
from .report import plot_confusion, plot_curves, write_json, write_metrics
from .resume import check_same_split, resumed_config
from .setup import (
    build_model,
    load_run_data,
    make_loader,
    normalisation,
    weights_meta,
    with_absolute_data_path,
    with_folder_shape,
    with_init_defaults,
)
from .signals import RunStopped, StopSignals
from .step import TrainStep, graphs_decision
from .tally import NO_STEP, Read, StepTally

__all__ = ["RunResult", "TrainingDiverged", "evaluate", "fit", "make_loader", "resolve_device", "resolve_precision"]

log = logging.getLogger("resnetlab")


class TrainingDiverged(UserError):
    """The loss stopped being a finite number; the last good checkpoint is left as it was."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    device: torch.device,
    dtype: torch.dtype | None,
    num_classes: int,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tta: bool = False,
) -> dict[str, Any]:
    """Loss, top-1, top-5 and the confusion matrix (rows: true class) over every batch of `loader`.

    Under several processes each scores its share of the images and `total` (World.sum) adds up the counts.
    `tta`: score each image by the mean of its and its mirror image's class probabilities."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    seen = torch.zeros((), dtype=torch.int64, device=device)
    k = min(5, num_classes)
    for x, y in loader.epoch(0):
        with autocast(device, dtype):
            logits = model(x)
            mirrored = model(x.flip(3)) if tta else None
        logits = logits.float()
        if mirrored is not None:  # log of the mean probability: what cross-entropy and top-k then read
            logits = ((logits.softmax(1) + mirrored.float().softmax(1)) / 2).log()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        ranked = logits.topk(k, 1).indices  # (B, k)
        top1 += (ranked[:, 0] == y).sum()
        top5 += (ranked == y[:, None]).any(1).sum()
        cells = y * num_classes + ranked[:, 0]
        if confusion.is_cuda:  # CUDA's bincount reads the largest value back to size its output; MPS before
            confusion.index_add_(0, cells, torch.ones_like(y))  # torch 2.9 refuses int64 in index_add_
        else:
            confusion += torch.bincount(cells, minlength=num_classes * num_classes)
        seen += len(y)
    model.train(was_training)
    if total is not None:
        for counts in (loss_sum, top1, top5, confusion, seen):
            total(counts)
    matrix = confusion.view(num_classes, num_classes).cpu().numpy()
    loss, right1, right5, count = torch.stack([loss_sum, top1.double(), top5.double(), seen.double()]).tolist()
    seen = int(count)
    return {
        "loss": loss / max(seen, 1),
        "top1": right1 / max(seen, 1),
        "top5": right5 / max(seen, 1),
        "confusion": matrix,
        "per_class": (np.diag(matrix) / np.maximum(matrix.sum(1), 1)).tolist(),
        "count": seen,
    }


# ---------------------------------------------------------------------------------------------------
# The run


def new_run_dir(cfg: TrainConfig) -> Path:
    """runs/<name>, or <name>-2, -3, ... : an existing run is never overwritten."""
    base = Path(cfg.output.out) / (cfg.output.name or f"{cfg.model.name}-{Path(cfg.data.name).name}")
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def fit(cfg: TrainConfig) -> RunResult:
    """Train as `cfg` says; returns the run directory, the summary and the per-epoch metrics.

    Under torchrun, every process calls this: they join one process group (distributed.py), share each
    global batch and agree at every step. SIGTERM / SIGINT stop the run at the next step with a checkpoint
    written (RunStopped, see signals.py)."""
    with StopSignals() as stop, contextlib.ExitStack() as leaving:
        return _fit(cfg, stop, leaving)


def _fit(cfg: TrainConfig, stop: StopSignals, leaving: contextlib.ExitStack) -> RunResult:
    validate(cfg)
    resumed: Checkpoint | None = None
    run_dir: Path | None = None
    changed: dict[str, list[Any]] = {}
    cfg, restarted_in = continue_after_restart(cfg)  # torchrun --max-restarts: the group restarted, find its run
    if cfg.output.resume:
        cfg, resumed, run_dir, changed = resumed_config(cfg)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    world, device = join(cfg.run.backend, resolve_device(cfg.run.device))
    leaving.push(lambda kind, _, tb: _leave(world, kind, tb))
    if cfg.run.sync_bn and device.type != "cuda":
        raise UserError("run.sync_bn=true needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU")
    precision = choose_precision(cfg.run.precision, cfg.run.channels_last, device)
    torch.manual_seed(cfg.run.seed)
    rank, world_size, is_main = world.rank, world.size, world.is_main
    if not is_main:
        log.setLevel(logging.ERROR)  # one voice: rank 0 reports, the others only fail
    init_state, init_meta = read_state_dict(cfg.output.init) if cfg.output.init and resumed is None else ({}, {})
    cfg, chosen_shape = with_folder_shape(with_absolute_data_path(with_init_defaults(cfg, init_meta)))
    if chosen_shape and is_main:
        _say(cfg, chosen_shape)

    # Data first: a missing dataset fails before a run directory exists.
    splits = world.main_first(lambda: load_run_data(cfg))  # rank 0 builds a folder's cache, the others reuse it
    train_data = splits.train
    assert train_data is not None
    if resumed is not None:
        check_same_split(resumed, splits.record, run_dir)
    if not cfg.data.mean:  # record the normalisation in the config, so that a resumed run uses the same
        cfg.data.mean, cfg.data.std = normalisation(train_data, foreign_init=bool(init_state) and not init_meta)
    mean, std = tuple(cfg.data.mean), tuple(cfg.data.std)
    num_classes, in_chans = len(train_data.classes), int(train_data.images.shape[-1])
    train_loader = make_loader(cfg, train_data, True, device, precision.channels_last, mean, std, rank, world_size)
    if cfg.optim.batch_size > len(train_data):
        raise UserError(
            f"batch_size={cfg.optim.batch_size} is larger than the {len(train_data):,} training images; "
            f"use at most {len(train_data)}"
        )
    if cfg.data.tta == "flip" and not train_loader.augment.hflip:
        raise UserError(
            f"tta=flip scores mirror images, but this run does not flip {train_data.info.name} (digits and letters "
            "change meaning mirrored, or data.hflip=false); use tta=none"
        )
    # Per-epoch figures: on validation, which selects the best epoch; with nothing held out, on test, for
    # display only (nothing is selected on it: the last epoch is the result).
    watch_split = "val" if splits.val is not None else ("test" if splits.test is not None else None)
    watch_data = splits.part(watch_split) if watch_split else None
    watch_loader = (  # each process scores every N-th image; the counts are summed (world.sum)
        make_loader(cfg, watch_data, False, device, precision.channels_last, mean, std, rank, world_size)
        if watch_data is not None
        else None
    )

    # A few fixed, unaugmented training batches for re-estimating young BatchNorm statistics, shuffled as training
    # batches are: in file order a folder's batches hold one class each, and an average of such batches'
    # variances misses the spread between classes (the model then scored near chance in evaluation mode).
    settle_data = sample(train_data, BATCHES * cfg.optim.batch_size, cfg.data.split_seed, SETTLE)  # every class
    settle_loader = BatchLoader(
        settle_data,
        cfg.optim.batch_size,
        train=True,  # a seeded random order, no augmentation (augment=None), the same on every rank
        drop_last=False,
        mean=mean,
        std=std,
        device=device,
        channels_last=precision.channels_last,
        seed=cfg.run.seed,
        stream=cfg.data.stream,
    )

    if device.type == "cuda":  # one image size for the whole run: let cuDNN time its algorithms once per shape
        torch.backends.cudnn.benchmark = True
    model = build_model(cfg, num_classes, in_chans)
    other_classes = bool(init_meta.get("classes")) and list(init_meta["classes"]) != list(train_data.classes)
    init_line = (
        load_into(model, init_state, init_meta, new_head=other_classes).line(cfg.output.init) if init_state else ""
    )
    frozen = frozen_parts(model, cfg.finetune.freeze)
    if cfg.run.sync_bn and world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    thaws = bool(frozen) and cfg.finetune.unfreeze_every > 0
    graphs, graphs_why = graphs_decision(cfg.run.cuda_graphs, device, world_size, precision, model, thaws)
    optimizer = build_optimizer(param_groups(model, cfg), cfg.optim, device, capturable=graphs)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    ema = None
    if cfg.optim.ema:
        ema = WeightAverage(model, cfg.optim.ema)
    steps_per_epoch = len(train_loader)
    total = total_steps(cfg.schedule, steps_per_epoch)
    epochs = math.ceil(total / steps_per_epoch)
    multiplier = lr_multiplier(cfg.schedule, steps_per_epoch)

    # Where to start: fresh, or exactly where the checkpoint left off.
    # What "auto" became here: a resume on other hardware may resolve it differently (not bit-identical).
    resolved = {"device": device.type, "precision": precision.name, "channels_last": precision.channels_last}
    if world_size > 1:
        resolved["processes"] = world_size
    if graphs:
        resolved["cuda_graphs"] = True
    if resumed is None:
        run = RunState(resolved=resolved)
        run_dir = (restarted_in or new_run_dir(cfg)) if is_main else None
        if is_main:
            mark_run(run_dir)
    else:
        run = resumed.state.for_rank(rank)
        model.load_state_dict(resumed.model)
        load_optimizer_state(optimizer, resumed.optimizer)
        if ema is not None and resumed.ema is not None:
            ema.load_state_dict(resumed.ema)
        if resumed.scaler:
            scaler.load_state_dict(resumed.scaler)
        resumed.rng.restore(world, device)
        if run.epoch >= epochs and (run_dir / "summary.json").is_file():
            raise UserError(
                f"{run_dir} already finished its {epochs} epochs; to train on, start a new run with init={run_dir}"
            )
        if run.resolved not in ({}, resolved):
            changed["resolved"] = [run.resolved, resolved]
        run.resolved = resolved
        if changed:
            run.history.append({"resumed_at_step": run.step, "changed": changed})
    run_dir = world.broadcast(run_dir)
    assert run_dir is not None

    train_model: nn.Module = model
    if world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.run.compile:
        train_model = _compiled(train_model)
    tally = StepTally(device)  # loss and accuracy summed on the device, read every log_every steps
    tally.start_at(run.step)
    train_step = TrainStep(
        model,
        train_model,
        optimizer,
        scaler,
        ema,
        tally,
        precision,
        device,
        cfg.optim.label_smoothing,
        cfg.optim.grad_clip,
        graphs=graphs,
        strict=cfg.run.cuda_graphs == "true",
    )

    meta = weights_meta(cfg, train_data, mean, std, splits.record)
    params = count_params(model)
    if is_main:
        if resumed is not None:
            remove_orphan_temporaries(run_dir)  # what writes killed mid-way (kill -9, a power cut) left behind
        atomic_write(run_dir / "config.yaml", lambda tmp: tmp.write_text(cfg.to_yaml()))
        _say(cfg, f"run {run_dir}  ({'resuming at epoch ' + str(run.epoch + 1) if resumed else 'new'})")
        sizes = ", ".join(
            f"{len(d):,} {n}" for n, d in (("train", train_data), ("val", splits.val), ("test", splits.test)) if d
        )
        _say(
            cfg,
            f"{cfg.model.name}: {params:,} parameters; {train_data.info.name}: {sizes} images of "
            f"{_image_shape(train_data)}; device {device}, {precision.name}"
            f"{', channels_last' if precision.channels_last else ''} ({precision.reason}); "
            f"{epochs} epochs of {steps_per_epoch} steps",
        )
        _say(cfg, describe(splits.record) + ("; the test split is scored once, at the end" if splits.test else ""))
        _say(cfg, f"training images: {train_loader.residency.reason}")
        if device.type == "cuda":
            _say(cfg, f"CUDA graphs {graphs_why}")
        if changed:
            what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
            _say(cfg, f"resumed with other arithmetic ({what}): the result will not be bit-identical", force=True)
        if init_line:
            _say(cfg, init_line, force=True)
    writer = _tensorboard(run_dir, cfg) if is_main else None
    wall_start = time.perf_counter() - run.wall_s
    eval_model = ema.module if ema is not None else model

    saved_at = [time.perf_counter()]  # when the last checkpoint was written, for checkpoint_minutes

    def checkpoint(epoch: int, batch_in_epoch: int) -> None:
        """Everything needed to continue exactly: written atomically, plain types only, finite weights only."""
        saved_at[0] = time.perf_counter()
        run.epoch, run.batch_in_epoch, run.wall_s = epoch, batch_in_epoch, time.perf_counter() - wall_start
        rng = RngState.capture(world, device)  # every rank's, for exact resume (raises if a peer died)
        sums = global_sums(run.partial, world)
        if not is_main:
            return
        refuse_non_finite(model, f"epoch {epoch + (batch_in_epoch > 0)}, step {run.step}", run_dir)
        Checkpoint(
            config=cfg.to_dict(),
            weights_meta=meta,
            model=model.state_dict(),
            optimizer=train_step.optimizer_state(),
            ema=ema.state_dict() if ema is not None else None,
            scaler=scaler.state_dict(),
            state=replace(run, partial=sums),
            rng=rng,
        ).save(run_dir / "last.pt")

    start_epoch, start_batch = run.epoch, run.batch_in_epoch
    for epoch in range(start_epoch, epochs):
        model.train()
        apply_freeze(model, still_frozen(frozen, epoch, cfg.finetune.unfreeze_every), cfg.finetune.freeze_bn)
        if epoch != start_epoch or start_batch == 0:
            run.partial = EpochSums()
        bar = tqdm(
            total=steps_per_epoch,
            initial=start_batch if epoch == start_epoch else 0,
            leave=False,
            disable=True if cfg.run.quiet or not is_main else None,  # None: only on a terminal
            desc=f"epoch {epoch + 1}/{epochs}",
            dynamic_ncols=True,
        )
        tick = time.perf_counter()
        first = start_batch if epoch == start_epoch else 0
        for b, (x, y) in enumerate(train_loader.epoch(epoch, first), start=first):
            if run.step >= total:
                break
            train_step.set_lr(base_lrs, multiplier(run.step))
            train_step(x, y)  # forward, backward, update, EMA, running figures (step.py); eager or a CUDA graph
            run.step += 1
            bar.update(1)
            # The host reads the device only here: at the progress bar's refresh, before a checkpoint, at the
            # epoch's end. Every process reaches the same read points (a step count), except that a single
            # process also stops at once for a signal or the checkpoint clock, which are host-side facts.
            due = bool(cfg.run.checkpoint_every) and run.step % cfg.run.checkpoint_every == 0
            late = (
                bool(cfg.run.checkpoint_minutes)
                and time.perf_counter() - saved_at[0] >= 60 * cfg.run.checkpoint_minutes
            )
            ends = b == steps_per_epoch - 1 or run.step >= total
            alone_now = world_size == 1 and (late or stop.requested)
            if not (due or ends or alone_now or tally.pending >= cfg.run.log_every):
                continue
            figures = tally.read()
            partial = run.partial
            partial.loss += figures.loss
            partial.correct += figures.correct
            partial.seen += figures.seen
            rate = partial.seen / max(partial.time + time.perf_counter() - tick, 1e-9)
            bar.set_postfix(
                loss=f"{partial.loss / max(partial.seen, 1):.4f}",
                acc=f"{100 * partial.correct / max(partial.seen, 1):.2f}%",
                img_s=f"{rate:.0f}",
            )
            # One decision for every process: any rank's signal, clock or non-finite loss counts for all.
            bad_flag = 0.0 if figures.bad_step == NO_STEP else 1.0
            signum, late, bad = world.agree(stop.requested or 0, late, bad_flag)
            if bad:
                raise diverged(figures, epoch, base_lrs[0] * multiplier(max(figures.bad_step, 0)), run_dir)
            stop.requested = int(signum) or None
            if ((due or late) and b + 1 < steps_per_epoch) or stop.requested:
                partial.time += time.perf_counter() - tick
                tick = time.perf_counter()
                checkpoint(epoch, b + 1)
                if stop.requested:
                    bar.close()
                    raise RunStopped(stop.requested, run_dir, f"epoch {epoch + 1}, step {run.step}")
        bar.close()
        run.partial.time += time.perf_counter() - tick
        start_batch = 0

        sums = global_sums(run.partial, world)
        row = {
            "epoch": epoch + 1,
            "step": run.step,
            "lr": train_step.lr(),
            "train_loss": sums.loss / max(sums.seen, 1),
            "train_acc": sums.correct / max(sums.seen, 1),
        }
        refuse_non_finite(eval_model, f"the end of epoch {epoch + 1}", run_dir)
        young = young_norms(model, any_age=ema is not None)  # averages still near their start (norm_stats.py)
        if young:
            with autocast(device, precision.dtype):
                reestimate(eval_model, young, (x for x, _ in settle_loader.epoch(0)))
        if watch_loader is not None:
            watched = evaluate(eval_model, watch_loader, device, precision.dtype, num_classes, world.sum)
            row.update({f"{watch_split}_{k}": watched[k] for k in ("loss", "top1", "top5")})
            if not math.isfinite(watched["loss"]):
                raise TrainingDiverged(
                    f"the {watch_split} loss became {watched['loss']} after epoch {epoch + 1}; "
                    f"{run_dir / 'last.pt' if run_dir else 'the checkpoint'} is left as it was; lower lr, add "
                    "warm-up or set optim.grad_clip"
                )
        row.update(
            images_per_s=sums.seen / max(run.partial.time, 1e-9),
            epoch_s=run.partial.time,
            wall_s=time.perf_counter() - wall_start,
        )
        run.rows.append(row)
        # Selection is on validation only; with nothing held out, the latest epoch is "best" (best = last).
        improved = watch_split != "val" or row["val_top1"] > run.best.top1
        if improved:
            run.best = Best(row["val_top1"] if watch_split == "val" else -1.0, epoch + 1)
        if is_main:
            _say(cfg, epoch_line(row, epochs, watch_split), force=True)
            weights = eval_model.state_dict()
            tagged = {**meta, "epoch": epoch + 1, "val_top1": row.get("val_top1")}
            if improved:
                selected_on = "val" if watch_split == "val" else "none: nothing held out, the last epoch"
                save_weights(run_dir / "best.safetensors", weights, {**tagged, "selected_on": selected_on})
            save_weights(run_dir / "last.safetensors", weights, tagged)
            write_metrics(run_dir / "metrics.csv", run.rows)
            if writer is not None:
                for key in row:
                    if key not in ("epoch", "step"):
                        writer.add_scalar(key, row[key], epoch + 1)
                writer.flush()
        checkpoint(epoch + 1, 0)
        stop.requested = int(world.agree(stop.requested or 0)[0]) or None  # a signal during evaluation, anywhere
        if stop.requested:
            raise RunStopped(stop.requested, run_dir, f"the end of epoch {epoch + 1}")

    ctx = Finished(
        cfg, run_dir, model, eval_model, splits, device, precision, mean, std, params, writer, run.history, world
    )
    rows = run.rows
    scores = final_scores(ctx, run.best.epoch or (rows[-1]["epoch"] if rows else 0), rows)  # every rank scores a share
    if not is_main:
        return RunResult(run_dir, {}, rows)  # rank 0 writes the summary
    return _finish(ctx, rows, run.best, scores, time.perf_counter() - wall_start)


def _leave(world: World, kind: type[BaseException] | None, tb: TracebackType | None) -> None:
    """Leave the process group: together after a finished run or a stop every rank agreed on (a signal, a loss
    that is not finite); at once after an error, as a peer may be gone."""
    agreed = kind is None or issubclass(kind, RunStopped | TrainingDiverged)
    if tb is not None and agreed:
        traceback.clear_frames(tb)  # the frames hold the model, and DistributedDataParallel holds the group
    world.leave(together=agreed)


def diverged(figures: Read, epoch: int, lr: float, run_dir: Path | None) -> Exception:
    """The first non-finite training loss, with the step where it appeared (on this process, or another's)."""
    where = (
        f"became {figures.bad_loss} at epoch {epoch + 1}, step {figures.bad_step + 1} (lr {lr:.4g})"
        if figures.bad_step != NO_STEP
        else f"stopped being a finite number on another process (epoch {epoch + 1})"
    )
    return TrainingDiverged(
        f"the training loss {where}; {run_dir / 'last.pt' if run_dir else 'the checkpoint'} is left as it was; "
        "lower lr, add warm-up or set optim.grad_clip"
    )


def global_sums(partial: EpochSums, world: World) -> EpochSums:
    """The epoch's running loss, correct count and images seen, summed over the processes."""
    if world.size == 1:
        return replace(partial)
    loss, correct, seen = world.sum(
        torch.tensor([partial.loss, partial.correct, partial.seen], dtype=torch.float64, device=world.device)
    ).tolist()
    return EpochSums(loss, correct, int(seen), partial.time)


def refuse_non_finite(model: nn.Module, where: str, run_dir: Path | None) -> None:
    """No checkpoint or weights file ever holds NaN or Inf: stop the run before writing one."""
    tensors = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    finite = torch.stack([torch.isfinite(t).all() for t in tensors.values()]).tolist()  # one host read
    bad = [name for name, ok in zip(tensors, finite) if not ok]
    if bad:
        raise TrainingDiverged(
            f"the weights stopped being finite numbers ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) at "
            f"{where}; {run_dir / 'last.pt' if run_dir else 'the checkpoint'} is left as it was; lower lr, add "
            "warm-up or set optim.grad_clip"
        )


def epoch_line(row: dict[str, Any], epochs: int, split: str | None) -> str:
    line = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
    if split:
        label = "val" if split == "val" else "test (display only)"
        line += (
            f"  {label} loss {row[f'{split}_loss']:.4f} top1 {100 * row[f'{split}_top1']:.2f}% "
            f"top5 {100 * row[f'{split}_top5']:.2f}%"
        )
    return line + f"  lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['epoch_s']:.0f}s"


@dataclass
class Finished:
    """What the end of a run needs from it."""

    cfg: TrainConfig
    run_dir: Path
    model: nn.Module
    eval_model: nn.Module
    splits: Any
    device: torch.device
    precision: Precision
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: int
    writer: Any
    history: list[dict[str, Any]]
    world: World


def final_split_of(splits: Any) -> str | None:
    """The split of the final figure: test; where the data has no test part (a flat image folder), validation,
    which is then also the set the epoch was selected on (and the summary says so)."""
    return "test" if splits.test is not None else ("val" if splits.val is not None else None)


def final_scores(ctx: Finished, selected_epoch: int, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Score the last weights, and the selected ones where they differ, once on the final split.

    Every process scores its share of the images and the counts are summed, like validation; the selected
    weights are read by rank 0 (it wrote them) and handed to the others, so no shared file system is needed."""
    cfg, splits, world = ctx.cfg, ctx.splits, ctx.world
    final_split = final_split_of(splits)
    if final_split is None:
        return {}
    data = splits.part(final_split)
    loader = make_loader(
        cfg, data, False, ctx.device, ctx.precision.channels_last, ctx.mean, ctx.std, world.rank, world.size
    )
    classes = len(data.classes)
    scores = {"last": evaluate(ctx.eval_model, loader, ctx.device, ctx.precision.dtype, classes, world.sum)}
    scores["selected"] = scores["last"]
    selected = ctx.eval_model
    if rows and selected_epoch != rows[-1]["epoch"]:
        selected = copy.deepcopy(ctx.eval_model)
        state = read_weights(ctx.run_dir / "best.safetensors")[0] if world.is_main else None
        selected.load_state_dict(world.broadcast(state))
        scores["selected"] = evaluate(selected, loader, ctx.device, ctx.precision.dtype, classes, world.sum)
    if cfg.data.tta == "flip":  # reported beside the plain figure, never instead of it
        scores["tta"] = evaluate(selected, loader, ctx.device, ctx.precision.dtype, classes, world.sum, tta=True)
    return scores


def _finish(
    ctx: Finished, rows: list[dict[str, Any]], best: Best, scores: dict[str, dict[str, Any]], wall: float
) -> RunResult:
    """Plots and summary.json from the final scores (rank 0 only)."""
    cfg, splits = ctx.cfg, ctx.splits
    train_data: Dataset = splits.train
    last_epoch = rows[-1]["epoch"] if rows else 0
    selected_epoch = best.epoch or last_epoch
    final_split = final_split_of(splits)
    title = f"{cfg.model.name} on {train_data.info.name}"
    smoothing = cfg.optim.label_smoothing
    plot_curves(
        ctx.run_dir / "curves.png", rows, title, f"train loss with label smoothing {smoothing:g}" if smoothing else ""
    )
    chosen = scores.get("selected")
    how = f"epoch {selected_epoch}, selected on validation" if splits.val is not None else f"last epoch ({last_epoch})"
    if chosen is not None:
        plot_confusion(
            ctx.run_dir / "confusion_matrix.png",
            chosen["confusion"],
            train_data.classes,
            f"{title}: {final_split} top-1 {100 * chosen['top1']:.2f}% ({how})",
        )
    in_size = (int(train_data.images.shape[-1]), *train_data.view())
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "seed": cfg.run.seed,
        "dataset": train_data.info.name,
        "data": cfg.data.name,
        "run_dir": str(ctx.run_dir),
        "parameters": ctx.params,
        "macs_per_image": count_macs(_cpu_copy(ctx.model), in_size),
        "epochs": len(rows),
        "steps": rows[-1]["step"] if rows else 0,
        "final": rows[-1] if rows else {},
        "split": splits.record,
        "selected_on": "val" if splits.val is not None else None,
        "best_epoch": selected_epoch,
        "best_val_top1": best.top1 if splits.val is not None else None,
        "result_split": final_split,  # the split of the figures below: "test", or "val" where there is no test
        "result_weights": how,
    }
    if chosen is not None:
        prefix = final_split  # test_top1, ... or, where the data has no test part, val_top1, ...
        summary.update(
            {
                f"{prefix}_top1": chosen["top1"],
                f"{prefix}_top5": chosen["top5"],
                f"{prefix}_loss": chosen["loss"],
                f"{prefix}_per_class": dict(zip(train_data.classes, chosen["per_class"])),
            }
        )
        if scores["last"] is not chosen:
            summary[f"{prefix}_top1_last_epoch"] = scores["last"]["top1"]
        if "tta" in scores:
            summary.update({f"{prefix}_top1_tta": scores["tta"]["top1"], f"{prefix}_top5_tta": scores["tta"]["top5"]})
    summary.update(
        {
            "wall_s": wall,
            "train_images_per_s": float(np.mean([r["images_per_s"] for r in rows])) if rows else 0.0,
            "device": str(ctx.device),
            "processes": ctx.world.size,
            "precision": ctx.precision.name,
            "channels_last": ctx.precision.channels_last,
            "history": ctx.history,
        }
    )
    write_json(ctx.run_dir / "summary.json", summary)
    if ctx.writer is not None:
        ctx.writer.close()
    if chosen is None:
        _say(
            cfg,
            f"no validation or test images: the last epoch's weights are the result  in {wall:.0f}s  ->  {ctx.run_dir}",
            force=True,
        )
    else:
        last = ""
        if scores["last"] is not chosen:
            last = f"; last epoch {100 * scores['last']['top1']:.2f}%"
        if "tta" in scores:
            last += f"; with flip TTA {100 * scores['tta']['top1']:.2f}%"
        note = " (the selection set: this data has no test split)" if final_split == "val" else ""
        _say(
            cfg,
            f"{final_split} top-1 {100 * chosen['top1']:.2f}%  top-5 {100 * chosen['top5']:.2f}%  "
            f"({how}{last}){note}  in {wall:.0f}s  ->  {ctx.run_dir}",
            force=True,
        )
    return RunResult(ctx.run_dir, summary, rows)


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()


def _compiled(model: nn.Module) -> nn.Module:
    """torch.compile, or the eager model when compiling fails (checked on the first call)."""
    try:
        compiled = torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any backend failure means: run eager
        log.warning("torch.compile failed (%s); running eager", err)
        return model
    return _EagerFallback(compiled, model)


class _EagerFallback(nn.Module):
    def __init__(self, compiled: nn.Module, eager: nn.Module) -> None:
        super().__init__()
        self.compiled, self.eager, self.failed = compiled, eager, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.failed:
            try:
                return self.compiled(x)
            except Exception as err:  # noqa: BLE001
                if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                    raise  # a CUDA graph is being recorded: its own fallback decides, compile stays on

                log.warning("torch.compile failed on the first batch (%s); running eager", str(err).splitlines()[0])
                self.failed = True
        return self.eager(x)


_said_no_tensorboard: list[bool] = []


def _tensorboard(run_dir: Path, cfg: TrainConfig):
    if not cfg.output.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: say so once per process, with how to get it
        if not _said_no_tensorboard:
            _said_no_tensorboard.append(True)
            log.info(
                "TensorBoard is not installed, so this run writes metrics.csv and curves.png but no TensorBoard "
                "events; `pip install tensorboard` adds them (output.tensorboard=false silences this)"
            )
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _image_shape(data: Dataset) -> str:
    """'28x28x1', or for a folder cached larger than the network's input '256x256x3 (cropped to 224x224)'."""
    stored = "x".join(map(str, data.images.shape[1:]))
    view = data.view()
    return stored if view == tuple(data.images.shape[1:3]) else f"{stored} (cropped to {view[0]}x{view[1]})"


def _say(cfg: TrainConfig, message: str, force: bool = False) -> None:
    if force or not cfg.run.quiet:
        tqdm.write(message)
    sys.stdout.flush()
