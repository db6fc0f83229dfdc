"""What a run is made of before its first step: its data splits, loaders, model, and the metadata its
weights will carry."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import torch
from torch import nn

from ..data import AugmentConfig, BatchLoader, Dataset, Splits, load_splits
from ..data.folders import CENTRE_CROP, natural_shape
from ..data.registry import named
from ..data.sources import image_folder
from ..models import create_model, model_info
from ..records import SplitRecord, WeightsMeta
from .config import TrainConfig

# torchvision's and timm's ResNets were trained on ImageNet with inputs normalised by these statistics.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_run_data(cfg: TrainConfig, need: tuple[str, ...] = ("train", "val", "test")) -> Splits:
    """The run's train / val / test parts, a pure function of the recorded data settings."""
    d = cfg.data
    return load_splits(
        d.name,
        path=d.path or None,
        image_size=d.image_size or 224,
        channels=d.channels or 3,
        centre_crop=d.centre_crop or CENTRE_CROP,
        val_fraction=d.val_fraction,
        seed=d.split_seed,
        limit_train=d.limit_train,
        limit_val=d.limit_val,
        need=need,
    )


def with_folder_shape(cfg: TrainConfig) -> tuple[TrainConfig, str]:
    """An image folder without data.image_size / data.channels keeps its images' own size and channels (see
    folders.natural_shape); the config records the choice, so that resume, eval and predict keep it. Returns
    the config and a line saying what was chosen ("" when nothing was)."""
    d = cfg.data
    folder = image_folder(d.name)
    if (d.image_size and d.channels) or folder is None:
        return cfg, ""  # set, or not an image folder: named datasets and IDX files keep their native size
    size, channels, line = natural_shape(folder)
    return replace(cfg, data=replace(d, image_size=d.image_size or size, channels=d.channels or channels)), line


def with_absolute_data_path(cfg: TrainConfig) -> TrainConfig:
    """A folder given by a relative path is recorded absolutely, so that `eval RUN` finds it from anywhere."""
    name = cfg.data.name
    if named(name) is not None or not Path(name).expanduser().exists():
        return cfg
    return replace(cfg, data=replace(cfg.data, name=str(Path(name).expanduser().resolve())))


def make_loader(
    cfg: TrainConfig,
    data: Dataset,
    train: bool,
    device: torch.device,
    channels_last: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader:
    d = cfg.data
    hflip = data.info.hflip if d.hflip == "auto" else d.hflip == "true"
    same_names = {f.name: getattr(d, f.name) for f in fields(AugmentConfig)}  # data.X is the augmentation's X
    augment = AugmentConfig(
        **{**same_names, "hflip": hflip, "crop_scale": tuple(d.crop_scale), "crop_ratio": tuple(d.crop_ratio)}
    )
    return BatchLoader(
        data,
        cfg.optim.batch_size,
        train=train,
        augment=augment,
        mean=mean,
        std=std,
        device=device,
        channels_last=channels_last,
        seed=cfg.run.seed,
        rank=rank,
        world_size=world_size,
        stream=d.stream,
        num_classes=len(data.classes),
    )


def with_init_defaults(cfg: TrainConfig, meta: WeightsMeta | None) -> TrainConfig:
    """Fill what the config leaves open from resnetlab init weights: model, image size, channels, normalisation."""
    if meta is None:  # no init weights, or foreign ones (torchvision, timm) that say nothing of themselves
        return replace(cfg, model=replace(cfg.model, name=cfg.model.name or "resnet20"))
    model = replace(cfg.model, name=cfg.model.name or meta.model)
    if model.name == meta.model and not model.args:
        model.args = dict(meta.args)
    channels, size, _ = meta.input_size
    data = replace(cfg.data, image_size=cfg.data.image_size or size, channels=cfg.data.channels or channels)
    if not data.centre_crop and meta.resize and data.image_size == size:  # as the weights were evaluated
        data = replace(data, centre_crop=size / meta.resize)
    if not data.mean and len(meta.mean) == data.channels:
        data = replace(data, mean=list(meta.mean), std=list(meta.std))
    return replace(cfg, model=model, data=data)


MIN_STD = 0.02  # about five grey levels out of 255


def normalisation(data: Dataset, foreign_init: bool) -> tuple[list[float], list[float]]:
    """The mean and std a run normalises with when the config sets none.

    resnetlab weights carry theirs in their metadata (with_init_defaults). torchvision and timm files carry
    none and were trained on ImageNet, so they keep ImageNet's statistics (for one input channel the
    average of the three, as the first convolution is summed over them); a run from scratch uses the data's.
    """
    channels = int(data.images.shape[-1])
    if foreign_init:
        if channels == 1:
            return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
        return list(IMAGENET_MEAN)[:channels], list(IMAGENET_STD)[:channels]
    # A channel that (almost) never varies would be divided by ~0: one grey level of difference, or a constant
    # channel's 0/0, would become a huge or NaN input. Such a channel is scaled as if its std were MIN_STD.
    return list(data.info.mean), [max(float(s), MIN_STD) for s in data.info.std]


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    model_info(cfg.model.name)  # a clear error for an unknown name, before any work
    return create_model(cfg.model.name, num_classes=num_classes, in_chans=in_chans, **cfg.model.args)


def weights_meta(cfg: TrainConfig, data: Dataset, mean, std, split: SplitRecord | None) -> WeightsMeta:
    """What a weights file needs to be used on its own: architecture, classes, preprocessing, and the data
    split it was trained and selected on (so that `eval` can score exactly the held-out images)."""
    return WeightsMeta(
        model=cfg.model.name,
        args=cfg.model.args,
        num_classes=len(data.classes),
        in_chans=int(data.images.shape[-1]),
        classes=tuple(data.classes),
        input_size=(int(data.images.shape[-1]), *data.view()),
        resize=int(data.images.shape[1]),  # images: shorter side to this, then the centre input_size crop
        mean=tuple(mean),
        std=tuple(std),
        dataset=data.info.name,
        data=cfg.data.name,
        data_path=cfg.data.path,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        split=split,
    )
