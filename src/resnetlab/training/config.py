"""The training settings: their schema (sections of typed fields, each with its default, its meaning and,
where the values are a fixed few, its choices) and the validation of values that parse but cannot work.

Reading settings (recipes, `key=value` overrides, short keys, the help text) lives in settings.py; which
settings resume= may change lives in resume.py.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import yaml

from ..errors import ConfigError


def setting(default: Any, meaning: str, *, choices: tuple[str, ...] = ()) -> Any:
    """A config field whose meaning (shown by `train --help`) and allowed values are written once, here."""
    metadata = {"help": meaning, "choices": choices}
    if isinstance(default, list | dict):  # a fresh copy per config: dataclasses refuse a shared mutable default
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ModelConfig:
    name: str = setting("", "a registered model; empty: the init weights' model, else resnet20")
    args: dict[str, Any] = setting({}, "architecture overrides, e.g. {drop_path_rate: 0.1}")


@dataclass
class DataConfig:
    name: str = setting("fashion-mnist", "a dataset name or a path (image folder, IDX folder, CIFAR tarball)")
    path: str = setting("", "explicit location of a named dataset's files")
    val_fraction: float = setting(
        0.1,
        "validate (select the best epoch) on this stratified part of train; 0: train on all",
    )
    split_seed: int = setting(0, "chooses the held-out images (and limit_* samples), independently of run.seed")
    image_size: int = setting(
        0,
        "image folders: square side (0: the folder's median short side, within 16..224, or the init weights' "
        "size); named datasets keep their size",
    )
    channels: int = setting(0, "image folders: 1 or 3 (0: 1 where every image is grey, else 3; or the init weights')")
    centre_crop: float = setting(
        0.0,
        "image folders: cached at image_size / this, evaluated on the centre image_size square (Resize + "
        "CenterCrop); 0: the init weights', else 0.875 (224 of 256); 1: no border",
    )
    crop_padding: int = setting(4, "pad + random crop; 0 turns it off")
    pad_mode: str = setting(
        "zeros",
        "what pad-crop pads with: zeros, or the mirrored border",
        choices=("zeros", "reflect"),
    )
    hflip: str = setting(
        "auto",
        '"auto": as the data declares (a named dataset: none for digits and letters; an image folder: flipped, '
        'unless a resnetlab.yaml beside its class folders says hflip: false), or "true" / "false"',
        choices=("auto", "true", "false"),
    )
    cutout: int = setting(
        0,
        "blank a random square of this side in every training image (DeVries & Taylor 2017); 0: off",
    )
    mixup: float = setting(
        0.0,
        "alpha of mixup's Beta(alpha, alpha) blend of image pairs and labels (Zhang et al. 2018)",
    )
    cutmix: float = setting(0.0, "alpha of CutMix: a box pasted from another image, labels by area (Yun et al. 2019)")
    brightness: float = setting(0.0, "colour jitter, as torchvision's ColorJitter: factors in [1 - b, 1 + b]")
    contrast: float = setting(0.0, "contrast factors in [1 - c, 1 + c]")
    saturation: float = setting(0.0, "saturation factors in [1 - s, 1 + s] (RGB data)")
    hue: float = setting(0.0, "up to this fraction of a turn of the colour circle (<= 0.5)")
    grey: float = setting(0.0, "probability of turning an image grey (RGB data)")
    erase: float = setting(0.0, "probability of random erasing (Zhong et al. 2017): a box of 2-33% of the area")
    crop_scale: list[float] = setting(
        [],
        "[min, max] area share: random resized crops (the ImageNet recipe's [0.08, 1]) in place of "
        "crop_padding's pad-crop; empty: off",
    )
    crop_ratio: list[float] = setting([3 / 4, 4 / 3], "their width / height range")
    rotate: float = setting(
        0.0,
        "rotation up to this many degrees either way (with shear, zoom, translate: one affine warp)",
    )
    shear: float = setting(0.0, "x-shear up to this many degrees either way")
    zoom: float = setting(0.0, "x and y zoom factors each in [1 - zoom, 1 + zoom]")
    translate: float = setting(0.0, "shifts up to this share of the side")
    policy: str = setting(
        "none",
        '"randaugment" (2 operations at magnitude 9 of 31) or "trivialaugment" (TrivialAugment Wide: 1 '
        "operation, any magnitude), each image its own, as torchvision's defaults (data/policy.py)",
        choices=("none", "randaugment", "trivialaugment"),
    )
    tta: str = setting(
        "none",
        '"flip": also score the final split by averaging each image with its mirror (reported apart)',
        choices=("none", "flip"),
    )
    stream: str = setting(
        "auto",
        'image-folder caches: "auto" holds one whole when it takes <= 1/4 of free memory, else reads each '
        'batch from the memory-mapped cache; "true" / "false" force it (the batches are the same)',
        choices=("auto", "true", "false"),
    )
    limit_train: int = setting(0, "use a stratified, seeded sample of N training images (0: all)")
    limit_val: int = setting(0, "and of N validation images")
    mean: list[float] = setting([], "normalisation; empty: from the init weights, else the data")
    std: list[float] = setting([], "per channel, as mean")


@dataclass
class OptimConfig:
    optimizer: str = setting(
        "sgd",
        '"sgd", "adam" (L2 added to the gradient, as torch.optim.Adam) or "adamw" (decoupled decay)',
        choices=("sgd", "adam", "adamw"),
    )
    lr: float = setting(0.1, "peak learning rate (the schedule multiplies it)")
    batch_size: int = setting(128, "images per step (under torchrun: per step of all processes together)")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    weight_decay: float = setting(1e-4, "L2 penalty (SGD, Adam) or decoupled decay (AdamW)")
    no_decay_norm_bias: bool = setting(False, "exempt BatchNorm parameters and biases from weight decay")
    label_smoothing: float = setting(0.0, "share of the target spread over all classes (Szegedy et al. 2016)")
    grad_clip: float = setting(0.0, "clip the global gradient norm to this (0: off)")
    ema: float = setting(0.0, "decay of an exponential moving average of the weights (0: off), e.g. 0.999")


@dataclass
class ScheduleConfig:
    name: str = setting(
        "multistep",
        '"multistep", "cosine", "onecycle" or "constant"',
        choices=("multistep", "cosine", "onecycle", "constant"),
    )
    epochs: int = setting(30, "passes over the training images")
    iterations: int = setting(0, "> 0: train for exactly this many steps instead of `epochs` (the paper counts 64k)")
    unit: str = setting(
        "epoch",
        'milestones and warmup counted in "epoch" or "iteration"',
        choices=("epoch", "iteration"),
    )
    milestones: list[float] = setting([0.5, 0.75], "< 1: fractions of the run")
    gamma: float = setting(0.1, "multistep: lr multiplied by this at each milestone")
    warmup: float = setting(0.0, "linear warm-up length (in `unit`)")
    min_lr_ratio: float = setting(0.0, "cosine / onecycle end at lr * this")
    pct_start: float = setting(0.25, "onecycle: share of the run spent rising")


@dataclass
class FinetuneConfig:
    freeze: str = setting("", '"backbone" (train the head only), or parts by name: "stem,layer1,layer2"')
    freeze_bn: bool = setting(False, "keep every BatchNorm's running statistics as loaded")
    backbone_lr: float = setting(1.0, "the backbone's learning rate is lr times this (the head's is lr)")
    unfreeze_every: int = setting(0, "thaw one frozen part (from the head down) every N epochs (0: never)")


@dataclass
class RunConfig:
    device: str = setting("auto", '"auto", "cpu", "cuda", "cuda:1", "mps"')
    precision: str = setting(
        "auto",
        '"auto" (bf16 on capable CPUs and GPUs), "bf16", "fp16", "fp32"',
        choices=("auto", "bf16", "fp16", "fp32"),
    )
    channels_last: str = setting(
        "auto",
        'NHWC memory layout: "auto" (CUDA and CPU, where it measured faster), "true", "false"',
        choices=("auto", "true", "false"),
    )
    compile: bool = setting(False, "torch.compile, falling back to eager if it fails")
    cuda_graphs: str = setting(
        "auto",
        'record the training step once and replay it (CUDA): "auto" (on where the run allows it; the first '
        'lines say why not), "true", "false"',
        choices=("auto", "true", "false"),
    )
    seed: int = setting(0, "weights' initialisation, batch order and augmentation (the split has its own split_seed)")
    threads: int = setting(0, "CPU threads for torch (0: all cores)")
    quiet: bool = setting(False, "one line per epoch instead of a progress bar")
    checkpoint_every: int = setting(0, "also checkpoint every N steps inside an epoch (0: at epoch ends only)")
    checkpoint_minutes: float = setting(10.0, "and whenever this many minutes passed since the last one (0: never)")
    log_every: int = setting(
        10,
        "read the running loss and accuracy back from the device (and refresh the progress bar) every N "
        "steps: in between, a GPU runs ahead with no host sync",
    )
    nproc: int = setting(0, "> 1: start this many processes on this machine through torchrun's launcher (DDP)")
    backend: str = setting(
        "auto",
        'under torchrun: "auto" (nccl on CUDA, gloo on CPU), "gloo", "nccl"',
        choices=("auto", "gloo", "nccl"),
    )
    sync_bn: bool = setting(False, "under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)")


@dataclass
class OutputConfig:
    out: str = setting("runs", "the folder that holds run directories")
    name: str = setting("", "run directory name (default: <model>-<data>); -2, -3, ... when it exists")
    resume: str = setting("", "a run directory (or its last.pt) to continue exactly")
    init: str = setting("", "weights to start from (a run, a .safetensors, a torchvision/timm .pth): new optimiser")
    tensorboard: bool = setting(True, "write TensorBoard events too, when tensorboard is installed")
    score_test: bool = setting(
        True,
        "score the selected weights once on the test split at the end; false: validation only (tune's trials)",
    )


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


def all_keys() -> list[str]:
    """Every dotted key of TrainConfig, e.g. 'optim.lr'."""
    return [f"{s.name}.{f.name}" for s in fields(TrainConfig) for f in fields(s.default_factory())]  # type: ignore[misc]


def field_of(dotted: str) -> Any:
    """The dataclass field behind a dotted key ('optim.lr'), with its metadata (help, choices)."""
    section, name = dotted.split(".")
    (found,) = (f for f in fields(getattr(TrainConfig(), section)) if f.name == name)
    return found


def choices_of(dotted: str) -> tuple[str, ...]:
    """The values a key allows, where they are a fixed few; () where any value of its type goes."""
    return field_of(dotted).metadata.get("choices", ())


def get(cfg: TrainConfig, dotted: str) -> Any:
    """The value at a dotted key ('optim.lr', or 'model.args.drop_path_rate': None when not set)."""
    section, _, name = dotted.partition(".")
    if section == "model" and name.startswith("args."):
        return cfg.model.args.get(name.split(".", 1)[1])
    return getattr(getattr(cfg, section), name)


def validate(cfg: TrainConfig) -> None:
    """Values that parse but cannot work: each error names the key and what would."""
    for key in all_keys():
        value = get(cfg, key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}={v} is not a finite number; give a value such as {get(TrainConfig(), key)}")
    for dotted in all_keys():
        choices, value = choices_of(dotted), get(cfg, dotted)
        if choices and value not in choices:
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
        "run.seed",
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
