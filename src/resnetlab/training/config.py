"""Training configuration: typed dataclasses, YAML recipes, `key=value` overrides, validation up front.

    cfg = load_config("fashion_mnist_fast", ["epochs=3", "optim.lr=0.2"])   # a shipped recipe, or a YAML path

Dotted keys reach any field (`schedule.milestones=[32000,48000]`); every field name found in one section only
works alone (`threads=2` is run.threads), and SHORT_KEYS names the rest (`model=`, `data=`, `name=`, `lr=`). Values are
read as YAML scalars or lists. Unknown keys and wrong types are errors that name the closest valid key,
raised before anything is written.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, did_you_mean


@dataclass
class ModelConfig:
    name: str = ""  # a registered model; empty: the init weights' model, else resnet20
    args: dict[str, Any] = field(default_factory=dict)  # architecture overrides, e.g. {drop_path_rate: 0.1}


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # a dataset name or a path (image folder, IDX folder, CIFAR tarball)
    path: str = ""  # explicit location of a named dataset's files
    val_fraction: float = 0.1  # validate (select the best epoch) on this stratified part of train; 0: train on all
    split_seed: int = 0  # chooses the held-out images (and limit_* samples), independently of run.seed
    image_size: int = 0  # image folders: square side (0: the folder's median short side, within 16..224, or
    # the init weights' size); named datasets keep their size
    channels: int = 0  # image folders: 1 or 3 (0: 1 where every image is grey, else 3; or the init weights')
    centre_crop: float = 0.0  # image folders: cached at image_size / this, evaluated on the centre image_size
    # square (Resize + CenterCrop); 0: the init weights', else 0.875 (224 of 256); 1: no border
    crop_padding: int = 4  # pad + random crop; 0 turns it off
    pad_mode: str = "zeros"  # what pad-crop pads with: zeros, or the mirrored border
    hflip: str = "auto"  # "auto" follows the dataset (no flips for digits), or "true" / "false"
    cutout: int = 0  # blank a random square of this side in every training image (DeVries & Taylor 2017); 0: off
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha) blend of image pairs and labels (Zhang et al. 2018)
    cutmix: float = 0.0  # alpha of CutMix: a box pasted from another image, labels by area (Yun et al. 2019)
    brightness: float = 0.0  # colour jitter, as torchvision's ColorJitter: factors in [1 - b, 1 + b]
    contrast: float = 0.0  # contrast factors in [1 - c, 1 + c]
    saturation: float = 0.0  # saturation factors in [1 - s, 1 + s] (RGB data)
    hue: float = 0.0  # up to this fraction of a turn of the colour circle (<= 0.5)
    grey: float = 0.0  # probability of turning an image grey (RGB data)
    erase: float = 0.0  # probability of random erasing (Zhong et al. 2017): a box of 2-33% of the area
    crop_scale: list[float] = field(default_factory=list)  # [min, max] area share: random resized crops (the
    # ImageNet recipe's [0.08, 1]) in place of crop_padding's pad-crop; empty: off
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # their width / height range
    rotate: float = 0.0  # rotation up to this many degrees either way (with shear, zoom, translate: one affine warp)
    shear: float = 0.0  # x-shear up to this many degrees either way
    zoom: float = 0.0  # x and y zoom factors each in [1 - zoom, 1 + zoom]
    translate: float = 0.0  # shifts up to this share of the side
    policy: str = "none"  # "randaugment" (2 operations at magnitude 9 of 31) or "trivialaugment" (TrivialAugment
    # Wide: 1 operation, any magnitude), each image its own, as torchvision's defaults (data/policy.py)
    tta: str = "none"  # "flip": also score the final split by averaging each image with its mirror (reported apart)
    stream: str = "auto"  # image-folder caches: "auto" holds one whole when it takes <= 1/4 of free memory, else
    # reads each batch from the memory-mapped cache; "true" / "false" force it (the batches are the same)
    limit_train: int = 0  # use a stratified, seeded sample of N training images (0: all)
    limit_val: int = 0  # and of N validation images
    mean: list[float] = field(default_factory=list)  # normalisation; empty: from the init weights, else the data
    std: list[float] = field(default_factory=list)  # per channel, as mean


@dataclass
class OptimConfig:
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.1  # peak learning rate (the schedule multiplies it)
    batch_size: int = 128  # images per step (under torchrun: per step of all processes together)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum (SGD)
    weight_decay: float = 1e-4  # L2 penalty (SGD) or decoupled decay (AdamW)
    no_decay_norm_bias: bool = False  # exempt BatchNorm parameters and biases from weight decay
    label_smoothing: float = 0.0  # share of the target spread over all classes (Szegedy et al. 2016)
    grad_clip: float = 0.0  # clip the global gradient norm to this (0: off)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off), e.g. 0.999


@dataclass
class ScheduleConfig:
    name: str = "multistep"  # "multistep", "cosine", "onecycle" or "constant"
    epochs: int = 30  # passes over the training images
    iterations: int = 0  # > 0: train for exactly this many steps instead of `epochs` (the paper counts 64k)
    unit: str = "epoch"  # milestones and warmup counted in "epoch" or "iteration"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # < 1: fractions of the run
    gamma: float = 0.1  # multistep: lr multiplied by this at each milestone
    warmup: float = 0.0  # linear warm-up length (in `unit`)
    min_lr_ratio: float = 0.0  # cosine / onecycle end at lr * this
    pct_start: float = 0.25  # onecycle: share of the run spent rising


@dataclass
class FinetuneConfig:
    freeze: str = ""  # "backbone" (train the head only), or parts by name: "stem,layer1,layer2"
    freeze_bn: bool = False  # keep every BatchNorm's running statistics as loaded
    backbone_lr: float = 1.0  # the backbone's learning rate is lr times this (the head's is lr)
    unfreeze_every: int = 0  # thaw one frozen part (from the head down) every N epochs (0: never)


@dataclass
class RunConfig:
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    precision: str = "auto"  # "auto" (bf16 on capable CPUs and GPUs), "bf16", "fp16", "fp32"
    channels_last: str = "auto"  # NHWC memory layout: "auto" (CUDA and CPU, where it measured faster), "true", "false"
    compile: bool = False  # torch.compile, falling back to eager if it fails
    cuda_graphs: str = "auto"  # record the training step once and replay it (CUDA): "auto" (on where the run allows
    # it; the first lines say why not), "true", "false"
    seed: int = 0  # weights' initialisation, batch order and augmentation (the split has its own split_seed)
    threads: int = 0  # CPU threads for torch (0: all cores)
    quiet: bool = False  # one line per epoch instead of a progress bar
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0: at epoch ends only)
    checkpoint_minutes: float = 10.0  # and whenever this many minutes passed since the last one (0: never)
    log_every: int = 10  # read the running loss and accuracy back from the device (and refresh the progress bar)
    # every N steps: in between, a GPU runs ahead with no host sync
    nproc: int = 0  # > 1: start this many processes on this machine through torchrun's launcher (DDP)
    backend: str = "auto"  # under torchrun: "auto" (nccl on CUDA, gloo on CPU), "gloo", "nccl"
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)


@dataclass
class OutputConfig:
    out: str = "runs"  # the folder that holds run directories
    name: str = ""  # run directory name (default: <model>-<data>); -2, -3, ... when it exists
    resume: str = ""  # a run directory (or its last.pt) to continue exactly
    init: str = ""  # weights to start from (a run, a .safetensors, a torchvision/timm .pth): new optimiser
    tensorboard: bool = True  # write TensorBoard events too, when tensorboard is installed


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


SHORT_KEYS = {
    "model": "model.name",
    "data": "data.name",
    "epochs": "schedule.epochs",
    "iterations": "schedule.iterations",
    "schedule": "schedule.name",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.optimizer",
    "weight_decay": "optim.weight_decay",
    "label_smoothing": "optim.label_smoothing",
    "ema": "optim.ema",
    "device": "run.device",
    "precision": "run.precision",
    "compile": "run.compile",
    "nproc": "run.nproc",
    "sync_bn": "run.sync_bn",
    "backend": "run.backend",
    "seed": "run.seed",
    "quiet": "run.quiet",
    "name": "output.name",
    "out": "output.out",
    "resume": "output.resume",
    "init": "output.init",
    "stream": "data.stream",
    "tta": "data.tta",
    "limit_train": "data.limit_train",
    "limit_val": "data.limit_val",
    "val_fraction": "data.val_fraction",
    "split_seed": "data.split_seed",
    "freeze": "finetune.freeze",
    "freeze_bn": "finetune.freeze_bn",
    "backbone_lr": "finetune.backbone_lr",
    "unfreeze_every": "finetune.unfreeze_every",
}

CHOICES = {
    "optim.optimizer": ("sgd", "adamw"),
    "schedule.name": ("multistep", "cosine", "onecycle", "constant"),
    "schedule.unit": ("epoch", "iteration"),
    "run.precision": ("auto", "bf16", "fp16", "fp32"),
    "run.channels_last": ("auto", "true", "false"),
    "run.cuda_graphs": ("auto", "true", "false"),
    "data.hflip": ("auto", "true", "false"),
    "data.pad_mode": ("zeros", "reflect"),
    "data.stream": ("auto", "true", "false"),
    "data.tta": ("none", "flip"),
    "data.policy": ("none", "randaugment", "trivialaugment"),
    "run.backend": ("auto", "gloo", "nccl"),
}


def all_keys() -> list[str]:
    """Every dotted key of TrainConfig, e.g. 'optim.lr'."""
    return [f"{s.name}.{f.name}" for s in fields(TrainConfig) for f in fields(s.default_factory())]  # type: ignore[misc]


def unique_field(name: str) -> str | None:
    """The dotted key of a field name found in one section only ('threads' -> 'run.threads'), else None."""
    matches = [dotted for dotted in all_keys() if dotted.split(".")[1] == name]
    return matches[0] if len(matches) == 1 else None


def _field_type(section: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(section))
    return hints[name]


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Check (and gently convert) one value against its annotated type; a ConfigError names the key."""
    origin = typing.get_origin(kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as text; Python reads it as a number
        try:
            return float(value)
        except ValueError:
            pass
    if kind is str and isinstance(value, bool):  # YAML reads `true` as a bool; "true"/"false" fields want text
        return "true" if value else "false"
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind in (int, float, str, bool):
        if type(value) is not kind:
            raise ConfigError(f"{key}={value!r} should be {kind.__name__}, not {type(value).__name__}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            value = [value]
        (inner,) = typing.get_args(kind)
        return [_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} should be a mapping such as {{drop_path_rate: 0.1}}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def apply(cfg: TrainConfig, key: str, value: Any) -> None:
    """Set one dotted (or short) key, checking that it exists and that the value has the right type."""
    if not isinstance(key, str):  # YAML allows any key (`? [1, 2]`, `?` alone is a null one)
        raise ConfigError(f"config key {key!r} is not a name; keys are words such as epochs or optim.lr")
    dotted = SHORT_KEYS.get(key) or unique_field(key) or key
    if dotted.startswith("model.args."):  # free-form architecture arguments: checked when the model is built
        cfg.model.args[dotted.split(".", 2)[2]] = value
        _given(cfg).add(dotted)
        return
    parts = dotted.split(".")
    valid = all_keys()
    if len(parts) != 2 or dotted not in valid:
        raise ConfigError(f"unknown config key {key!r}{did_you_mean(key, valid + list(SHORT_KEYS))}")
    section = getattr(cfg, parts[0])
    setattr(section, parts[1], _coerce(dotted, value, _field_type(section, parts[1])))
    _given(cfg).add(dotted)


def _given(cfg: TrainConfig) -> set[str]:
    """The dotted keys a recipe, an override or a keyword argument set on `cfg` (not its dataclass defaults)."""
    if "_given" not in vars(cfg):
        cfg._given = set()  # type: ignore[attr-defined]
    return cfg._given  # type: ignore[attr-defined]


def get(cfg: TrainConfig, dotted: str) -> Any:
    """The value at a dotted key ('optim.lr', or 'model.args.drop_path_rate': None when not set)."""
    section, _, name = dotted.partition(".")
    if section == "model" and name.startswith("args."):
        return cfg.model.args.get(name.split(".", 1)[1])
    return getattr(getattr(cfg, section), name)


def given_keys(cfg: TrainConfig) -> list[str]:
    """Every key the user set: those applied by name, and any that differ from the defaults (a TrainConfig
    built directly in Python records nothing else)."""
    default = TrainConfig()
    differing = {k for k in all_keys() if k != "model.args" and get(cfg, k) != get(default, k)}
    differing |= {f"model.args.{name}" for name in cfg.model.args}
    return sorted(_given(cfg) | differing)


# What a setting changes, for resume=: what is learned (refused when it differs from the run's), only the
# arithmetic (applied; the resumed run is no longer bit-identical), or nothing computed (applied silently).
ARITHMETIC_KEYS = (
    "run.device",
    "run.precision",
    "run.channels_last",
    "run.compile",
    "run.cuda_graphs",
    "run.threads",
    "run.nproc",
    "run.backend",
)
DISPLAY_KEYS = (
    "data.stream",  # where the images are read from, not what they are
    "data.tta",  # an extra figure at the end, nothing learned
    "run.quiet",
    "run.checkpoint_every",
    "run.checkpoint_minutes",
    "run.log_every",
    "output.tensorboard",
    "output.out",
    "output.name",
    "output.resume",
)


def setting_kind(dotted: str) -> str:
    """'learning', 'arithmetic' or 'display' (see above)."""
    if dotted in ARITHMETIC_KEYS:
        return "arithmetic"
    if dotted in DISPLAY_KEYS:
        return "display"
    return "learning"


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """['lr=0.1', 'schedule.milestones=[30,60]'] -> [('lr', 0.1), ('schedule.milestones', [30, 60])]."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{item!r} is not key=value; for example epochs=10 or model=resnet56")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        pairs.append((key.strip(), "" if value is None else value))
    return pairs


def from_dict(values: dict[str, Any], cfg: TrainConfig | None = None) -> TrainConfig:
    """Fill a TrainConfig from a nested mapping (a recipe or a saved config.yaml)."""
    cfg = cfg or TrainConfig()
    for section, entries in (values or {}).items():
        if not isinstance(section, str):
            raise ConfigError(f"config key {section!r} is not a name; keys are words such as epochs or optim.lr")
        if section not in {f.name for f in fields(TrainConfig)}:
            if not isinstance(entries, dict):  # a short key at the top level of a recipe
                apply(cfg, section, entries)
                continue
            raise ConfigError(f"unknown config section {section!r}{did_you_mean(section, all_keys())}")
        if not isinstance(entries, dict):
            apply(cfg, section, entries)
            continue
        for key, value in entries.items():
            if section == "model" and key == "args":
                cfg.model.args = _coerce("model.args", value, dict[str, Any])
                _given(cfg).update(f"model.args.{name}" for name in cfg.model.args)
            else:
                apply(cfg, f"{section}.{key}", value)
    return cfg


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A recipe file (optional), then key=value overrides on top, then validation."""
    cfg = TrainConfig()
    if recipe:
        from ..recipes import recipe_path

        path = recipe_path(recipe)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{recipe} is not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{recipe} should hold a mapping of sections (model:, data:, optim:, ...)")
        cfg = from_dict(values, cfg)
    for key, value in parse_overrides(overrides or []):
        apply(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Values that parse but cannot work: each error names the key and what would."""
    for key in all_keys():
        value = get(cfg, key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}={v} is not a finite number; give a value such as {get(TrainConfig(), key)}")
    for dotted, choices in CHOICES.items():
        section, name = dotted.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{dotted}={value!r} is not one of {', '.join(choices)}")
    positive = {
        "optim.lr": cfg.optim.lr,
        "optim.batch_size": cfg.optim.batch_size,
        "run.log_every": cfg.run.log_every,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}={value} must be positive")
    if cfg.schedule.epochs < 1 and cfg.schedule.iterations < 1:
        raise ConfigError(f"schedule.epochs={cfg.schedule.epochs} must be >= 1 (or set schedule.iterations)")
    for key, value in (
        ("optim.ema", cfg.optim.ema),
        ("optim.label_smoothing", cfg.optim.label_smoothing),
        ("data.val_fraction", cfg.data.val_fraction),
        ("schedule.pct_start", cfg.schedule.pct_start),
    ):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{key}={value} must be in [0, 1)")
    for key in (
        "optim.weight_decay",
        "optim.grad_clip",
        "optim.momentum",
        "data.limit_train",
        "data.limit_val",
        "data.split_seed",
        "data.crop_padding",
        "data.cutout",
        "data.mixup",
        "data.cutmix",
        "schedule.warmup",
        "run.threads",
        "run.checkpoint_every",
        "run.checkpoint_minutes",
        "run.nproc",
        "schedule.iterations",
        "finetune.backbone_lr",
        "finetune.unfreeze_every",
    ):
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) < 0:
            raise ConfigError(f"{key}={getattr(getattr(cfg, section), name)} must be >= 0")
    if cfg.data.std and min(cfg.data.std) <= 0:
        raise ConfigError(f"data.std={cfg.data.std} must be positive numbers, such as 0.25 per channel")
    if len(cfg.data.mean) != len(cfg.data.std):
        raise ConfigError(f"data.mean={cfg.data.mean} and data.std={cfg.data.std} need one value per channel each")
    if sorted(cfg.schedule.milestones) != list(cfg.schedule.milestones):
        raise ConfigError(f"schedule.milestones={cfg.schedule.milestones} must be increasing")
    if cfg.data.centre_crop and not 0.25 <= cfg.data.centre_crop <= 1:
        raise ConfigError(
            f"data.centre_crop={cfg.data.centre_crop} must be in [0.25, 1] (0.875: 224 of 256; 1: no border)"
        )
    if cfg.data.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels={cfg.data.channels} must be 1 (grayscale) or 3 (RGB)")
    if cfg.output.resume and cfg.output.init:
        raise ConfigError(
            "resume= continues a run (weights, optimiser, position); init= starts a new run from "
            "weights; give one of them"
        )
    dev = cfg.run.device
    if dev not in ("auto", "cpu", "mps") and not (dev == "cuda" or dev.startswith("cuda:")):
        raise ConfigError(f"run.device={dev!r} is not auto, cpu, cuda, cuda:N or mps")


def key_docs() -> list[tuple[str, str, str]]:
    """(dotted key, default, meaning) for every key, the meaning read from the dataclasses' own comments (the one
    place it is written): the comment after a field, and comment lines directly under it."""
    rows = []
    default = TrainConfig()
    for section in fields(TrainConfig):
        lines = inspect.getsource(type(getattr(default, section.name))).splitlines()
        docs: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in lines:
            match = re.match(r"\s+(\w+): [^#]*?(?:#\s*(.*))?$", line)
            if match and not line.lstrip().startswith("#"):
                current = docs.setdefault(match.group(1), [match.group(2) or ""])
            elif line.lstrip().startswith("#") and current is not None:
                current.append(line.strip().lstrip("#").strip())
            else:
                current = None
        for f in fields(getattr(default, section.name)):
            dotted = f"{section.name}.{f.name}"
            value = get(default, dotted)
            shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            rows.append((dotted, shown, " ".join(w for w in docs.get(f.name, []) if w)))
    return rows


def keys_help() -> str:
    """The text of `resnetlab train --help`'s key list: each key, its short name, default and meaning."""
    short_of = {dotted: short for short, dotted in SHORT_KEYS.items()}
    for dotted in all_keys():
        if dotted not in short_of and unique_field(dotted.split(".")[1]) == dotted:
            short_of[dotted] = dotted.split(".")[1]
    out, section = [], ""
    for dotted, shown, doc in key_docs():
        if dotted.split(".")[0] != section:
            section = dotted.split(".")[0]
            out.append(f"{section}:")
        name = dotted + (f" ({short_of[dotted]})" if dotted in short_of and short_of[dotted] != dotted else "")
        choices = f" [{'|'.join(CHOICES[dotted])}]" if dotted in CHOICES else ""
        out.append(f"  {name}={shown}{choices}" + (f"  {doc}" if doc else ""))
    return "\n".join(out)
