"""An exponential moving average of the weights, updated without reading anything back to the host.

    ema = WeightAverage(model, decay=0.999)   # ema.module: the averaged copy, evaluated and saved
    ema.update(model)                          # after every optimiser step

The same arithmetic and state_dict as torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn and
use_buffers=True (checkpoints of either load into the other): the first update copies the weights, later
ones move every floating parameter and buffer (BatchNorm's running statistics too) a (1 - decay) step
towards the model's; integer counters (num_batches_tracked) are copied, where AveragedModel averages and
truncates them. AveragedModel asks `n_averaged == 0` of a device tensor at every update, a host read
that stalls a GPU's queue; here whether the copy was made is known on the host.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage(nn.Module):
    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=_device_of(model)))
        self.started = False  # host copy of n_averaged > 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [t.detach() for t in (*model.parameters(), *model.buffers())]
        floating = [(a, b) for a, b in zip(mine, theirs, strict=True) if a.is_floating_point()]
        if self.started and floating:
            averaged, current = zip(*floating)
            torch._foreach_lerp_(list(averaged), list(current), 1.0 - self.decay)
        else:
            torch._foreach_copy_([a for a, _ in floating], [b for _, b in floating])
        for a, b in zip(mine, theirs, strict=True):  # counters (num_batches_tracked) follow the model
            if not a.is_floating_point():
                a.copy_(b)
        self.n_averaged += 1
        self.started = True

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict, assign)
        self.started = bool(self.n_averaged.item() > 0)  # one read, when resuming
        return result


def _device_of(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")
