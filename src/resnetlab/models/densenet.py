"""DenseNet and DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks").

Every layer of a dense block reads the concatenation of all earlier feature maps of the block and adds
`growth_rate` new channels; transitions (BN-ReLU-1x1 conv-avg-pool) compress between blocks. The
BC variant uses bottleneck layers (1x1 conv to bn_size * k channels) and compression 0.5.

State-dict keys follow torchvision (features.conv0, features.denseblockN.denselayerM.norm1/conv1/...,
features.transitionN, features.norm5, classifier) so its weights load unchanged.
`memory_efficient=True` recomputes each layer's concatenation and bottleneck in the backward pass
(gradient checkpointing): the same gradients, far less activation memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from ..errors import ConfigError
from .base import CIFAR10, IMAGENET, TV, ClassifierNet, config_from_dict
from .registry import register_variant


@dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int = 32  # k: channels each layer adds
    block_config: tuple[int, ...] = (6, 12, 24, 16)  # layers per dense block
    num_init_features: int = 64  # channels out of the stem
    bn_size: int = 4  # bottleneck width = bn_size * k (0: no bottleneck, plain DenseNet)
    compression: float = 0.5  # transition output = floor(compression * input channels)
    stem: str = "imagenet"  # "imagenet" 7x7/2 conv + BN-ReLU + max-pool, "cifar" one 3x3 conv
    dropout: float = 0.0  # after each layer's 3x3 conv
    memory_efficient: bool = False
    drop_rate: float = 0.0  # before the classifier
    in_chans: int = 3
    num_classes: int = 1000

    def validate(self) -> None:
        if self.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem={self.stem!r} is unknown for DenseNet; use 'imagenet' or 'cifar'")
        if not 0.0 < self.compression <= 1.0:
            raise ConfigError(f"compression={self.compression} must be in (0, 1]")
        if self.growth_rate < 1 or not self.block_config or min(self.block_config) < 1:
            raise ConfigError(f"growth_rate={self.growth_rate} and block_config={self.block_config} must be positive")


class DenseLayer(nn.Module):
    """[features so far] -> concat -> (BN-ReLU-1x1 conv) -> BN-ReLU-3x3 conv -> k new channels."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, dropout: float, memory_efficient: bool) -> None:
        super().__init__()
        mid = bn_size * growth_rate if bn_size else in_ch
        if bn_size:
            self.norm1 = nn.BatchNorm2d(in_ch)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.bottleneck_layers = bool(bn_size)
        self.dropout, self.memory_efficient = dropout, memory_efficient

    def bottleneck(self, *inputs: torch.Tensor, recomputing: bool = False) -> torch.Tensor:
        x = torch.cat(inputs, 1)  # (N, sum of channels, H, W): the copy checkpointing avoids keeping
        if not self.bottleneck_layers:
            return x
        n = self.norm1
        if recomputing and n.training and n.track_running_stats:
            # the first pass's arithmetic exactly, but its running-statistic update goes to copies
            momentum = n.momentum if n.momentum is not None else 0.0
            mean, var = n.running_mean.clone(), n.running_var.clone()
            x = F.batch_norm(x, mean, var, n.weight, n.bias, training=True, momentum=momentum, eps=n.eps)
        else:
            x = n(x)  # in eval mode (frozen) BatchNorm updates nothing, so a recomputation may call it again
        return self.conv1(self.relu1(x))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and self.training and any(t.requires_grad for t in inputs):
            # checkpoint() runs the function now and again in the backward pass; the second run must not
            # update norm1's running statistics a second time (they would drift from the ordinary mode's).
            calls = []

            def bottleneck_once(*tensors: torch.Tensor) -> torch.Tensor:
                calls.append(None)
                return self.bottleneck(*tensors, recomputing=len(calls) > 1)

            x = cp.checkpoint(bottleneck_once, *inputs, use_reentrant=False)
        else:
            x = self.bottleneck(*inputs)
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x


class DenseBlock(nn.ModuleDict):
    """`n` dense layers; returns the concatenation of the input and every layer's output."""

    def __init__(self, n: int, in_ch: int, growth_rate: int, bn_size: int, dropout: float, mem: bool) -> None:
        super().__init__()
        for i in range(n):
            self[f"denselayer{i + 1}"] = DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, dropout, mem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compress channels) - 2x2 average pool (halve the resolution)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_ch),
                relu=nn.ReLU(inplace=True),
                conv=nn.Conv2d(in_ch, out_ch, 1, bias=False),
                pool=nn.AvgPool2d(2, 2),
            )
        )


