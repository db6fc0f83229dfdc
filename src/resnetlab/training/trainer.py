"""A run's third phase: what trains. The model (with init weights, frozen parts, SyncBatchNorm), the optimizer,
the gradient scaler, the EMA of the weights, the schedule; then, once the run's state is restored, the wrapped
model (DistributedDataParallel, torch.compile) and the training step that drives them (step.py)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import Checkpoint
from ..models.pretrained import load_into
from .ema import WeightAverage
from .finetune import frozen_parts, param_groups
from .optim import build_optimizer, load_optimizer_state, lr_multiplier, total_steps
from .run_data import RunData
from .session import Session
from .setup import build_model
from .step import TrainStep, graphs_decision
from .tally import StepTally

log = logging.getLogger("resnetlab")


@dataclass
class Trainer:
    model: nn.Module  # the bare model: its state_dict is what checkpoints and weights files hold
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: WeightAverage | None
    frozen: list[str]  # parts frozen by finetune.freeze (thawed by finetune.unfreeze_every)
    graphs: bool  # the step is recorded as a CUDA graph
    graphs_why: str
    init_line: str  # what loading the init weights did, for the run's first lines
    base_lrs: list[float]
    multiplier: Callable[[int], float]  # step -> factor of the base learning rates
    steps_per_epoch: int
    total_steps: int
    epochs: int
    step: TrainStep | None = None  # made by ready(), after the state is restored

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved as weights: the EMA of the weights where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def restore(self, checkpoint: Checkpoint) -> None:
        """The weights, optimizer, EMA and scaler states of a checkpoint (this machine's kernel flags kept)."""
        self.model.load_state_dict(checkpoint.model)
        load_optimizer_state(self.optimizer, checkpoint.optimizer)
        if self.ema is not None and checkpoint.ema is not None:
            self.ema.load_state_dict(checkpoint.ema)
        if checkpoint.scaler:
            self.scaler.load_state_dict(checkpoint.scaler)

    def ready(self, session: Session, at_step: int) -> TrainStep:
        """Wrap the model for the processes and the compiler, and make the training step (step.py)."""
        cfg, world, device = session.cfg, session.world, session.device
        train_model: nn.Module = self.model
        if world.size > 1:
            ids = [device.index] if device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.run.compile:
            train_model = compiled(train_model)
        tally = StepTally(device)  # loss and accuracy summed on the device, read every log_every steps
        tally.start_at(at_step)
        self.step = TrainStep(
            self.model,
            train_model,
            self.optimizer,
            self.scaler,
            self.ema,
            tally,
            session.precision,
            device,
            cfg.optim.label_smoothing,
            cfg.optim.grad_clip,
            graphs=self.graphs,
            strict=cfg.run.cuda_graphs == "true",
        )
        return self.step


def build_trainer(session: Session, data: RunData) -> Trainer:
    cfg, device, precision = session.cfg, session.device, session.precision
    if device.type == "cuda":  # one image size for the whole run: let cuDNN time its algorithms once per shape
        torch.backends.cudnn.benchmark = True
    model = build_model(cfg, data.num_classes, data.in_chans)
    init_meta = session.init_meta
    other_classes = init_meta is not None and list(init_meta.classes) != list(data.train.classes)
    init_line = ""
    if session.init_state:
        loaded = load_into(model, session.init_state, init_meta, new_head=other_classes)
        init_line = loaded.line(cfg.output.init)
    frozen = frozen_parts(model, cfg.finetune.freeze)
    if cfg.run.sync_bn and session.world.size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    thaws = bool(frozen) and cfg.finetune.unfreeze_every > 0
    graphs, graphs_why = graphs_decision(cfg.run.cuda_graphs, device, session.world.size, precision, model, thaws)
    optimizer = build_optimizer(param_groups(model, cfg), cfg.optim, device, capturable=graphs)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    ema = WeightAverage(model, cfg.optim.ema) if cfg.optim.ema else None
    steps_per_epoch = len(data.train_loader)
    total = total_steps(cfg.schedule, steps_per_epoch)
    return Trainer(
        model,
        optimizer,
        scaler,
        ema,
        frozen,
        graphs,
        graphs_why,
        init_line,
        base_lrs=[g["lr"] for g in optimizer.param_groups],
        multiplier=lr_multiplier(cfg.schedule, steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        epochs=math.ceil(total / steps_per_epoch),
    )


def compiled(model: nn.Module) -> nn.Module:
    """torch.compile, or the eager model when compiling fails (checked on the first call)."""
    try:
        compiled_model = torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any backend failure means: run eager
        log.warning("torch.compile failed (%s); running eager", err)
        return model
    return EagerFallback(compiled_model, model)


class EagerFallback(nn.Module):
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
