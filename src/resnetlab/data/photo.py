"""Augmentations for photos, on the whole batch with per-image parameters: random resized crops, colour
jitter, random greyscale and random erasing.

Each image's parameters are drawn up front in the epoch plan (indexed by the image's position, like the
crops and flips), so a resumed run and every rank see the same ones; here they are applied to a batch at
once with broadcasting, no Python loop over images. Ranges follow torchvision's ColorJitter,
RandomGrayscale and RandomErasing (Zhong et al. 2017): brightness b scales by a factor in [1 - b, 1 + b],
contrast and saturation likewise about the image's mean grey and each pixel's grey, hue h turns colours
by up to h of a full turn about the grey axis. Two differences, stated: the four jitters are applied in one
fixed order (brightness, contrast, saturation, hue), and the hue turn is a rotation of the chroma plane of
YIQ (a linear map per image, which keeps each pixel's luma), where torchvision shifts the H of HSV.
Random resized crops follow the Inception / ResNet ImageNet recipe (torchvision's RandomResizedCrop): a box
of a share `scale` of the image's area and aspect ratio drawn log-uniformly in `ratio`, resized back to the
image's size. Where the box would not fit, torchvision draws again (10 times) and then falls back to a
centre crop; here its sides are clipped to the image, so the draw is one pass for the whole batch. The
resizing is bilinear sampling through one affine grid for the batch (torch's grid_sample), not an
antialiased resize.
Rotation, shear, zoom and translation (Keras's ImageDataGenerator, torchvision's RandomAffine) fold into
the same grid: each image's box (its crop, or the centre view) is sampled through its own affine map about
the box's centre, so that crops, flips and the affine cost one resampling. Ranges: a rotation of up to
`rotate` degrees either way, an x-shear of up to `shear` degrees either way (torchvision's; Keras's
shear_range is also in degrees, so its 0.2 is a very light shear), zoom factors drawn apart for x and y in
[1 - zoom, 1 + zoom] (Keras's: above 1 shows more of the image, smaller), shifts of up to `translate` of the
side in each axis. Where the map reaches outside the image, the nearest edge pixel is repeated (Keras's
fill_mode="nearest"; torchvision fills black).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

ERASE_SCALE = (0.02, 0.33)  # the erased box's share of the image area (torchvision's default)
ERASE_RATIO = (0.3, 3.3)  # its aspect ratio h / w, drawn log-uniformly (torchvision's default)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey, as torchvision's rgb_to_grayscale


@dataclass
class PhotoDraws:
    """One epoch's per-image parameters; row i belongs to the i-th image of the epoch plan."""

    jitter: torch.Tensor  # (n, 4) float: brightness, contrast, saturation factors and hue turn (fraction)
    grey: torch.Tensor  # (n,) bool
    erase: torch.Tensor  # (n, 5) float: apply (0/1), box top and left as fractions of the free room, h, w in px

    def to(self, device: torch.device) -> PhotoDraws:
        return PhotoDraws(*(getattr(self, f.name).to(device) for f in fields(self)))