class DenseNet(ClassifierNet):
    classifier_name = "classifier"

    def __init__(self, cfg: DenseNetConfig | None = None, features_only: bool = False, **overrides: Any) -> None:
        super().__init__()
        cfg = replace(cfg or DenseNetConfig(), **overrides)
        cfg.validate()
        self.cfg, self.features_only = cfg, features_only
        ch = cfg.num_init_features
        if cfg.stem == "imagenet":  # (N, C, H, W) -> (N, ch, H/4, W/4)
            stem = [
                ("conv0", nn.Conv2d(cfg.in_chans, ch, 7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(ch)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
            ]
            reduction = 4
        else:  # CIFAR: one 3x3 conv; the first dense layer normalises its input
            stem = [("conv0", nn.Conv2d(cfg.in_chans, ch, 3, padding=1, bias=False))]
            reduction = 1
        self.features = nn.Sequential(OrderedDict(stem))
        self.feature_info: list[dict[str, Any]] = []
        self.stage_names: list[str] = []
        for i, n in enumerate(cfg.block_config):
            name = f"denseblock{i + 1}"
            self.features.add_module(
                name, DenseBlock(n, ch, cfg.growth_rate, cfg.bn_size, cfg.dropout, cfg.memory_efficient)
            )
            ch += n * cfg.growth_rate
            self.feature_info.append({"num_chs": ch, "reduction": reduction, "module": f"features.{name}"})
            self.stage_names.append(name)
            if i < len(cfg.block_config) - 1:
                out = int(ch * cfg.compression)
                self.features.add_module(f"transition{i + 1}", Transition(ch, out))
                ch, reduction = out, reduction * 2
        self.features.add_module("norm5", nn.BatchNorm2d(ch))
        self.num_features = ch
        self.init_head(cfg.num_classes, cfg.drop_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, H/r, W/r) after the final BN-ReLU."""
        return F.relu(self.features(x))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every dense block; the last one after the final BN-ReLU."""
        outs = []
        for name, module in self.features.named_children():
            if name == "norm5":
                outs[-1] = F.relu(module(x))
                continue
            x = module(x)
            if name in self.stage_names:
                outs.append(x)
        return outs

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        self.cfg = replace(self.cfg, num_classes=num_classes)


def build_densenet(**arch: Any) -> DenseNet:
    features_only = arch.pop("features_only", False)
    return DenseNet(config_from_dict(DenseNetConfig, arch, "DenseNet"), features_only=features_only)


HUANG = "Huang et al. 2017: Densely Connected Convolutional Networks, table 2, CIFAR-10 (augmented) test error"

for _depth, _k, _blocks, _init, _params, _acc in (
    (121, 32, (6, 12, 24, 16), 64, 7_978_856, "74.43%"),
    (161, 48, (6, 12, 36, 24), 96, 28_681_000, "77.14%"),
    (169, 32, (6, 12, 32, 32), 64, 14_149_480, "75.60%"),
    (201, 32, (6, 12, 48, 32), 64, 20_013_928, "76.90%"),
):
    register_variant(
        f"densenet{_depth}",
        build_densenet,
        dict(growth_rate=_k, block_config=_blocks, num_init_features=_init, num_classes=1000),
        family="densenet",
        params=_params,
        result=f"{_acc} top-1 accuracy",
        source=TV,
        description=f"DenseNet-{_depth} (torchvision's key names)",
        **IMAGENET,
    )

# CIFAR DenseNet-BC: 3 blocks of (L - 4) / 6 bottleneck layers, stem of 2k channels, compression 0.5.
for _depth, _k, _params, _err in ((100, 12, 769_162, "4.51%"), (190, 40, None, "3.46%")):
    _n = (_depth - 4) // 6
    register_variant(
        f"densenet_bc_{_depth}" + ("" if _k == 12 else f"_{_k}"),
        build_densenet,
        dict(growth_rate=_k, block_config=(_n,) * 3, num_init_features=2 * _k, stem="cifar", num_classes=10),
        family="densenet",
        params=_params,
        result=f"{_err} test error",
        source=HUANG,
        description=f"DenseNet-BC (L={_depth}, k={_k}) for CIFAR",
        **CIFAR10,
    )
