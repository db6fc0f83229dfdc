"""fit and evaluate: one training run, top to bottom.

    result = fit(load_config("configs/fashion_mnist_fast.yaml"))
    print(result.run_dir, result.summary["test_top1"])

The order of a run: resolve the config -> read the data -> build the model (and load init weights) ->
create the run directory -> for every epoch: train, validate, write metrics and checkpoints -> plots and
summary. Everything random follows from the seed; a run resumed from its last checkpoint (written at
every epoch end, and every `checkpoint_every` steps) ends with the same weights as one never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data import AugmentConfig, BatchLoader, Dataset, load_dataset
from ..errors import UserError
from ..models import create_model, model_info
from ..models.pretrained import load_into, read_state_dict
from ..models.summary import count_macs, count_params
from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .config import TrainConfig, from_dict, validate
from .finetune import apply_freeze, frozen_parts, param_groups, still_frozen
from .optim import build_optimizer, lr_multiplier, set_lr, total_steps
from .report import plot_confusion, plot_curves, write_json, write_metrics

log = logging.getLogger("resnetlab")


class TrainingDiverged(UserError):
    """The loss stopped being a finite number; the last good checkpoint is left as it was."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------------
# Device and precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but this machine has no CUDA GPU; use device=cpu or auto")
    return device


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matrix units, where bf16 autocast is about 2.5x faster than fp32."""
    probes = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(p is not None and p() for p in probes)


def resolve_precision(precision: str, channels_last: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, channels_last)."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_fast_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    if channels_last == "auto":
        use_cl = device.type == "cuda" or (device.type == "cpu" and dtype is torch.bfloat16)
    else:
        use_cl = channels_last == "true"
    return dtype, use_cl


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------------
# Data and model


def load_split(cfg: TrainConfig, split: str) -> Dataset:
    d = cfg.data
    data = load_dataset(
        d.name,
        split,
        path=d.path or None,
        image_size=d.image_size or 224,
        channels=d.channels or 3,
        val_fraction=d.val_fraction,
        seed=cfg.run.seed,
    )
    limit = d.limit_train if split == "train" else d.limit_val
    if limit and limit < len(data):
        data = replace(data, images=data.images[:limit], labels=data.labels[:limit])
    return data


def make_loader(
    cfg: TrainConfig,
    data: Dataset,
    train: bool,
    device: torch.device,
    channels_last: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader:
    d = cfg.data
    hflip = data.info.hflip if d.hflip == "auto" else d.hflip == "true"
    augment = AugmentConfig(d.crop_padding, d.pad_mode, hflip, d.cutout, d.mixup, d.cutmix)
    return BatchLoader(
        data,
        cfg.optim.batch_size,
        train=train,
        augment=augment,
        mean=mean,
        std=std,
        device=device,
        channels_last=channels_last,
        seed=cfg.run.seed,
        rank=rank,
        world_size=world_size,
        num_classes=len(data.classes),
    )


def with_init_defaults(cfg: TrainConfig, meta: dict[str, Any]) -> TrainConfig:
    """Fill what the config leaves open from the init weights' metadata: model, image size, channels,
    normalisation (preprocessing follows the weights), else resnetlab's defaults."""
    model = replace(cfg.model, name=cfg.model.name or meta.get("model") or "resnet20")
    if meta.get("model") and model.name == meta["model"] and not model.args:
        model.args = dict(meta.get("args", {}))
    data = cfg.data
    if meta.get("input_size"):
        channels, size, _ = meta["input_size"]
        data = replace(data, image_size=data.image_size or size, channels=data.channels or channels)
        if not data.mean and meta.get("mean") and len(meta["mean"]) == data.channels:
            data = replace(data, mean=list(meta["mean"]), std=list(meta["std"]))
    return replace(cfg, model=model, data=data)


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    model_info(cfg.model.name)  # a clear error for an unknown name, before any work
    return create_model(cfg.model.name, num_classes=num_classes, in_chans=in_chans, **cfg.model.args)


def weights_meta(cfg: TrainConfig, data: Dataset, mean, std, **extra: Any) -> dict[str, Any]:
    """What a weights file needs to be used on its own: architecture, classes, preprocessing."""
    return {
        "model": cfg.model.name,
        "args": cfg.model.args,
        "num_classes": len(data.classes),
        "in_chans": int(data.images.shape[-1]),
        "classes": list(data.classes),
        "input_size": [int(data.images.shape[-1]), int(data.images.shape[1]), int(data.images.shape[2])],
        "mean": list(mean),
        "std": list(std),
        "dataset": data.info.name,
        **extra,
    }