@functools.lru_cache(maxsize=256)
def device_constant(values: tuple, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small constant tensor, made once per device and dtype (never write into it). Made from Python numbers at
    every batch, it would be a host-to-device copy each time, and on a GPU such a copy waits for the queue."""
    return torch.tensor(values, dtype=dtype, device=device)


def crop_boxes(n: int, gen: torch.Generator, h: int, w: int, scale: tuple[float, float],
               ratio: tuple[float, float]) -> torch.Tensor:  # fmt: skip
    """(n, 4) boxes (top, left, height, width) in pixels: area a share in `scale` of h * w, width / height drawn
    log-uniformly in `ratio`, sides clipped to the image, placed uniformly where they fit."""
    u = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    area = (scale[0] + u[:, 0] * (scale[1] - scale[0])) * h * w
    aspect = torch.exp(math.log(ratio[0]) + u[:, 1] * (math.log(ratio[1]) - math.log(ratio[0])))
    box_w = torch.sqrt(area * aspect).clamp(1, w)
    box_h = torch.sqrt(area / aspect).clamp(1, h)
    return torch.stack([u[:, 2] * (h - box_h), u[:, 3] * (w - box_w), box_h, box_w], 1).float()


def draw_warps(n: int, gen: torch.Generator, rotate: float, shear: float, zoom: float, translate: float
               ) -> torch.Tensor:  # fmt: skip
    """(n, 6) per-image affine parameters: rotation and shear (degrees), zoom x and y, shift x and y (fractions
    of the side), each uniform in its range (see the module's docstring)."""
    u = 2.0 * torch.rand(n, 6, generator=gen, dtype=torch.float64) - 1.0  # uniform in [-1, 1]
    spans = torch.tensor([rotate, shear, zoom, zoom, translate, translate], dtype=torch.float64)
    warps = u * spans
    warps[:, 2:4] += 1.0  # zoom factors about 1
    return warps.float()


def affine(warps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, 2) linear maps and (B, 2) shifts, from the output image's to the input's centred coordinates
    (x right, y down, in pixels of the box): rotation @ x-shear @ zoom, then the shift."""
    angle, shear = torch.deg2rad(warps[:, 0]), torch.deg2rad(warps[:, 1])
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shearing = torch.eye(2, dtype=warps.dtype, device=warps.device).repeat(len(warps), 1, 1)
    shearing[:, 0, 1] = torch.tan(shear)
    return rotation @ shearing @ torch.diag_embed(warps[:, 2:4]), warps[:, 4:6]


def resized_crops(
    x: torch.Tensor,
    boxes: torch.Tensor,
    flips: torch.Tensor,
    size: tuple[int, int] | None = None,
    warps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each image's box resized to `size` (h, w; default the image's), mirrored where flipped and warped by its
    affine: x (B, C, H, W) float, boxes (B, 4) as crop_boxes, flips (B,) bool, warps (B, 6) as draw_warps or
    None. One affine grid and one bilinear sampling for the batch."""
    h, w = x.shape[-2:]
    out_h, out_w = size or (h, w)
    top, left, box_h, box_w = boxes.to(x.device, torch.float32).unbind(1)
    # An output point u in [-1, 1]^2 lands at the box's centre + M (u * half-box) + shift * box, in pixels
    # (M = the identity without warps); grid_sample wants that as (2 * pixel / side - 1).
    half = torch.stack([box_w, box_h], 1) / 2  # (B, 2) as (x, y)
    linear = torch.eye(2, device=x.device).repeat(len(x), 1, 1)
    shift = torch.zeros(len(x), 2, device=x.device)
    if warps is not None:
        linear, shift = (t.to(x.device, torch.float32) for t in affine(warps))
        shift = shift * half * 2
    linear = linear * half[:, None, :]  # scale the columns: u is in half-box units
    linear[:, :, 0] *= torch.where(flips.to(x.device), -1.0, 1.0)[:, None]  # mirror the output first
    centre = torch.stack([left, top], 1) + half + shift
    scale = device_constant((2.0 / w, 2.0 / h), x.device)
    theta = torch.cat([linear * scale[None, :, None], (centre * scale - 1)[:, :, None]], 2)  # (B, 2, 3)
    grid = F.affine_grid(theta, [len(x), x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def draw(n: int, gen: torch.Generator, h: int, w: int, brightness: float, contrast: float, saturation: float,
         hue: float, grey: float, erase: float) -> PhotoDraws:  # fmt: skip
    """Every image's colour factors, greyscale flag and erasing box for one epoch."""
    u = torch.rand(n, 4, generator=gen)
    spans = torch.tensor([brightness, contrast, saturation, hue])
    jitter = 1.0 + (2.0 * u - 1.0) * spans  # factors in [1 - s, 1 + s]
    jitter[:, 3] = (2.0 * u[:, 3] - 1.0) * hue  # the hue turn in [-hue, hue]
    greys = torch.rand(n, generator=gen) < grey
    v = torch.rand(n, 5, generator=gen)
    area = (ERASE_SCALE[0] + v[:, 1] * (ERASE_SCALE[1] - ERASE_SCALE[0])) * h * w
    ratio = torch.exp(math.log(ERASE_RATIO[0]) + v[:, 2] * (math.log(ERASE_RATIO[1]) - math.log(ERASE_RATIO[0])))
    box_h = torch.sqrt(area * ratio).round().clamp(1, h)
    box_w = torch.sqrt(area / ratio).round().clamp(1, w)
    apply = (v[:, 0] < erase).float()
    return PhotoDraws(jitter, greys, torch.stack([apply, v[:, 3], v[:, 4], box_h, box_w], 1))


def luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey of (B, 3, H, W) RGB."""
    weights = device_constant(tuple(LUMA), x.device, x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def colour(x: torch.Tensor, jitter: torch.Tensor, grey: torch.Tensor | None, spans: tuple[float, float, float, float]
           ) -> torch.Tensor:  # fmt: skip
    """Jitter and greyscale x (B, C, H, W) float in [0, 1]; jitter (B, 4), grey (B,) bool or None (greyscale off).
    Only the jitters whose span is not 0 run; saturation, hue and greyscale leave one-channel images as they are."""
    f = jitter.to(x.device, x.dtype)[:, :, None, None, None]  # (B, 4, 1, 1, 1): one factor per image
    if spans[0]:
        x = (x * f[:, 0]).clamp_(0, 1)
    rgb = x.shape[1] == 3
    if spans[1]:
        mean = (luma(x) if rgb else x).mean((1, 2, 3), keepdim=True)
        x = ((x - mean) * f[:, 1] + mean).clamp_(0, 1)
    if rgb and spans[2]:
        g = luma(x)
        x = ((x - g) * f[:, 2] + g).clamp_(0, 1)
    if rgb and spans[3]:
        x = turn_hue(x, jitter[:, 3].to(x.device, x.dtype)).clamp_(0, 1)
    if rgb and grey is not None:  # no `grey.any()`: a host read of a GPU tensor at every batch
        x = torch.where(grey.to(x.device)[:, None, None, None], luma(x).expand_as(x), x)
    return x


# RGB <-> YIQ (NTSC): Y is luma, I and Q span the colours; turning (I, Q) by an angle turns the hue.
_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def turn_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image's colours by `turns` (B,) of a full circle about the grey axis, keeping its luma."""
    to_yiq = device_constant(_TO_YIQ, x.device, x.dtype)
    angle = turns * (2.0 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(turns), 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    from_yiq = torch.linalg.inv_ex(to_yiq).inverse  # inv_ex: linalg.inv reads its error flag back from a GPU
    per_image = from_yiq @ rotation @ to_yiq  # (B, 3, 3): RGB -> RGB
    return torch.einsum("bij,bjhw->bihw", per_image, x)


def erase(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Set a box of each image where boxes[:, 0] is 1 to 0 (the mean, after normalisation).

    boxes (B, 5): apply, top and left as fractions of the room left beside the box, height, width (px)."""
    h, w = x.shape[-2:]
    boxes = boxes.to(x.device)
    box_h, box_w = boxes[:, 3], boxes[:, 4]
    top = (boxes[:, 1] * (h - box_h + 1)).floor().clamp(max=h - box_h)
    left = (boxes[:, 2] * (w - box_w + 1)).floor().clamp(max=w - box_w)
    r = torch.arange(h, device=x.device)[None, :, None]
    c = torch.arange(w, device=x.device)[None, None, :]
    inside = (r >= top[:, None, None]) & (r < (top + box_h)[:, None, None])
    inside = inside & (c >= left[:, None, None]) & (c < (left + box_w)[:, None, None])
    inside = inside & (boxes[:, 0] > 0)[:, None, None]
    return x.masked_fill(inside[:, None], 0.0)
