"""Each augmentation draws from a stream of its own: adding one, or turning one on or off, changes no other
augmentation's draws (and not the batch order), so a change of settings never silently shifts the rest."""

import dataclasses

import numpy as np
import pytest
import torch

from resnetlab.data import AugmentConfig, BatchLoader
from resnetlab.data.sources import synthetic

EVERYTHING = AugmentConfig(
    crop_padding=4, hflip=True, cutout=8, mixup=0.2, cutmix=1.0, brightness=0.2, contrast=0.2, saturation=0.2,
    hue=0.05, grey=0.1, erase=0.25, crop_scale=(0.5, 1.0), rotate=10, shear=5, zoom=0.1, translate=0.1,
    policy="randaugment",
)  # fmt: skip
# Which parts of an epoch's plan each setting owns; turning it off may change those alone.
OWNS = {
    "crop_padding": {"offsets"},
    "hflip": {"flips"},
    "cutout": set(),  # its squares are drawn either way, and used only when it is on
    "mixup": {"mix_lams", "mix_kinds", "mix_boxes"},
    "cutmix": {"mix_lams", "mix_kinds", "mix_boxes"},
    **{name: {"photo"} for name in ("brightness", "contrast", "saturation", "hue", "grey", "erase")},
    "crop_scale": {"crops"},
    **{name: {"warps"} for name in ("rotate", "shear", "zoom", "translate")},
    "policy": {"policy"},
}
OFF = {"crop_scale": (), "policy": "none", "hflip": False}


def plan(augment: AugmentConfig, epoch: int = 3):
    data = synthetic("train", n=96)
    return BatchLoader(data, 16, train=True, augment=augment, seed=5, num_classes=10).plan(epoch)


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return np.array_equal(a, b)


@pytest.mark.parametrize("setting", sorted(OWNS))
def test_turning_one_augmentation_off_changes_no_other_draws(setting):
    on, off = plan(EVERYTHING), plan(dataclasses.replace(EVERYTHING, **{setting: OFF.get(setting, 0)}))
    for field in dataclasses.fields(on):
        if field.name not in OWNS[setting]:
            assert same(getattr(on, field.name), getattr(off, field.name)), f"{setting} off changed {field.name}"


def test_the_streams_differ_by_epoch_and_seed_and_nothing_on_draws_only_the_order():
    assert not torch.equal(plan(EVERYTHING, 1).order, plan(EVERYTHING, 2).order)
    assert not torch.equal(plan(EVERYTHING).offsets, plan(dataclasses.replace(EVERYTHING, crop_padding=2)).offsets)
    bare = plan(AugmentConfig())
    assert torch.equal(bare.order, plan(EVERYTHING).order) and not bare.flips.any() and bare.crops is None
