"""Highway networks (Srivastava, Greff & Schmidhuber 2015, "Training Very Deep Networks").

A convolutional highway layer mixes a transform H and a carry of its input under a learned gate:

    y = H(x) * T(x) + x * (1 - T(x)),   H = ReLU(BN(conv_k(x))),   T = sigmoid(conv_k(x) + b_T)

with b_T initialised negative (the paper uses -1 to -3) so that every layer starts close to the identity.
A highway network here is the ResNet skeleton with "highway" blocks: same stem, stages and head as the
CIFAR ResNets, one gated conv layer per block, and a parameter-free carry (option A: subsample and
zero-pad) where the shape changes. Depth counts weight layers as He et al. do: 1 + 3n + 1.

The paper's own CIFAR highway networks followed FitNets (max-pooling, maxout); ours share the ResNet
layout instead so that `highway32` and `resnet32` differ only in how the shortcut is made.
The gated residual blocks that He et al. 2016 compare ("exclusive gating") are `gate=True` on any ResNet.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv, make_norm
from .registry import register_variant
from .resnet import BLOCK_TYPES, CIFAR10, CIFAR_ARCH, BlockArgs, ResidualBlock, build_resnet


class HighwayLayer(ResidualBlock):
    """One gated conv layer: y = T * H(x) + (1 - T) * carry(x)."""

    expansion = 1
    final_act = False  # H already ends in its activation; the mix is the output
    always_gated = True

    def __init__(self, in_ch: int, width: int, args: BlockArgs) -> None:
        super().__init__()
        cfg = args.cfg
        self.conv1 = conv(in_ch, width, cfg.kernel_size, stride=args.stride, bias=not cfg.norm)
        self.bn1 = make_norm(width, cfg.norm)
        # The transform gate T sees the same receptive field as H (a kxk conv, as in the paper).
        self._common(in_ch, width, args, gate_kernel=cfg.kernel_size)

    def residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.drop(self.act(self.bn1(self.conv1(x)))), x

    def last_layer(self) -> nn.Module:
        return self.bn1


BLOCK_TYPES["highway"] = HighwayLayer

SRIVASTAVA = "Srivastava et al. 2015: Training Very Deep Networks (architecture here: the CIFAR ResNet layout)"
for _depth in (20, 32, 56, 110):
    register_variant(
        f"highway{_depth}",
        build_resnet,
        dict(CIFAR_ARCH, block="highway", depths=((_depth - 2) // 3,) * 3, shortcut="A", num_classes=10),
        family="highway",
        source=SRIVASTAVA,
        description=f"Highway network, {_depth} weight layers, gate bias -2, CIFAR layout",
        **CIFAR10,
    )
