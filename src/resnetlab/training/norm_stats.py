"""BatchNorm running statistics that are still mostly their initial values, re-estimated before evaluation.

In training mode BatchNorm normalises with each batch's statistics and keeps an exponential average
(momentum 0.1) for evaluation. That average starts at mean 0 / variance 1 and forgets its start as
0.9^k: after the 9 steps of a small fine-tuning run 39% of every running variance is still the initial 1,
while the network's activations may have a variance of 0.01 or 100. The model then scores at chance in
evaluation mode although it classifies every training batch right (this was the "fine-tuning at chance
level" report). While any trainable BatchNorm layer has seen fewer than YOUNG batches, its statistics are
re-estimated before evaluation as a plain average over a few fixed batches of training images (what
torch.optim.swa_utils.update_bn does for SWA, restricted here to those layers); frozen layers keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

YOUNG = 100  # batches: 0.9^100 = 3e-5 of the initial value left; beyond this the average is the usual one
BATCHES = 10  # fixed training batches (no augmentation) averaged per re-estimate


def young_norms(model: nn.Module, any_age: bool = False) -> list[str]:
    """Names of the trainable BatchNorm layers whose running averages are still dominated by their start
    (`any_age`: every trainable one, for an EMA of the weights, whose averaged statistics forget their
    start far more slowly, over about 1 / (1 - decay) steps)."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.training  # frozen parts are in eval mode and keep their statistics
        and m.track_running_stats
        and m.momentum is not None
        and (any_age or int(m.num_batches_tracked) < YOUNG)
    ]


@torch.no_grad()
def reestimate(model: nn.Module, names: list[str], batches: Iterable[torch.Tensor]) -> None:
    """Replace the running statistics of the layers `names` by their plain average over `batches`; every
    other module keeps its state (the others run in eval mode meanwhile, so nothing else is updated)."""
    modules = dict(model.named_modules())
    modes = {name: m.training for name, m in modules.items()}
    model.eval()
    chosen = [modules[n] for n in names]
    momenta = [m.momentum for m in chosen]
    counts = [m.num_batches_tracked.clone() for m in chosen]  # the age of the average is its training age
    for m in chosen:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    for x in batches:
        model(x)
    for m, momentum, count in zip(chosen, momenta, counts):
        m.momentum = momentum
        m.num_batches_tracked.copy_(count)
    for name, m in modules.items():
        m.training = modes[name]
