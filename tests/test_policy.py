"""RandAugment and TrivialAugment Wide, batch-wide with each image's own operations: every operation agrees
with torchvision's on the same image and magnitude, and the draws follow the policies' distributions."""

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from resnetlab.data import AugmentConfig, BatchLoader, Dataset, DatasetInfo
from resnetlab.data.policy import BINS, OPERATIONS, OPS, RANDAUGMENT_BIN, apply_policy, draw_policy
from resnetlab.errors import UserError

IMAGES = torch.randint(0, 256, (4, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
IMAGES[1] = IMAGES[1] // 2 + 40  # a low-contrast image: autocontrast and equalize have work to do
FACTORS = torch.tensor([0.5, -0.3, 0.9, 0.0])


def theirs(fn, values, **kw) -> torch.Tensor:
    return torch.stack([fn(IMAGES[i], float(v), **kw) for i, v in enumerate(values)]).float()


@pytest.mark.parametrize(
    "op, reference",
    [("brightness", TF.adjust_brightness), ("colour", TF.adjust_saturation), ("contrast", TF.adjust_contrast),
     ("sharpness", TF.adjust_sharpness)],
)  # fmt: skip
def test_enhancements_match_torchvision_within_a_grey_level(op, reference):
    ours = OPERATIONS[op](IMAGES.float(), FACTORS).clamp(0, 255)
    assert (ours - theirs(reference, 1 + FACTORS)).abs().max() <= 1.25  # torchvision rounds to uint8 on the way


def test_level_operations_match_torchvision_exactly():
    x = IMAGES.float()
    assert torch.equal(OPERATIONS["equalize"](x, FACTORS), TF.equalize(IMAGES).float())
    stretched = OPERATIONS["autocontrast"](x, FACTORS) - TF.autocontrast(IMAGES).float()
    assert stretched.min() > -1e-3 and stretched.max() < 1 + 1e-3  # torchvision truncates to uint8
    bits = torch.tensor([4.0, 5, 6, 8])
    assert torch.equal(OPERATIONS["posterize"](x, bits), theirs(lambda im, b: TF.posterize(im, int(b)), bits))
    limits = torch.tensor([128.0, 0, 255, 60])
    assert torch.equal(OPERATIONS["solarize"](x, limits), theirs(TF.solarize, limits))


def test_geometric_operations_match_torchvision_bilinear():
    x = IMAGES.float()
    pixels, degrees, shears = torch.tensor([3.0, -2, 0, 5.5]), torch.tensor([90.0, -35, 0, 180]), FACTORS

    def affine(im, v, axis):
        return TF.affine(im.float(), angle=0.0, translate=[v, 0.0] if axis == 0 else [0.0, v], scale=1.0,
                         shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)  # fmt: skip

    def shear(im, v, axis):
        angle = [math.degrees(math.atan(v)), 0.0] if axis == 0 else [0.0, math.degrees(math.atan(v))]
        return TF.affine(im.float(), angle=0.0, translate=[0, 0], scale=1.0, shear=angle, center=[0, 0],
                         interpolation=InterpolationMode.BILINEAR)  # fmt: skip

    for axis, name in enumerate(("x", "y")):
        assert torch.allclose(OPERATIONS[f"translate_{name}"](x, pixels), theirs(affine, pixels, axis=axis), atol=1e-3)
        assert torch.allclose(OPERATIONS[f"shear_{name}"](x, shears), theirs(shear, shears, axis=axis), atol=1e-3)
    rotated = theirs(lambda im, v: TF.rotate(im.float(), v, interpolation=InterpolationMode.BILINEAR), degrees)
    assert torch.allclose(OPERATIONS["rotate"](x, degrees), rotated, atol=1e-3)


def test_policy_draws_follow_the_papers_distributions():
    n = 28000
    trivial = draw_policy(n, torch.Generator().manual_seed(0), "trivialaugment", (32, 32))
    assert trivial.shape == (n, 1, 2)
    counts = np.bincount(trivial[:, 0, 0].long().numpy(), minlength=len(OPS))
    assert np.abs(counts / n - 1 / len(OPS)).max() < 0.01  # every operation equally likely
    rotations = trivial[trivial[:, 0, 0] == OPS.index("rotate"), 0, 1]
    assert rotations.min() >= -135 and rotations.max() <= 135 and abs(float(rotations.mean())) < 5  # either sign
    assert len(torch.unique(rotations.abs())) == BINS  # every magnitude bin drawn
    rand = draw_policy(n, torch.Generator().manual_seed(0), "randaugment", (32, 32))
    assert rand.shape == (n, 2, 2)
    rotations = rand[rand[:, :, 0] == OPS.index("rotate")][:, 1]
    assert torch.allclose(rotations.abs(), torch.tensor(30.0 * RANDAUGMENT_BIN / (BINS - 1)))  # magnitude 9 only
    bits = rand[rand[:, :, 0] == OPS.index("posterize")][:, 1]
    assert torch.all(bits == 8 - round(RANDAUGMENT_BIN / 7.5))


def test_each_image_gets_its_own_operation_and_the_loader_is_seeded():
    x = IMAGES.float()
    draws = torch.tensor([[[OPS.index("identity"), 0.0]], [[OPS.index("solarize"), 0.0]],
                          [[OPS.index("rotate"), 180.0]], [[OPS.index("brightness"), -1.0]]])  # fmt: skip
    out = apply_policy(x, draws)
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], 255 - x[1])
    assert torch.allclose(out[2], x[2].flip(1, 2), atol=1e-3) and out[3].abs().max() == 0
    info = DatasetInfo("random", (0.5,) * 3, (0.25,) * 3, (3, 16, 16), ("a", "b"), True)
    data = Dataset(IMAGES.permute(0, 2, 3, 1).numpy().repeat(8, 0), np.arange(32) % 2, ["a", "b"], info, "train", "t")
    for policy in ("randaugment", "trivialaugment"):
        make = lambda p=policy: BatchLoader(data, 8, train=True, augment=AugmentConfig(policy=p), seed=3)  # noqa: E731
        first, again = list(make().epoch(1)), list(make().epoch(1))
        assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
        assert all(torch.equal(a[0], b[0]) for a, b in zip(first[2:], make().epoch(1, 2), strict=True))
    with pytest.raises(UserError, match="policy='autoaugment' is unknown"):
        BatchLoader(data, 8, train=True, augment=AugmentConfig(policy="autoaugment"))
