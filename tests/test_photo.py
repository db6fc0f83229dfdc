"""Photo augmentations (colour jitter, greyscale, random erasing): each within its stated range, drawn per image
in the seeded epoch plan (the same on a second loader and from a batch in the middle), off at 0."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data import AugmentConfig, BatchLoader, Dataset, DatasetInfo
from resnetlab.data.photo import ERASE_RATIO, ERASE_SCALE, luma, turn_hue
from resnetlab.errors import UserError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def flat(n: int = 512, size: int = 16, rgb=(120, 60, 180)) -> Dataset:
    """Every image one colour: a colour operation's effect is read off one pixel."""
    images = np.broadcast_to(np.array(rgb, np.uint8), (n, size, size, 3)).copy()
    info = DatasetInfo("flat", MEAN, STD, (3, size, size), ("a", "b"), True)
    return Dataset(images, np.arange(n) % 2, ["a", "b"], info, "train", "test")


def pixels(augment: AugmentConfig, data: Dataset | None = None, batch: int = 512) -> torch.Tensor:
    """(B, 3, H, W) images back on the [0, 1] scale."""
    loader = BatchLoader(data or flat(), batch, train=True, augment=augment, mean=MEAN, std=STD, seed=1)
    x, _ = next(loader.epoch(0))
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def test_brightness_scales_each_image_by_a_factor_drawn_in_its_range():
    before = torch.tensor([120, 60, 180]) / 255.0
    factors = pixels(AugmentConfig(brightness=0.4))[:, :, 0, 0] / before  # (B, 3); 180 * 1.4 < 255: no clipping
    assert torch.allclose(factors, factors[:, :1].expand_as(factors), atol=1e-4)  # the same on every channel
    assert 0.6 - 1e-4 <= factors.min() < 0.65 and 1.35 < factors.max() <= 1.4 + 1e-4  # spread over [0.6, 1.4]


def test_saturation_and_hue_keep_each_pixels_grey_and_greyscale_turns_about_the_share_asked():
    grey_before = luma((torch.tensor([120, 60, 180]) / 255.0).view(1, 3, 1, 1))
    for augment in (AugmentConfig(saturation=0.5), AugmentConfig(hue=0.3)):
        x = pixels(augment)
        assert torch.allclose(luma(x), grey_before.expand_as(luma(x)), atol=2e-3), augment
        assert x[:, :, 0, 0].std(0).sum() > 0.05  # and the colours did change
    x = pixels(AugmentConfig(grey=0.3))[:, :, 0, 0]
    turned = (x.max(1).values - x.min(1).values) < 1e-4
    assert abs(turned.float().mean().item() - 0.3) < 3 * math.sqrt(0.3 * 0.7 / 512)  # within 3 sigma


def test_a_full_turn_of_hue_is_the_identity_and_half_a_turn_is_not():
    x = torch.rand(4, 3, 5, 5)
    assert torch.allclose(turn_hue(x, torch.ones(4)), x, atol=1e-5)
    assert not torch.allclose(turn_hue(x, torch.full((4,), 0.5)), x, atol=1e-2)


def test_random_erasing_boxes_have_the_stated_area_and_shape_and_appear_at_the_stated_rate():
    size = 64
    x = pixels(AugmentConfig(erase=0.5), flat(size=size, rgb=(250, 250, 250)))
    erased = (x - torch.tensor(MEAN).view(1, 3, 1, 1)).abs().sum(1) < 1e-4  # (B, H, W): set to the mean
    hit = erased.flatten(1).any(1)
    assert abs(hit.float().mean().item() - 0.5) < 3 * math.sqrt(0.25 / 512)
    for box in erased[hit]:
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert box.sum() == h * w  # one rectangle
        assert ERASE_SCALE[0] * 0.8 <= h * w / size**2 <= ERASE_SCALE[1] * 1.2
        assert ERASE_RATIO[0] * 0.7 <= h / w <= ERASE_RATIO[1] / 0.7 or min(h, w) in (1, size)


def test_the_draws_are_per_image_seeded_and_the_same_from_a_batch_in_the_middle():
    data = Dataset(np.random.default_rng(0).integers(0, 256, (96, 12, 12, 3), dtype=np.uint8), np.arange(96) % 2,
                   ["a", "b"], flat().info, "train", "test")  # fmt: skip
    augment = AugmentConfig(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, grey=0.2, erase=0.5, hflip=True)

    def loader() -> BatchLoader:
        return BatchLoader(data, 16, train=True, augment=augment, seed=4)

    whole = list(loader().epoch(2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole, loader().epoch(2), strict=True))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole[3:], loader().epoch(2, 3), strict=True))
    assert not torch.equal(whole[0][0], next(loader().epoch(3))[0])  # another epoch, other draws
    off = BatchLoader(data, 16, train=True, augment=AugmentConfig(hflip=True), seed=4)
    on = BatchLoader(data, 16, train=True, augment=AugmentConfig(hflip=True, grey=0.0, brightness=0.0), seed=4)
    assert torch.equal(next(off.epoch(0))[0], next(on.epoch(0))[0])  # 0 is off: the old batches exactly


