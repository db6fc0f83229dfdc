"""Scoring a model on a loader's batches: loss, top-1, top-5, the confusion matrix and per-class accuracy.

The trainer scores validation after each epoch and the final split once with it, and `resnetlab eval`
scores a saved run with it; the counts stay on the device until one read at the end, and under several
processes each scores its share of the images and the counts are summed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import BatchLoader
from .training.device import autocast


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
