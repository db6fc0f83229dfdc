"""RandAugment (Cubuk et al. 2020) and TrivialAugment Wide (Muller & Hutter 2021), per image, batch-wide.

torchvision's transforms.v2.RandAugment / TrivialAugmentWide draw one operation and magnitude per call: on a
batch tensor every image gets the same one, which is not the policy the papers describe (each image its own).
Calling them per image would put a Python loop over images back into the training step. So the policies are
written here batch-wide: each image's operations and magnitudes are drawn in the seeded epoch plan, and each
operation runs once per batch on the images that drew it (a loop over the 14 operations, not the images).

The operations and magnitude ranges are torchvision's (its `_augmentation_space`), with 31 magnitude bins:
RandAugment applies 2 operations in sequence at magnitude bin 9 (torchvision's defaults); TrivialAugment Wide
applies 1 operation at a uniformly drawn bin, over wider ranges. Signed magnitudes take either sign with
probability 1/2. Shears are about the top-left corner and rotations about the centre, as torchvision's;
pixels from outside the image are black (torchvision's fill); sampling is bilinear (torchvision's default is
nearest). Images are float on the 0..255 scale; they are
rounded to whole levels only where an operation needs them (posterize, solarize, equalize).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .photo import device_constant, luma

POLICIES = ("none", "randaugment", "trivialaugment")
OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "colour", "contrast",
       "sharpness", "posterize", "solarize", "autocontrast", "equalize")  # fmt: skip
BINS = 31
SIGNED = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "colour", "contrast", "sharpness"}
# The largest magnitude of each operation (at the last bin); translations as a share of the side for
# RandAugment (150 / 331, from its 331-pixel ImageNet setting) and in pixels for TrivialAugment Wide.
RANGES = {
    "randaugment": dict(shear=0.3, translate=150 / 331, rotate=30.0, enhance=0.9, posterize_drop=4),
    "trivialaugment": dict(shear=0.99, translate=32.0, rotate=135.0, enhance=0.99, posterize_drop=6),
}
RANDAUGMENT_OPS, RANDAUGMENT_BIN = 2, 9


def draw_policy(n: int, gen: torch.Generator, policy: str, size: tuple[int, int]) -> torch.Tensor:
    """(n, slots, 2): for each image, each operation's index in OPS and its signed magnitude."""
    slots = RANDAUGMENT_OPS if policy == "randaugment" else 1
    ops = torch.randint(0, len(OPS), (n, slots), generator=gen)
    if policy == "randaugment":
        bins = torch.full((n, slots), RANDAUGMENT_BIN)
    else:
        bins = torch.randint(0, BINS, (n, slots), generator=gen)
    signs = torch.where(torch.rand(n, slots, generator=gen) < 0.5, -1.0, 1.0)
    r = RANGES[policy]
    level = bins.double() / (BINS - 1)  # 0..1 along each range
    translate = r["translate"] * (size[1] if policy == "randaugment" else 1.0)  # pixels at the last bin
    tops = {"shear_x": r["shear"], "shear_y": r["shear"], "translate_x": translate, "translate_y": translate,
            "rotate": r["rotate"], "brightness": r["enhance"], "colour": r["enhance"], "contrast": r["enhance"],
            "sharpness": r["enhance"]}  # fmt: skip
    values = torch.zeros(n, slots, dtype=torch.float64)
    for index, op in enumerate(OPS):
        chosen = ops == index
        if op in tops:
            values = torch.where(chosen, level * tops[op] * (signs if op in SIGNED else 1.0), values)
        elif op == "posterize":  # bits kept: 8 down to 4 (RandAugment) or 2 (Wide)
            bits = 8 - torch.round(bins.double() / ((BINS - 1) / r["posterize_drop"]))
            values = torch.where(chosen, bits, values)
        elif op == "solarize":  # threshold: 255 down to 0
            values = torch.where(chosen, 255.0 * (1 - level), values)
    return torch.stack([ops.double(), values], 2).float()


