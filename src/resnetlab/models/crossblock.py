"""Cross-block connections: every block of a stage reads a learned mix of all that came before it.

Within a stage with blocks B_1..B_n, stage input y_0 and block outputs y_j = B_j(z_j):

    z_1 = y_0,      z_j = sum_{i < j} w[j, i] * y_i   (j >= 2)

y_0 enters the mix through a parameter-free adapter (subsample + zero channels, option A) where the
first block changes the shape. The weights start at w[j, j-1] = 1 and 0 elsewhere, so at initialisation
the network computes exactly the ResNet it extends; training then learns how much each block reads
from earlier ones (in the spirit of DenseNet's connectivity, at ResNet's cost: n^2/2 scalars a stage).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import zero_pad_shortcut
from .registry import register_variant
from .resnet import CIFAR10, CIFAR_ARCH, STAGE_TYPES, build_resnet


class CrossBlockStage(nn.Sequential):
    """A stage (keys stay `layerK.j...` as in a plain Sequential) plus a mixing matrix `mix`."""

    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__(*blocks)
        n = len(blocks)
        # mix[j - 1, i]: weight of output i (0 = stage input) in the input of block j (j = 1..n-1).
        mix = torch.zeros(max(n - 1, 0), n)
        for j in range(1, n):
            mix[j - 1, j] = 1.0
        self.mix = nn.Parameter(mix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]  # y_0, then each block's output
        h = x
        for j, block in enumerate(self):
            if j == 1:  # y_0 meets the block outputs from block 2 on: bring it to their shape
                outputs[0] = adapt_to(x, outputs[1])
            if j > 0:
                weights = self.mix[j - 1]
                h = outputs[j] * weights[j]
                for i in range(j):
                    h = h + outputs[i] * weights[i]
            h = block(h)
            outputs.append(h)
        return h


def adapt_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Option-A adapter: (N, C, H, W) -> like's (N, C', H', W') by subsampling and zero channels."""
    stride = max(1, round(x.shape[-1] / like.shape[-1]))
    return zero_pad_shortcut(x, like.shape[1] - x.shape[1], stride)


STAGE_TYPES["cross_block"] = CrossBlockStage

for _depth in (20, 56, 110):
    register_variant(
        f"crossblock_resnet{_depth}",
        build_resnet,
        dict(CIFAR_ARCH, depths=((_depth - 2) // 6,) * 3, shortcut="A", cross_block=True, num_classes=10),
        family="crossblock",
        source="resnetlab: ResNet with learned cross-block connections (equals the ResNet at initialisation)",
        description=f"CIFAR ResNet-{_depth} with learned cross-block connections",
        **CIFAR10,
    )
