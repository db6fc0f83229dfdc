"""Optimisers and learning-rate schedules.

A schedule here is a pure function step -> lr multiplier, applied to every parameter group before each
step. Having no state of its own, it resumes exactly from the step count alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .config import OptimConfig, ScheduleConfig


def build_optimizer(
    groups: list[dict], cfg: OptimConfig, device: torch.device | None = None, capturable: bool = False
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over parameter groups that carry their own lr and weight decay.

    On CUDA the update is one fused kernel for all parameters (PyTorch's `fused=True`) rather than a launch
    per tensor: for a small network the launches, not the arithmetic, are what an eager step waits on. On a
    CPU PyTorch's default (foreach) stays, as it measured no slower there. `capturable`: the step may be
    recorded in a CUDA graph (AdamW then keeps its step counts on the device; fused SGD needs nothing more)."""
    fused = True if device is not None and device.type == "cuda" else None
    if cfg.optimizer in ("adam", "adamw"):
        # Adam adds weight_decay * w to the gradient (coupled L2; Keras's Adam has none: weight_decay=0), AdamW
        # shrinks the weights apart from the adaptive step (Loshchilov & Hutter 2019). Both take each group's own.
        extra = {"capturable": True} if capturable else {}
        kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return kind(groups, lr=cfg.lr, fused=fused, **extra)
    nesterov = cfg.nesterov and cfg.momentum > 0
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov, fused=fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a checkpoint's optimizer state with this machine's kernel choice (fused, capturable), not the saved one.

    The flag goes into the saved groups before loading, since PyTorch places each state tensor (AdamW's `step`:
    on the parameter's device for fused kernels, on the CPU otherwise) by the saved groups' flag: a run saved on
    a CPU and resumed on a GPU with fused AdamW would otherwise step with its counts on the wrong device."""
    flags = {key: optimizer.defaults[key] for key in ("fused", "capturable") if key in optimizer.defaults}
    groups = [{**group, **flags} for group in state["param_groups"]]
    optimizer.load_state_dict({**state, "param_groups": groups})


def total_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    return cfg.iterations if cfg.iterations > 0 else cfg.epochs * steps_per_epoch


def lr_multiplier(cfg: ScheduleConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """step (0-based, the step about to be taken) -> multiplier of the base learning rate."""
    total = total_steps(cfg, steps_per_epoch)
    unit = 1 if cfg.unit == "iteration" else steps_per_epoch
    warmup = int(round(cfg.warmup * unit))
    if cfg.milestones and max(cfg.milestones) < 1:  # fractions of the run
        milestones = [int(round(m * total)) for m in cfg.milestones]
    else:
        milestones = [int(round(m * unit)) for m in cfg.milestones]
    floor = cfg.min_lr_ratio

    def shape(step: int) -> float:
        t = min(step / max(total, 1), 1.0)
        if cfg.name == "multistep":  # He et al. 2015: divide by 10 at 32k and 48k iterations
            return cfg.gamma ** sum(step >= m for m in milestones)
        if cfg.name == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if cfg.name == "onecycle":  # linear rise from 1/25 to 1, then cosine down to `floor` (Smith 2018)
            if t < cfg.pct_start:
                return 1 / 25 + (1 - 1 / 25) * t / cfg.pct_start
            u = (t - cfg.pct_start) / (1 - cfg.pct_start)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * u))
        return 1.0

    def multiplier(step: int) -> float:
        factor = shape(step)
        if warmup and step < warmup:
            factor *= (step + 1) / warmup
        return factor

    return multiplier


def describe_optimization(optim: OptimConfig, schedule: ScheduleConfig, multiplier: Callable[[int], float],
                          total: int) -> str:  # fmt: skip
    """One line for the start of a run: the optimizer and where the schedule takes the learning rate, so that an
    lr copied from elsewhere is not divided by 100 unseen (multistep's default)."""
    kind = optim.optimizer
    if kind == "sgd" and optim.momentum > 0:
        kind += f" (momentum {optim.momentum:g}{', Nesterov' if optim.nesterov else ''})"
    decay = {"sgd": "L2", "adam": "L2", "adamw": "decoupled"}[optim.optimizer]
    # Every step up to 10,000 (a CPU run), then an even sample of as many (ImageNet's 450,000 steps need not all
    # be called for one line); the first and last step are always in it.
    stride = max(1, total // 10_000)
    steps = sorted({*range(0, total, stride), max(total - 1, 0)})
    lrs = [optim.lr * multiplier(s) for s in steps]
    return (
        f"optimizer: {kind}, batch {optim.batch_size}, weight decay {optim.weight_decay:g} ({decay}); "
        f"lr schedule {schedule.name}: {lrs[0]:.3g} at the first step, {max(lrs):.3g} at most, {lrs[-1]:.3g} at the "
        f"last of {total:,}"
    )


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
