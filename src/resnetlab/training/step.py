"""The training step, and the same step recorded once and replayed as a CUDA graph.

    step = TrainStep(model, train_model, optimizer, ..., graphs=True)
    step.set_lr(base_lrs, multiplier(i))
    step(x, y)                       # forward, loss, backward, clip, update, EMA, running figures

On a GPU a small network's step is a few hundred short kernels, and the CPU's time to launch them, not the
GPU's arithmetic, sets the pace: issue 16 measured a bare ResNet-20 loop on an H100 at 50,657 img/s eager and
141,019 img/s under CUDA graphs. A CUDA graph records the step's kernels once and replays them with one launch.
A replay re-runs the recorded kernels on the recorded memory, so the step keeps to these rules:
- fixed shapes and addresses: each batch is copied into the same two tensors (all training batches have one
  size: the loader drops the short last one);
- no host reads and no host-side numbers that change: the learning rate of each parameter group is a device
  tensor filled before every step, and the tally counts steps on the device;
- state that outlives a step (running figures, optimizer state, weight average) is updated in place;
- the optimizer takes a device learning rate: fused SGD does, AdamW is built `capturable`.
The first WARMUP steps run eagerly on a side stream (lazy optimizer state, cuDNN's algorithm search, the first
torch.compile), as PyTorch's CUDA-graph notes prescribe; the next one is recorded, and every later one replays.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .device import Precision, autocast
from .ema import WeightAverage
from .tally import StepTally

log = logging.getLogger("resnetlab")

WARMUP = 3  # eager steps before recording: PyTorch's whole-network capture example warms up with 3


def graphs_decision(
    setting: str,
    device: torch.device,
    world_size: int,
    precision: Precision,
    model: nn.Module,
    thaws: bool,
) -> tuple[bool, str]:
    """(on, why) for `run.cuda_graphs` = auto | true | false. `thaws`: a freeze schedule changes what is trained.

    `true` where a graph cannot be kept is a UserError naming the reason; `auto` then trains eagerly."""
    if setting == "false":
        return False, "off (run.cuda_graphs=false)"
    blockers = []
    if device.type != "cuda":
        blockers.append(f"CUDA graphs need a CUDA device and this run is on {device.type}")
    if world_size > 1:
        blockers.append("DistributedDataParallel's gradient all-reduce is not recorded here (several processes)")
    if precision.needs_scaler:
        blockers.append("fp16 with a gradient scaler is left eager (its unscale-and-skip step is not recorded here)")
    if thaws:
        blockers.append("finetune.unfreeze_every changes which tensors are trained between epochs")
    if any(getattr(m, "memory_efficient", False) for m in model.modules()):
        blockers.append("memory-efficient recomputation (checkpointing) keeps random states on the host")
    if not blockers:
        return True, f"on: each step after the first {WARMUP} replays one recorded CUDA graph"
    if setting == "true":
        raise UserError(f"run.cuda_graphs=true cannot be kept: {blockers[0]}; use run.cuda_graphs=auto or false")
    return False, f"off: {blockers[0]}"


class TrainStep:
    """One optimisation step on a batch, eager or as a replayed CUDA graph (`graphs`, CUDA only)."""

    def __init__(
        self,
        model: nn.Module,
        train_model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ema: WeightAverage | None,
        tally: StepTally,
        precision: Precision,
        device: torch.device,
        label_smoothing: float = 0.0,
        grad_clip: float = 0.0,
        graphs: bool = False,
        strict: bool = False,
        lr_on_device: bool | None = None,
    ) -> None:
        self.model, self.train_model, self.optimizer, self.scaler, self.ema = model, train_model, optimizer, scaler, ema
        self.tally, self.precision, self.device = tally, precision, device
        self.label_smoothing, self.grad_clip = label_smoothing, grad_clip
        self.graphs, self.strict = graphs, strict  # strict: run.cuda_graphs=true, a failed recording is an error
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None  # the recorded batch's (x, y)
        self.side: torch.cuda.Stream | None = None  # the warm-up's stream, one for all warm-up steps
        self.eager_steps = self.replays = 0
        self.lrs = [float(group["lr"]) for group in optimizer.param_groups]  # the host's copy: read without a wait
        if graphs if lr_on_device is None else lr_on_device:  # a tensor the graph reads, refilled every step
            for group in optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)

    def set_lr(self, base_lrs: list[float], factor: float) -> None:
        self.lrs = [base * factor for base in base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self.lrs, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # on CUDA a kernel with a scalar argument: no host wait
            else:
                group["lr"] = lr

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not self.graphs:
            self._step(x, y)
        else:
            with torch.cuda.device(self.device):  # streams and the capture belong to the run's GPU, not GPU 0
                self._graph_step(x, y)
        self.tally.count(len(y))

    def _graph_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.eager_steps < WARMUP:
            self._warm_up(x, y)
            return
        if self.graph is None:
            self._record(x, y)
        if self.graph is None:  # recording failed: said once, and this step and the rest run eagerly
            self._step(x, y)
            return
        assert self.static is not None
        self.static[0].copy_(x)  # (B, C, H, W) into the recorded addresses; same strides, no host wait
        self.static[1].copy_(y)
        self.graph.replay()
        self.replays += 1

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Everything a step computes, with device operations only (what the graph records)."""
        # autocast's cache of bf16 weight copies lives inside one step; a recorded graph keeps none across replays
        with autocast(self.device, self.precision.dtype, cache=not self.graphs):
            logits = self.train_model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)  # recorded: backward then writes fresh gradients each replay
        self.scaler.scale(loss).backward()  # fp16: the loss scaled up so that small gradients survive
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)  # no host read: the norm stays a tensor
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed; then the scale is lowered
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.tally.add(loss, logits, y if y.dim() == 1 else y.argmax(1))

    def _warm_up(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.side is None:
            self.side = torch.cuda.Stream(self.device)
        side = self.side
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), _quiet_capturable_warning():
            self._step(x, y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.eager_steps += 1

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record one step on copies of this batch (recording runs nothing; the caller replays it)."""
        self.static = (x.clone(), y.clone())  # clone keeps channels_last strides
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # gradients then live in the graph's own memory pool
        before = torch.cuda.current_stream(self.device)
        try:
            # thread_local: the streaming loader's reader thread may allocate pinned memory meanwhile
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(self.device), capture_error_mode="thread_local"):
                self._step(*self.static)
        except Exception as err:  # an operation that cannot be recorded (a host read in a custom layer, ...)
            torch.cuda.set_stream(before)  # a failed capture_end leaves the capture stream current otherwise
            self.graphs, self.static = False, None
            self.optimizer.zero_grad(set_to_none=True)
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if self.strict:
                raise UserError(
                    f"run.cuda_graphs=true, but this step cannot be recorded as a CUDA graph ({first_line}); "
                    "use run.cuda_graphs=auto or false"
                ) from err
            log.warning(
                "CUDA graph recording failed (%s); training eagerly (run.cuda_graphs=false skips the try)", first_line
            )
            return
        self.graph = graph

    def optimizer_state(self) -> dict:
        """The optimizer's state_dict with plain-number learning rates, as an eager run writes it."""
        state = self.optimizer.state_dict()
        groups = [{**g, "lr": lr} for g, lr in zip(state["param_groups"], self.lrs, strict=True)]
        return {**state, "param_groups": groups}

    def lr(self) -> float:
        """The first group's learning rate of the latest step, from the host's copy."""
        return self.lrs[0]


@contextlib.contextmanager
def _quiet_capturable_warning():
    """PyTorch warns once that a capturable optimizer stepped outside a capture: the warm-up does, on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*capturable=True.*")
        yield
