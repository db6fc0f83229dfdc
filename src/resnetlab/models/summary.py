"""What a network holds and costs: parameters, per-layer output shapes, FLOPs (multiply-adds)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters in the PyTorch convention: weights and BN gamma/beta, not running statistics."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of one image (torch's FLOP counter counts 2 per multiply-add)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *input_size))
    model.train(was_training)
    return counter.get_total_flops() // 2


@torch.no_grad()
def cost_on_meta(name: str, input_size: tuple[int, int, int] | None = None) -> tuple[int, int]:
    """(parameters, multiply-adds of one image) of a registered model at its own input size unless told, counted
    on the meta device: shapes only, so a VGG-19 costs neither memory nor arithmetic."""
    from .registry import create_model, model_info

    size = input_size or model_info(name).input_size
    with torch.device("meta"):
        model = create_model(name, in_chans=size[0]).eval()
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.zeros(1, *size))
    return count_params(model), counter.get_total_flops() // 2


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


@torch.no_grad()
def layer_table(model: nn.Module, input_size: tuple[int, int, int], depth: int = 2) -> list[LayerRow]:
    """One row per module `depth` levels down (layer1.0 is depth 2), in the order they run."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if not name or name.count(".") + 1 > depth:
            continue
        is_leaf_at_depth = name.count(".") + 1 == depth or not any(True for _ in module.children())
        if not is_leaf_at_depth:
            continue

        def record(mod: nn.Module, _inp: object, out: object, name: str = name) -> None:
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
            rows.append(LayerRow(name, type(mod).__name__, shape, count_params(mod)))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def human(n: float) -> str:
    """1_689_512 -> '1.69M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def format_summary(model: nn.Module, name: str, input_size: tuple[int, int, int], depth: int = 2) -> str:
    """The text `resnetlab summary` prints."""
    rows = [r for r in layer_table(model, input_size, depth) if r.kind != "Identity"]  # no-ops are clutter
    header = ("layer", "type", "output shape", "params")
    table = [header] + [(r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = [f"{name}  input {'x'.join(map(str, input_size))}"]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    total, trainable = count_params(model), count_params(model, trainable_only=True)
    macs = count_macs(model, input_size)
    lines += [
        "",
        f"parameters: {total:,} ({human(total)}), trainable {trainable:,}",
        f"FLOPs (multiply-adds) per image: {macs:,} ({human(macs)})",
    ]
    return "\n".join(lines)