@pytest.mark.parametrize(
    "bad", [dict(hue=0.6), dict(grey=1.5), dict(erase=-0.1), dict(brightness=-1.0), dict(rotate=200), dict(zoom=1)]
)
def test_impossible_augmentation_values_are_a_clear_error(bad):
    with pytest.raises(UserError, match="hue|probability|>= 0|out of range"):
        BatchLoader(flat(8), 4, train=True, augment=AugmentConfig(**bad))


def test_flip_tta_scores_the_mean_of_an_image_and_its_mirror():
    from resnetlab.training.loop import evaluate

    torch.manual_seed(0)
    data = Dataset(np.random.default_rng(1).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), np.arange(40) % 2,
                   ["a", "b"], flat().info, "test", "test")  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    loader = BatchLoader(data, 16, train=False, mean=MEAN, std=STD)
    got = evaluate(model, loader, torch.device("cpu"), None, 2, tta=True)
    x = torch.cat([b for b, _ in loader.epoch(0)])
    y = torch.as_tensor(data.labels)
    probs = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    assert abs(got["loss"] - torch.nn.functional.nll_loss(probs.log(), y).item()) < 1e-5
    assert got["top1"] == (probs.argmax(1) == y).sum().item() / len(y)


def test_a_run_with_flip_tta_reports_it_beside_the_plain_figure_and_refuses_it_where_mirrors_mislead(tmp_path):
    from resnetlab.training import load_config
    from resnetlab.training.loop import fit

    settings = ["model=resnet8", "data=synthetic", "limit_train=256", "epochs=1", "batch_size=32", "quiet=true",
                "output.tensorboard=false", f"out={tmp_path}", "tta=flip"]  # fmt: skip
    summary = fit(load_config(None, [*settings, "name=tta"])).summary
    assert 0 <= summary["test_top1_tta"] <= 1 and "test_top1" in summary and "test_top5_tta" in summary
    with pytest.raises(UserError, match="tta=flip scores mirror images"):
        fit(load_config(None, [*settings, "data.hflip=false", "name=refused"]))
    assert not (tmp_path / "refused").exists()


def test_hflip_auto_never_flips_digits_and_flips_folders_unless_told_not_to(tmp_path, monkeypatch):
    from dataclasses import replace

    from resnetlab.data import dataset_info, load_dataset
    from resnetlab.training import load_config
    from resnetlab.training.setup import make_loader

    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 12), (i * 60, 20, 90)).save(tmp_path / "photos" / c / f"{i}.png")
    photos = load_dataset(str(tmp_path / "photos"), "train", image_size=12, val_fraction=0.0)
    digits = replace(photos, info=dataset_info("mnist"))

    def flips(data: Dataset, setting: str) -> bool:
        cfg = load_config(None, [f"data.hflip={setting}"])
        return make_loader(cfg, data, True, torch.device("cpu"), False, MEAN, STD).augment.hflip

    assert flips(photos, "auto") and not flips(digits, "auto")
    assert not flips(photos, "false") and flips(digits, "true")  # the user's word wins either way


def test_random_resized_crop_boxes_have_the_area_and_aspect_asked_and_fit_the_image():
    from resnetlab.data.photo import crop_boxes

    boxes = crop_boxes(4000, torch.Generator().manual_seed(0), 40, 60, (0.08, 1.0), (3 / 4, 4 / 3))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40 + 1e-4).all() and (left + w <= 60 + 1e-4).all()
    fits = (h < 40) & (w < 60)  # not clipped: the drawn area and aspect hold exactly
    share, aspect = (h * w / (40 * 60))[fits], (w / h)[fits]
    assert share.min() >= 0.08 - 1e-4 and share.max() <= 1 + 1e-4 and aspect.min() >= 0.75 - 1e-4
    assert aspect.max() <= 4 / 3 + 1e-4 and fits.float().mean() > 0.5 and share.max() > 0.8 and share.min() < 0.1


def test_a_resized_crop_of_the_whole_image_is_the_image_and_of_its_left_half_stretches_that_half():
    from resnetlab.data.photo import resized_crops

    ramp = torch.arange(16.0).repeat(2, 3, 16, 1)  # (2, 3, 16, 16): each column holds its index
    whole = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2)
    assert torch.allclose(resized_crops(ramp, whole, torch.tensor([False, False])), ramp, atol=1e-4)
    mirrored = resized_crops(ramp, whole, torch.tensor([False, True]))
    assert torch.allclose(mirrored[1], ramp[1].flip(2), atol=1e-4)
    left = resized_crops(ramp, torch.tensor([[0.0, 0.0, 16.0, 8.0]] * 2), torch.tensor([False, False]))
    assert left.min() >= 0 and left.max() <= 7.5 and left[0, 0, 0].diff().min() > 0  # the box [0, 8), widened


