"""Fine-tuning controls: which parts of a network train, at what learning rate, and from which epoch.

Every parameter belongs to one named part: "stem" (what runs before the first stage), each stage
("layer1".., or "denseblock1".. with its transition), and "head" (the classifier). `freeze="backbone"`
freezes all but the head (a linear probe); `freeze="stem,layer1"` freezes the parts named. The
BatchNorm layers of frozen parts keep their statistics (eval mode), so a frozen part is bitwise
unchanged by training; `freeze_bn=true` keeps every BatchNorm's statistics. `unfreeze_every=N` thaws
the frozen parts one by one, from the head down, every N epochs (gradual unfreezing, Howard & Ruder 2018).
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .config import TrainConfig


def part_of(param_name: str) -> str:
    """'layer2.0.conv1.weight' -> 'layer2'; 'fc.bias' -> 'head'; 'conv1.weight' -> 'stem'."""
    first, _, rest = param_name.partition(".")
    if first in ("fc", "classifier"):
        return "head"
    if first.startswith("layer"):
        return first
    if first == "features":  # DenseNet: features.denseblockN / features.transitionN / features.norm5
        second = rest.partition(".")[0]
        if second.startswith("denseblock"):
            return second
        if second.startswith("transition"):
            return "denseblock" + second.removeprefix("transition")
        return "stem" if second.endswith("0") else "final"
    if first in ("norm", "act"):
        return "final"  # v2's closing BN-ReLU
    return "stem"


def namer(model: nn.Module):
    """The model's own `part_of` where it names its parts (VGG: stage1.., mlp), else the key-name rules above.
    Expects the model itself, not a DistributedDataParallel or compiled wrapper (whose names carry a prefix)."""
    if hasattr(model, "module") or hasattr(model, "_orig_mod"):
        raise TypeError("fine-tuning's parts are named on the model itself, not on its DDP or compiled wrapper")
    return getattr(model, "part_of", part_of)


def parts(model: nn.Module) -> list[str]:
    """The model's parts in forward order: stem, stages..., final (if any), head."""
    seen: list[str] = []
    part_of = namer(model)
    for name, _ in model.named_parameters():
        part = part_of(name)
        if part not in seen:
            seen.append(part)
    return seen


def frozen_parts(model: nn.Module, spec: str) -> list[str]:
    """Parse `freeze=`: '' (nothing), 'backbone' (all but the head), or a comma list of part names."""
    spec = spec.strip()
    if not spec:
        return []
    available = parts(model)
    if spec == "backbone":
        return [p for p in available if p != "head"]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(
            f"freeze={spec!r}: no part named {', '.join(unknown)}; this model has "
            f"{', '.join(available)} (or use freeze=backbone)"
        )
    return [p for p in available if p in names]


def still_frozen(frozen: list[str], epoch: int, unfreeze_every: int) -> list[str]:
    """The frozen parts at `epoch`: every `unfreeze_every` epochs the one nearest the head thaws."""
    if not unfreeze_every:
        return frozen
    thawed = epoch // unfreeze_every
    return frozen[: max(len(frozen) - thawed, 0)]


def apply_freeze(model: nn.Module, frozen: list[str], freeze_bn: bool) -> None:
    """Set requires_grad, and put BatchNorm layers of frozen parts (or all, with freeze_bn) in eval mode.

    Call after every model.train(): train() would switch the BatchNorm layers back.
    """
    frozen_set, part_of = set(frozen), namer(model)
    for name, p in model.named_parameters():
        p.requires_grad_(part_of(name) not in frozen_set)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if freeze_bn or part_of(name + ".weight") in frozen_set:
                module.eval()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Parameter groups by (head or backbone) x (decayed or not): the backbone's lr scaled by backbone_lr."""
    groups: dict[tuple[bool, bool], list] = {}
    part_of = namer(model)
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            is_head = part_of(full) == "head"
            is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            # norms, biases and 0-d scalars (learn_residual_scale's weights: decay would pull ReZero's toward 0)
            no_decay = cfg.optim.no_decay_norm_bias and (is_norm or name == "bias" or p.ndim == 0)
            groups.setdefault((is_head, no_decay), []).append(p)
    return [
        {
            "params": params,
            "lr": cfg.optim.lr * (1.0 if is_head else cfg.finetune.backbone_lr),
            "weight_decay": 0.0 if no_decay else cfg.optim.weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]
