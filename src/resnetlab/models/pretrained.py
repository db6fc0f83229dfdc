"""Load weights trained elsewhere into a resnetlab model: resnetlab runs and safetensors, torchvision and
timm state dicts (.pth, .pt, .safetensors). Keys already match for the ResNet, SE-ResNet and DenseNet
families; wrappers (`module.` from DataParallel/DDP, `model.`/`state_dict` nesting) are unwrapped. A head
of another size is dropped (the model keeps its fresh one); another number of input channels adapts
the first convolution as timm does (summed for 1 channel, repeated and rescaled otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import Checkpoint, is_checkpoint
from ..errors import UserError, near_path
from ..files import load_plain, read_weights
from ..records import WeightsMeta

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "ema", "state_dict_ema")


@dataclass
class LoadReport:
    loaded: int = 0
    dropped: list[str] = field(default_factory=list)  # in the file, not used (head of another size, extra keys)
    adapted: list[str] = field(default_factory=list)  # reshaped to fit (first conv's input channels)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file (kept at their init)
    meta: WeightsMeta | None = None

    def line(self, source: str) -> str:
        parts = [f"loaded {self.loaded} tensors from {source}"]
        if self.dropped:
            parts.append(f"dropped {', '.join(self.dropped)}")
        if self.adapted:
            parts.append(f"adapted {', '.join(self.adapted)}")
        if self.missing:
            parts.append(f"newly initialised {', '.join(self.missing)}")
        return "; ".join(parts)


def resolve_weights_path(source: str | Path) -> Path:
    """A run directory means its best.safetensors (else last.safetensors); a file means itself."""
    path = Path(source).expanduser()
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path} holds no best.safetensors or last.safetensors; is it a finished resnetlab run?")
    if not path.is_file():
        raise UserError(
            f"weights {source} not found{near_path(source)}; give a run directory, a .safetensors or a .pth/.pt file"
        )
    return path


def read_state_dict(source: str | Path) -> tuple[dict[str, torch.Tensor], WeightsMeta | None]:
    """(state dict, resnetlab metadata, or None for foreign weights) from any supported weights file, unwrapped."""
    path = resolve_weights_path(source)
    if path.suffix == ".safetensors":
        state, meta = read_weights(path)
        return state, WeightsMeta.read(meta, path)
    obj = load_plain(path, "weights file")
    if is_checkpoint(obj):  # a run's last.pt: its model's weights, and its metadata
        checkpoint = Checkpoint.from_dict(obj, path)
        return checkpoint.model, checkpoint.weights_meta
    while isinstance(obj, dict) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        raise UserError(f"{path} holds no state dict of tensors; expected what model.state_dict() returns")
    return obj, None


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(O, I, k, k) -> (O, in_chans, k, k): sum for grayscale; else repeat and rescale (timm's rule).

    Summing makes a grey image fed as 1 channel give exactly what the RGB model gives on that image
    replicated three times.
    """
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    repeats = math.ceil(in_chans / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def first_conv_key(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], meta: WeightsMeta | None = None, new_head: bool = False
) -> LoadReport:
    """Copy every matching tensor of `state` into `model`; report what was loaded, dropped, adapted.

    `new_head=True` keeps the model's fresh classifier even where the sizes match (other classes).
    """
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    head = model.head_prefix() if hasattr(model, "head_prefix") else "fc."  # VGG: classifier.6., its MLP kept
    own = model.state_dict()
    report = LoadReport(meta=meta)
    conv_key = first_conv_key(model)
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.dropped.append(key)
            continue
        target = own[key]
        if new_head and key.startswith(head):
            report.dropped.append(f"{key} (other classes)")
            continue
        if (
            key == conv_key
            and value.dim() == 4
            and value.shape[1] != target.shape[1]
            and value.shape[0] == target.shape[0]
        ):
            value = adapt_input_conv(value, target.shape[1])
            report.adapted.append(f"{key} ({state[key].shape[1]} -> {target.shape[1]} input channels)")
        if value.shape != target.shape:
            report.dropped.append(f"{key} {tuple(value.shape)} != {tuple(target.shape)}")
            continue
        usable[key] = value
    if not usable:
        raise UserError("none of the weights fit this model: the keys or shapes are of another architecture")
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    report.missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    return report


def load_pretrained(model: nn.Module, source: str | Path) -> LoadReport:
    """Read `source` and load what fits into `model` (see load_into)."""
    state, meta = read_state_dict(source)
    return load_into(model, state, meta)