def test_a_run_trains_with_random_resized_crops_and_refuses_an_impossible_scale(tmp_path):
    from resnetlab.training import load_config
    from resnetlab.training.loop import fit

    settings = ["model=resnet8", "data=synthetic", "limit_train=128", "epochs=1", "batch_size=32", "quiet=true",
                "output.tensorboard=false", f"out={tmp_path}"]  # fmt: skip
    assert fit(load_config(None, [*settings, "data.crop_scale=[0.25, 1]", "name=rrc"])).summary["test_top1"] >= 0
    with pytest.raises(UserError, match="crop_scale"):
        fit(load_config(None, [*settings, "data.crop_scale=[0.5, 0.2]", "name=bad"]))
    assert not (tmp_path / "bad").exists()


def test_affine_draws_are_uniform_in_their_ranges():
    from resnetlab.data.photo import draw_warps

    warps = draw_warps(20000, torch.Generator().manual_seed(0), rotate=30, shear=10, zoom=0.2, translate=0.1)
    for column, (low, high) in enumerate([(-30, 30), (-10, 10), (0.8, 1.2), (0.8, 1.2), (-0.1, 0.1), (-0.1, 0.1)]):
        values = warps[:, column]
        assert low <= values.min() and values.max() <= high  # within the range asked
        quartiles = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75]))
        expected = torch.tensor([low + (high - low) * q for q in (0.25, 0.5, 0.75)])
        assert torch.allclose(quartiles, expected, atol=0.02 * (high - low))  # uniform, not merely bounded
    assert abs(torch.corrcoef(warps[:, 2:4].T)[0, 1]) < 0.05  # x and y zoom drawn apart (Keras's)


def test_an_affine_warp_rotates_shears_and_shifts_pixels_where_the_geometry_says():
    from resnetlab.data.photo import resized_crops

    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    whole, unflipped = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 5), torch.zeros(5, dtype=torch.bool)
    warps = torch.tensor([[0, 0, 1, 1, 0, 0], [90, 0, 1, 1, 0, 0], [180, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0.25, 0],
                          [0, 0, 1, 1, 0, -0.125]]).float()  # fmt: skip
    y = resized_crops(x, whole, unflipped, warps=warps)
    assert torch.allclose(y[0], x[0], atol=1e-5)  # no warp: the image
    assert torch.allclose(y[1], torch.rot90(x[1], 1, (1, 2)), atol=1e-5)  # a quarter turn
    assert torch.allclose(y[2], x[2].flip(1, 2), atol=1e-5)  # half a turn
    assert torch.allclose(y[3][:, :, :6], x[3][:, :, 2:], atol=1e-5)  # shifted by a quarter of 8 pixels
    assert torch.allclose(y[3][:, :, 6:], x[3][:, :, 7:].expand(3, 8, 2), atol=1e-5)  # the edge repeated
    assert torch.allclose(y[4][:, 1:], x[4][:, :7], atol=1e-5)  # down by one pixel
    shear = math.degrees(math.atan(2.0))  # x moves by 2 pixels per pixel below the centre (4.0, between rows)
    sheared = resized_crops(x[:1], whole[:1], unflipped[:1], warps=torch.tensor([[0.0, shear, 1, 1, 0, 0]]))
    assert torch.allclose(sheared[0, :, 4, :7], x[0, :, 4, 1:], atol=1e-5)  # row 4 (centre 4.5): 1 pixel
    assert torch.allclose(sheared[0, :, 5, :5], x[0, :, 5, 3:], atol=1e-5)  # row 5 (centre 5.5): 3 pixels
    assert torch.allclose(sheared[0, :, 3, 1:], x[0, :, 3, :7], atol=1e-5)  # row 3 (centre 3.5): the other way


def test_a_keras_style_recipe_is_one_line_and_trains(tmp_path):
    from resnetlab.training import load_config
    from resnetlab.training.loop import fit

    keras = ["data.shear=0.2", "data.zoom=0.2", "data.hflip=true", "data.crop_padding=0"]  # ImageDataGenerator's
    settings = ["model=resnet8", "data=synthetic", "limit_train=128", "epochs=1", "batch_size=32", "quiet=true",
                "output.tensorboard=false", f"out={tmp_path}", *keras]  # fmt: skip
    result = fit(load_config(None, settings))
    assert result.summary["test_top1"] >= 0
    recorded = load_config(str(result.run_dir / "config.yaml"), [])
    assert (recorded.data.shear, recorded.data.zoom, recorded.data.crop_padding) == (0.2, 0.2, 0)
