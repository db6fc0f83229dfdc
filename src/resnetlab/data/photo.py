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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def resized_crops(
    x: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Each image's box resized to `size` (h, w; default the image's), mirrored where flipped: x (B, C, H, W)
    float, boxes (B, 4) as crop_boxes, flips (B,) bool. One affine grid and one bilinear sampling for the batch."""
    h, w = x.shape[-2:]
    out_h, out_w = size or (h, w)
    boxes = boxes.to(x.device, torch.float32)
    top, left, box_h, box_w = boxes.unbind(1)
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    # Output coordinates in [-1, 1] map to the box: centre (2 * c / size - 1), half-extent box / size.
    theta[:, 0, 0] = torch.where(flips.to(x.device), -1.0, 1.0) * box_w / w
    theta[:, 0, 2] = (2 * left + box_w) / w - 1
    theta[:, 1, 1] = box_h / h
    theta[:, 1, 2] = (2 * top + box_h) / h - 1
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
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def colour(x: torch.Tensor, jitter: torch.Tensor, grey: torch.Tensor, spans: tuple[float, float, float, float]
           ) -> torch.Tensor:  # fmt: skip
    """Jitter and greyscale x (B, C, H, W) float in [0, 1]; jitter (B, 4), grey (B,) bool. Only the jitters
    whose span is not 0 run; saturation, hue and greyscale leave one-channel images as they are."""
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
    if rgb and bool(grey.any()):
        x = torch.where(grey.to(x.device)[:, None, None, None], luma(x).expand_as(x), x)
    return x


# RGB <-> YIQ (NTSC): Y is luma, I and Q span the colours; turning (I, Q) by an angle turns the hue.
_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def turn_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image's colours by `turns` (B,) of a full circle about the grey axis, keeping its luma."""
    to_yiq = _TO_YIQ.to(x.device, x.dtype)
    angle = turns * (2.0 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(turns), 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    per_image = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3): RGB -> RGB
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