def apply_policy(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) float on 0..255, draws (B, slots, 2) from draw_policy; each image its own operations.

    Each operation runs on the images that drew it, found with `nonzero`: on a GPU that reads the device back
    (a wait per operation and batch), the one part of the loader that does."""
    x = x.clone()
    draws = draws.to(x.device)
    for slot in range(draws.shape[1]):
        ops, values = draws[:, slot, 0].long(), draws[:, slot, 1]
        for index, op in enumerate(OPS[1:], 1):
            picked = (ops == index).nonzero().squeeze(1)
            if len(picked):
                x[picked] = OPERATIONS[op](x[picked], values[picked].to(x.dtype)).clamp_(0, 255)
    return x


def _sample(x: torch.Tensor, linear: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each output pixel p (pixels, about the image's centre, x right and y down) reads the input at
    linear @ p + shift; black outside. linear (B, 2, 2), shift (B, 2)."""
    h, w = x.shape[-2:]
    scale = device_constant((2.0 / w, 2.0 / h), x.device, x.dtype)
    half = device_constant((w / 2.0, h / 2.0), x.device, x.dtype)
    # normalised u -> pixels about the centre (u * half) -> linear, shift -> normalised
    theta = torch.cat([linear * half[None, None, :] * scale[None, :, None], (shift * scale)[:, :, None]], 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _shear(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """Shear by factor m about the top-left corner: x_in = x + m * y (axis 0), or y_in = y + m * x (axis 1)."""
    h, w = x.shape[-2:]
    linear = torch.eye(2, device=x.device, dtype=x.dtype).repeat(len(x), 1, 1)
    linear[:, axis, 1 - axis] = m
    corner = device_constant((w / 2.0, h / 2.0), x.device, x.dtype)  # the centre, from the corner
    shift = (linear @ corner[:, None]).squeeze(2) - corner  # keeps the corner in place
    return _sample(x, linear, shift)


def _translate(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    shift = torch.zeros(len(x), 2, device=x.device, dtype=x.dtype)
    shift[:, axis] = -m  # the content moves by m pixels
    return _sample(x, torch.eye(2, device=x.device, dtype=x.dtype).repeat(len(x), 1, 1), shift)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    angle = torch.deg2rad(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    return _sample(x, linear, torch.zeros(len(x), 2, device=x.device, dtype=x.dtype))


def _blend(x: torch.Tensor, towards: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: factor 1 + m of the image, -m of `towards` (m = 0: the image)."""
    return towards + (x - towards) * (1.0 + m)[:, None, None, None]


def _grey(x: torch.Tensor) -> torch.Tensor:
    return luma(x) if x.shape[1] == 3 else x


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with a 3 x 3 smoothing of the image (PIL's SMOOTH kernel: 5 at the centre, 1 around, / 13);
    the border pixels are kept, as PIL and torchvision keep them."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c).round()
    return _blend(x, smooth, m)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    step = (2.0 ** (8 - bits))[:, None, None, None]
    return torch.floor(x.round() / step) * step


def _solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    x = x.round()
    return torch.where(x >= threshold[:, None, None, None], 255.0 - x, x)


def _autocontrast(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Each channel stretched to 0..255 (left alone where it is flat)."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, 1.0, 255.0 / (high - low).clamp_min(1e-6))
    return torch.where(flat, x, (x - low) * scale)


def _equalize(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Each channel's histogram equalised, PIL's way: the levels are spread by the cumulative count, leaving
    out the count of the highest level present; a channel with one level is kept."""
    b, c, h, w = x.shape
    levels = x.round().clamp(0, 255).long().reshape(b * c, h * w)
    counts = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, levels, torch.ones_like(levels))
    highest = 255 - (counts.flip(1) > 0).long().argmax(1)  # the highest level present in each channel
    step = (h * w - counts.gather(1, highest[:, None]).squeeze(1)) // 255
    safe = step.clamp_min(1)[:, None]
    table = (counts.cumsum(1) + safe // 2) // safe
    table = F.pad(table, (1, 0))[:, :-1].clamp(0, 255)  # level k maps by the count below it
    out = table.gather(1, levels).to(x.dtype)
    return torch.where((step > 0)[:, None], out, levels.to(x.dtype)).reshape(b, c, h, w)


OPERATIONS = {
    "shear_x": lambda x, m: _shear(x, m, 0),
    "shear_y": lambda x, m: _shear(x, m, 1),
    "translate_x": lambda x, m: _translate(x, m, 0),
    "translate_y": lambda x, m: _translate(x, m, 1),
    "rotate": _rotate,
    "brightness": lambda x, m: _blend(x, torch.zeros_like(x), m),
    "colour": lambda x, m: _blend(x, _grey(x).expand_as(x), m),
    "contrast": lambda x, m: _blend(x, _grey(x).mean((1, 2, 3), keepdim=True).expand_as(x), m),
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": _solarize,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
}