# ---------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: BatchLoader, device: torch.device, dtype: torch.dtype | None, num_classes: int
) -> dict[str, Any]:
    """Loss, top-1, top-5 and the confusion matrix (rows: true class) over every batch of `loader`."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    seen = 0
    k = min(5, num_classes)
    for x, y in loader.epoch(0):
        with autocast(device, dtype):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        ranked = logits.topk(k, 1).indices  # (B, k)
        top1 += (ranked[:, 0] == y).sum()
        top5 += (ranked == y[:, None]).any(1).sum()
        confusion += torch.bincount(y * num_classes + ranked[:, 0], minlength=num_classes * num_classes)
        seen += len(y)
    model.train(was_training)
    matrix = confusion.view(num_classes, num_classes).cpu().numpy()
    return {
        "loss": loss_sum.item() / max(seen, 1),
        "top1": top1.item() / max(seen, 1),
        "top5": top5.item() / max(seen, 1),
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


def resumed_config(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any], Path]:
    """The saved config of the run to resume (what it was started with), plus this session's display choices."""
    path = Path(cfg.output.resume).expanduser()
    state = load_checkpoint(path)
    run_dir = path if path.is_dir() else path.parent
    saved = from_dict(state["config"])
    saved.output.resume = str(run_dir)
    saved.run.quiet, saved.run.threads, saved.output.tensorboard = (
        cfg.run.quiet,
        cfg.run.threads,
        cfg.output.tensorboard,
    )
    if cfg.run.device != "auto":
        saved.run.device = cfg.run.device
    validate(saved)
    return saved, state, run_dir


