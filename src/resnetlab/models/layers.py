"""Building pieces shared by every network: activations, norms, shortcuts, SE, gates, drop_path.

Shortcut options follow He et al. 2015 ("Deep Residual Learning", section 4.1):
  A  identity; where the shape changes, stride-2 subsampling plus zero-padded channels (no parameters)
  B  identity where the shape is unchanged, a 1x1 projection where it changes
  C  a 1x1 projection on every block
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}

SHORTCUTS = ("A", "B", "C")


def make_act(name: str, inplace: bool = False) -> nn.Module:
    """An activation module by name ('relu', 'gelu', 'silu', ...)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    cls = ACTIVATIONS[name]
    if cls in (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.SiLU) and inplace:
        return cls(inplace=True)
    return cls()


def make_norm(channels: int, enabled: bool = True) -> nn.Module:
    """BatchNorm2d, or Identity when batch norm is switched off."""
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


def conv(
    in_ch: int,
    out_ch: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    dilation: int = 1,
) -> nn.Conv2d:
    """A 'same'-padded convolution (padding dilation * (k // 2), torchvision's conv3x3 when dilated); bias only
    when no norm follows."""
    pad = dilation * (kernel_size // 2)
    return nn.Conv2d(
        in_ch, out_ch, kernel_size, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=bias
    )


def zero_pad_shortcut(x: torch.Tensor, extra_channels: int, stride: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C + extra_channels, H / stride, W / stride): subsample, then append zeros."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    # F.pad pads dimensions from the last one backwards: (W, W, H, H, C_before, C_after).
    return F.pad(x, (0, 0, 0, 0, 0, extra_channels)) if extra_channels else x


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by `stride` and append zero channels up to `out_ch`. No parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A cannot reduce channels ({in_ch} -> {out_ch}); use shortcut 'B' or 'C'")
        self.extra, self.stride = out_ch - in_ch, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zero_pad_shortcut(x, self.extra, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


def make_shortcut(
    option: str,
    in_ch: int,
    out_ch: int,
    stride: int,
    norm: bool = True,
    preact: bool = False,
    avg_down: bool = False,
) -> nn.Module | None:
    """The shortcut module of one block, or None for a plain identity.

    Projections are 1x1 conv + BN (post-activation) or a bare 1x1 conv (pre-activation: its input is
    already normalised, as in He et al. 2016 and Zagoruyko & Komodakis 2016). `avg_down` is ResNet-D
    (He et al. 2019, "Bag of Tricks"): average-pool first so the 1x1 conv sees every input pixel.
    """
    if option not in SHORTCUTS:
        raise ValueError(f"unknown shortcut option {option!r}; choose 'A', 'B' or 'C'")
    shape_changes = stride != 1 or in_ch != out_ch
    if option == "A":
        return ZeroPadShortcut(in_ch, out_ch, stride) if shape_changes else None
    if option == "B" and not shape_changes:
        return None
    layers: list[nn.Module] = []
    if avg_down:  # keys downsample.0 (pool), .1 (conv), .2 (BN) as in timm, even where nothing is pooled
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
        layers.append(pool if stride > 1 else nn.Identity())
        stride = 1
    layers.append(conv(in_ch, out_ch, 1, stride=stride, bias=not norm and not preact))
    if not preact and norm:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor` (never below `min_value`, default `divisor`)."""
    min_value = min_value or divisor
    return max(min_value, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018): channel weights from global context.

    x (N, C, H, W) -> mean over H, W -> 1x1 conv C->C/r -> ReLU -> 1x1 conv C/r->C -> sigmoid -> x * w.
    The reduced width is rounded to a multiple of 8, and 1x1 convs with bias stand in for the paper's
    fully connected layers, as timm does; key names fc1/fc2 match timm's so its weights load.
    """

    def __init__(self, channels: int, reduction: int = 16, divisor: int = 8) -> None:
        super().__init__()
        hidden = make_divisible(channels / reduction, divisor) if divisor > 1 else max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        w = self.fc2(self.act(self.fc1(w)))
        return x * w.sigmoid()


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016) on a residual branch: drop whole samples, rescale the rest.

    Dividing by the keep probability keeps the expectation, so evaluation needs no change.
    """
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of `drop_path`; identity in eval mode."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"
