"""The training step's running figures, kept on the device and read by the host every few steps.

A host read of a CUDA tensor (`.item()`, `float()`, `.tolist()`, `if tensor:`) waits for every kernel queued
so far; one per step stops the CPU from queuing the next step while the GPU runs this one, and small networks
then leave the GPU idle between kernels. So the loss sum, the correct count and the first step whose loss was
not a finite number are summed here with device operations only, and `read()` fetches all of them at once,
when the progress bar refreshes (every `run.log_every` steps), before a checkpoint and at the epoch end.
Every device tensor here is updated in place, so that a step recorded as a CUDA graph (step.py) adds into
the same memory at each replay; the step count is a device tensor for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NO_STEP = -1


@dataclass
class Read:
    """What the steps since the previous read added up to."""

    loss: float  # sum over images of the training loss
    correct: int
    seen: int
    bad_step: int  # the first step (0-based, global) whose loss was not finite; NO_STEP if none
    bad_loss: float  # that loss (nan or inf)


class StepTally:
    def __init__(self, device: torch.device) -> None:
        wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.loss = torch.zeros((), dtype=wide, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_step = torch.full((), NO_STEP, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=device)
        self.next_step = torch.zeros((), dtype=torch.int64, device=device)  # global 0-based index of the next add
        self.seen = 0  # the host knows batch sizes without asking the device
        self.pending = 0  # steps since the last read

    def start_at(self, step: int) -> None:
        """The global index of the next step (a resumed run starts past 0)."""
        self.next_step.fill_(step)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One step's mean loss (a 0-dim tensor) and predictions, with device operations only; `count` adds the
        batch on the host."""
        loss = loss.detach().float()
        self.loss += loss.to(self.loss.dtype) * len(labels)
        self.correct += (logits.detach().argmax(1) == labels).sum()
        first = (self.bad_step == NO_STEP) & ~torch.isfinite(loss)
        self.bad_step.copy_(torch.where(first, self.next_step, self.bad_step))
        self.bad_loss.copy_(torch.where(first, loss, self.bad_loss))
        self.next_step += 1

    def count(self, images: int) -> None:
        """The host's share of a step: its batch size, and one more step before the next read."""
        self.seen += images
        self.pending += 1

    def read(self) -> Read:
        """The sums since the last read, in one host read, and start again from zero."""
        wide = self.loss.dtype  # float64 holds the counts and step exactly (float32 on MPS: below 2**24)
        figures = [self.loss, self.correct.to(wide), self.bad_step.to(wide), self.bad_loss.to(wide)]
        loss, correct, bad_step, bad_loss = torch.stack(figures).tolist()
        out = Read(loss, int(correct), self.seen, int(bad_step), bad_loss)
        self.loss.zero_()
        self.correct.zero_()
        self.bad_step.fill_(NO_STEP)
        self.seen = self.pending = 0
        return out