def fit(cfg: TrainConfig, rank: int = 0, world_size: int = 1) -> RunResult:
    """Train as `cfg` says; returns the run directory, the summary and the per-epoch metrics."""
    validate(cfg)
    state: dict[str, Any] | None = None
    run_dir: Path | None = None
    if cfg.output.resume:
        cfg, state, run_dir = resumed_config(cfg)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = resolve_device(cfg.run.device)
    dtype, channels_last = resolve_precision(cfg.run.precision, cfg.run.channels_last, device)
    torch.manual_seed(cfg.run.seed)
    is_main = rank == 0
    init_state, init_meta = read_state_dict(cfg.output.init) if cfg.output.init and state is None else ({}, {})
    cfg = with_init_defaults(cfg, init_meta)

    # Data first: a missing dataset fails before a run directory exists.
    train_data, val_data = load_split(cfg, "train"), load_split(cfg, "val")
    if not cfg.data.mean:  # record the normalisation in the config, so that a resumed run uses the same
        cfg.data.mean, cfg.data.std = list(train_data.info.mean), list(train_data.info.std)
    mean, std = tuple(cfg.data.mean), tuple(cfg.data.std)
    num_classes, in_chans = len(train_data.classes), int(train_data.images.shape[-1])
    train_loader = make_loader(cfg, train_data, True, device, channels_last, mean, std, rank, world_size)
    val_loader = make_loader(cfg, val_data, False, device, channels_last, mean, std)
    if len(train_loader) == 0:
        raise UserError(f"batch_size={cfg.optim.batch_size} is larger than the {len(train_data)} training images")

    model = build_model(cfg, num_classes, in_chans)
    other_classes = bool(init_meta.get("classes")) and list(init_meta["classes"]) != list(train_data.classes)
    init_line = (
        load_into(model, init_state, init_meta, new_head=other_classes).line(cfg.output.init) if init_state else ""
    )
    frozen = frozen_parts(model, cfg.finetune.freeze)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(param_groups(model, cfg), cfg.optim)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    ema = None
    if cfg.optim.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema), use_buffers=True)
    steps_per_epoch = len(train_loader)
    total = total_steps(cfg.schedule, steps_per_epoch)
    epochs = math.ceil(total / steps_per_epoch)
    multiplier = lr_multiplier(cfg.schedule, steps_per_epoch)

    # Where to start: fresh, or exactly where the checkpoint left off.
    rows: list[dict[str, Any]] = []
    start_epoch, start_batch, step = 0, 0, 0
    best = {"top1": -1.0, "epoch": 0}
    partial = {"loss": 0.0, "correct": 0.0, "seen": 0, "time": 0.0}
    wall_before = 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, start_batch, step = state["epoch"], state["batch_in_epoch"], state["step"]
        rows, best, partial, wall_before = state["rows"], state["best"], state["partial"], state["wall_s"]
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if start_epoch >= epochs and (run_dir / "summary.json").is_file():
            raise UserError(
                f"{run_dir} already finished its {epochs} epochs; to train on, start a new run with init={run_dir}"
            )
    else:
        run_dir = new_run_dir(cfg) if is_main else None
    assert run_dir is not None or not is_main

    train_model: nn.Module = model
    if world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.run.compile:
        train_model = _compiled(train_model)

    meta = weights_meta(cfg, train_data, mean, std)
    params = count_params(model)
    if is_main:
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
        _say(cfg, f"run {run_dir}  ({'resuming at epoch ' + str(start_epoch + 1) if state else 'new'})")
        _say(
            cfg,
            f"{cfg.model.name}: {params:,} parameters; {train_data.info.name}: {len(train_data):,} train / "
            f"{len(val_data):,} val images of {'x'.join(map(str, train_data.images.shape[1:]))}; device {device}, "
            f"{'fp32' if dtype is None else str(dtype).split('.')[-1]}{', channels_last' if channels_last else ''}; "
            f"{epochs} epochs of {steps_per_epoch} steps",
        )
        if init_line:
            _say(cfg, init_line, force=True)
    writer = _tensorboard(run_dir, cfg) if is_main else None
    wall_start = time.perf_counter() - wall_before
    eval_model = ema.module if ema is not None else model

    def checkpoint(epoch: int, batch_in_epoch: int) -> None:
        """Everything needed to continue exactly: written atomically, plain types only."""
        if not is_main:
            return
        save_checkpoint(
            run_dir / "last.pt",
            {
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "step": step,
                "rows": rows,
                "best": best,
                "partial": partial,
                "wall_s": time.perf_counter() - wall_start,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                },
                "weights_meta": meta,
            },
        )

    for epoch in range(start_epoch, epochs):
        model.train()
        apply_freeze(model, still_frozen(frozen, epoch, cfg.finetune.unfreeze_every), cfg.finetune.freeze_bn)
        if epoch != start_epoch or start_batch == 0:
            partial = {"loss": 0.0, "correct": 0.0, "seen": 0, "time": 0.0}
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
            if step >= total:
                break
            set_lr(optimizer, base_lrs, multiplier(step))
            with autocast(device, dtype):
                logits = train_model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.optim.label_smoothing)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1} (lr "
                    f"{optimizer.param_groups[0]['lr']:.4g}); {run_dir / 'last.pt' if run_dir else 'the checkpoint'} "
                    "is left as it was; lower lr, add warm-up or set optim.grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            labels = y if y.dim() == 1 else y.argmax(1)
            partial["loss"] += loss_value * len(labels)
            partial["correct"] += (logits.argmax(1) == labels).sum().item()
            partial["seen"] += len(labels)
            bar.update(1)
            if b % 10 == 0 or b == steps_per_epoch - 1:
                rate = partial["seen"] / max(partial["time"] + time.perf_counter() - tick, 1e-9)
                bar.set_postfix(
                    loss=f"{partial['loss'] / partial['seen']:.4f}",
                    acc=f"{100 * partial['correct'] / partial['seen']:.2f}%",
                    img_s=f"{rate:.0f}",
                )
            if cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0 and b + 1 < steps_per_epoch:
                partial["time"] += time.perf_counter() - tick
                tick = time.perf_counter()
                checkpoint(epoch, b + 1)
        bar.close()
        partial["time"] += time.perf_counter() - tick
        start_batch = 0

        val = evaluate(eval_model, val_loader, device, dtype, num_classes)
        row = {
            "epoch": epoch + 1,
            "step": step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": partial["loss"] / max(partial["seen"], 1),
            "train_acc": partial["correct"] / max(partial["seen"], 1),
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "images_per_s": partial["seen"] * world_size / max(partial["time"], 1e-9),
            "epoch_s": partial["time"],
            "wall_s": time.perf_counter() - wall_start,
        }
        rows.append(row)
        if is_main:
            _say(
                cfg,
                f"epoch {epoch + 1}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
                f"  val loss {row['val_loss']:.4f} top1 {100 * row['val_top1']:.2f}% top5 {100 * row['val_top5']:.2f}%"
                f"  lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['epoch_s']:.0f}s",
                force=True,
            )
            weights = eval_model.state_dict()
            if val["top1"] > best["top1"]:
                best = {"top1": val["top1"], "epoch": epoch + 1}
                save_weights(
                    run_dir / "best.safetensors", weights, {**meta, "epoch": epoch + 1, "val_top1": val["top1"]}
                )
            save_weights(run_dir / "last.safetensors", weights, {**meta, "epoch": epoch + 1, "val_top1": val["top1"]})
            write_metrics(run_dir / "metrics.csv", rows)
            if writer is not None:
                for key in ("train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr", "images_per_s"):
                    writer.add_scalar(key, row[key], epoch + 1)
                writer.flush()
        checkpoint(epoch + 1, 0)

    if not is_main:
        return RunResult(Path("."), {}, rows)
    if start_epoch >= epochs:  # every epoch was done, but the run stopped before its plots and summary
        val = evaluate(eval_model, val_loader, device, dtype, num_classes)
    ctx = Finished(
        cfg, run_dir, model, eval_model, train_data, val_data, device, dtype, channels_last, mean, std, params, writer
    )
    return _finish(ctx, rows, best, val, time.perf_counter() - wall_start)


@dataclass
class Finished:
    """What the end of a run needs from it."""

    cfg: TrainConfig
    run_dir: Path
    model: nn.Module
    eval_model: nn.Module
    train_data: Dataset
    val_data: Dataset
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: int
    writer: Any


def _finish(
    ctx: Finished, rows: list[dict[str, Any]], best: dict[str, Any], val: dict[str, Any], wall: float
) -> RunResult:
    """Plots, the test-set figure (when validation was a hold-out) and summary.json."""
    title = f"{ctx.cfg.model.name} on {ctx.train_data.info.name}"
    smoothing = ctx.cfg.optim.label_smoothing
    plot_curves(
        ctx.run_dir / "curves.png", rows, title, f"train loss with label smoothing {smoothing:g}" if smoothing else ""
    )
    plot_confusion(
        ctx.run_dir / "confusion_matrix.png",
        val["confusion"],
        ctx.val_data.classes,
        f"{title}: {'validation' if ctx.cfg.data.val_fraction else 'test'} top-1 {100 * val['top1']:.2f}%",
    )
    test, test_split = val, "validation" if ctx.cfg.data.val_fraction else "test"
    if ctx.cfg.data.val_fraction:  # validation was carved from train: measure the real test split once, at the end
        try:
            test_data = load_split(replace(ctx.cfg, data=replace(ctx.cfg.data, val_fraction=0.0)), "test")
        except UserError:  # an image folder without a test/ (or val/) folder: the hold-out is all there is
            test_data = None
        if test_data is not None:
            test_loader = make_loader(ctx.cfg, test_data, False, ctx.device, ctx.channels_last, ctx.mean, ctx.std)
            test, test_split = (
                evaluate(ctx.eval_model, test_loader, ctx.device, ctx.dtype, len(test_data.classes)),
                "test",
            )
    in_size = (
        int(ctx.train_data.images.shape[-1]),
        int(ctx.train_data.images.shape[1]),
        int(ctx.train_data.images.shape[2]),
    )
    summary = {
        "model": ctx.cfg.model.name,
        "dataset": ctx.train_data.info.name,
        "run_dir": str(ctx.run_dir),
        "parameters": ctx.params,
        "macs_per_image": count_macs(_cpu_copy(ctx.model), in_size),
        "epochs": len(rows),
        "steps": rows[-1]["step"] if rows else 0,
        "final": rows[-1] if rows else {},
        "best_val_top1": best["top1"],
        "best_epoch": best["epoch"],
        "test_split": test_split,  # "validation" where the data has no separate test split
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "test_loss": test["loss"],
        "test_per_class": dict(zip(ctx.val_data.classes, test["per_class"])),
        "wall_s": wall,
        "train_images_per_s": float(np.mean([r["images_per_s"] for r in rows])) if rows else 0.0,
        "device": str(ctx.device),
        "precision": "fp32" if ctx.dtype is None else str(ctx.dtype).split(".")[-1],
        "channels_last": ctx.channels_last,
    }
    write_json(ctx.run_dir / "summary.json", summary)
    if ctx.writer is not None:
        ctx.writer.close()
    scores = f"top-1 {100 * test['top1']:.2f}%  top-5 {100 * test['top5']:.2f}%"
    _say(ctx.cfg, f"{test_split} {scores}  in {wall:.0f}s  ->  {ctx.run_dir}", force=True)
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
                log.warning("torch.compile failed on the first batch (%s); running eager", str(err).splitlines()[0])
                self.failed = True
        return self.eager(x)


def _tensorboard(run_dir: Path, cfg: TrainConfig):
    if not cfg.output.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _say(cfg: TrainConfig, message: str, force: bool = False) -> None:
    if force or not cfg.run.quiet:
        tqdm.write(message)
    sys.stdout.flush()
