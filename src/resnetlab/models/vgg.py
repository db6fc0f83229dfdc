"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks"): the plain baselines ResNets are measured
against (He et al. 2015 compare VGG-19's 19.6 GFLOPs with ResNet-34's 3.6).

Five stages of 3x3 convolutions (ReLU after each, BatchNorm before it in the _bn variants), a 2x2 max-pool after
each stage. The ImageNet networks (`vgg11`..`vgg19`, `_bn`) end as torchvision's: adaptive average pooling to 7x7
and a 4096-4096 MLP with dropout, with torchvision's state-dict keys (features.N, classifier.0/3/6) so its weights
load. The CIFAR networks (`vgg11_cifar`..`vgg19_cifar`, always with BN) take 32x32 or 28x28 images: no pool after
the last stage (after four pools the fifth stage works on 2x2 maps at 32 px, on 1x1 at 28 px, where its 3x3
convolutions see only their centre weights) and global average pooling into one linear layer, so that a 28x28x1
Fashion-MNIST image needs neither padding nor resizing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .base import CIFAR10, IMAGENET, TV, ClassifierNet, config_from_dict
from .registry import register_variant

# Convolution widths per stage: the paper's configurations A, B, D and E (table 1).
STAGES = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


@dataclass(frozen=True)
class VGGConfig:
    stages: tuple[tuple[int, ...], ...] = STAGES[16]
    batch_norm: bool = False
    head: str = "imagenet"  # "imagenet": 7x7 pool + 4096-4096 MLP (torchvision); "cifar": global pool + linear
    dropout: float = 0.5  # in the ImageNet MLP
    in_chans: int = 3
    num_classes: int = 1000

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field and what would work."""
        if self.head not in ("imagenet", "cifar"):
            raise ConfigError(f"head={self.head!r} is unknown; use 'imagenet' (torchvision's MLP) or 'cifar'")
        if not self.stages or not all(self.stages) or min(w for ws in self.stages for w in ws) < 1:
            raise ConfigError(f"stages={self.stages} needs one or more stages of positive widths, e.g. ((64,), (128,))")
        if not 0.0 <= self.dropout < 1.0 or self.in_chans < 1 or self.num_classes < 0:
            raise ConfigError(
                f"dropout={self.dropout} must be in [0, 1), in_chans={self.in_chans} >= 1, "
                f"num_classes={self.num_classes} >= 0"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VGG(ClassifierNet):
    """features (convs, ReLUs, pools) -> head; parts for fine-tuning: stage1..stageN, head."""

    classifier_name = "classifier"

    def __init__(self, cfg: VGGConfig, features_only: bool = False) -> None:
        super().__init__()
        cfg.validate()
        self.cfg, self.features_only = cfg, features_only
        layers: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index in `features` of each stage's last ReLU: its output, before the pool
        self._stage_of: dict[str, str] = {}  # "features.3" -> "stage2", for fine-tuning's parts
        in_ch, last = cfg.in_chans, len(cfg.stages) - 1
        for s, widths in enumerate(cfg.stages):
            for width in widths:
                self._stage_of[f"features.{len(layers)}"] = f"stage{s + 1}"
                layers.append(nn.Conv2d(in_ch, width, 3, padding=1))
                if cfg.batch_norm:
                    self._stage_of[f"features.{len(layers)}"] = f"stage{s + 1}"
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                in_ch = width
            self.stage_ends.append(len(layers) - 1)
            if cfg.head == "imagenet" or s < last:  # the CIFAR net keeps its last stage's resolution
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self.feature_info = [
            {"num_chs": widths[-1], "reduction": 2**s, "module": f"features.{end}"}
            for s, (widths, end) in enumerate(zip(cfg.stages, self.stage_ends))
        ]
        if cfg.head == "imagenet":
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # torchvision's: 224 px gives 7x7 already
        self.init_head(cfg.num_classes, 0.0)
        self._init_weights()

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if self.cfg.head == "cifar":
            return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        mlp: list[nn.Module] = [
            nn.Linear(self.num_features * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(self.cfg.dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(self.cfg.dropout),
        ]
        mlp.append(nn.Linear(4096, num_classes) if num_classes else nn.Identity())
        return nn.Sequential(*mlp)

    def get_classifier(self) -> nn.Module:
        """The last linear layer (the one a new number of classes replaces)."""
        head = self.classifier
        return head[-1] if isinstance(head, nn.Sequential) else head

    def reset_classifier(self, num_classes: int) -> None:
        """A new last layer for `num_classes`; the ImageNet MLP before it keeps its weights."""
        if isinstance(self.classifier, nn.Sequential):
            self.classifier[-1] = nn.Linear(4096, num_classes) if num_classes else nn.Identity()
        else:
            self.classifier = self._make_classifier(num_classes)
        self.cfg = replace(self.cfg, num_classes=num_classes)

    def _init_weights(self) -> None:
        """torchvision's: He (fan-out) for convs, BN to identity, N(0, 0.01) for linear layers."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def head_prefix(self) -> str:
        """'classifier.6.' (the ImageNet MLP's last layer: the MLP before it is backbone) or 'classifier.'."""
        mlp = isinstance(self.classifier, nn.Sequential)
        return f"classifier.{len(self.classifier) - 1}." if mlp else "classifier."

    def part_of(self, param_name: str) -> str:
        """Fine-tuning's parts: 'features.3.weight' -> 'stage2', 'classifier.0.weight' -> 'mlp' (the ImageNet
        net's fc6 and fc7), 'classifier.6.weight' -> 'head' (the last linear layer, as in every other family)."""
        if param_name.startswith(self.head_prefix()):
            return "head"
        if param_name.startswith("classifier."):
            return "mlp"
        layer = param_name.rpartition(".")[0]
        if layer not in self._stage_of:
            raise ValueError(f"{param_name!r} is not a parameter of this VGG (a wrapped model's name?)")
        return self._stage_of[layer]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, 512, H/32, W/32) (ImageNet) or (N, 512, H/16, W/16) (CIFAR)."""
        return self.features(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output before its pool: strides 1, 2, 4, 8, 16."""
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.stage_ends:
                outs.append(x)
        return outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, 512, h, w) -> logits; pre_logits: the input of the last linear layer (4096 or 512 features)."""
        if self.cfg.head == "cifar":
            return super().forward_head(x, pre_logits)
        x = torch.flatten(self.avgpool(x), 1)
        for layer in self.classifier[:-1]:
            x = layer(x)
        return x if pre_logits else self.classifier[-1](x)


def build_vgg(**arch: Any) -> VGG:
    features_only = arch.pop("features_only", False)
    return VGG(config_from_dict(VGGConfig, arch, "VGG"), features_only=features_only)


SIMONYAN = "Simonyan & Zisserman 2015: Very Deep Convolutional Networks for Large-Scale Image Recognition"
# torchvision's published counts and ImageNet-1k val acc@1 of its IMAGENET1K_V1 weights (torchvision model docs).
_TORCHVISION = {
    (11, False): (132_863_336, "69.02%"),
    (11, True): (132_868_840, "70.37%"),
    (13, False): (133_047_848, "69.93%"),
    (13, True): (133_053_736, "71.59%"),
    (16, False): (138_357_544, "71.59%"),
    (16, True): (138_365_992, "73.36%"),
    (19, False): (143_667_240, "72.38%"),
    (19, True): (143_678_248, "74.22%"),
}
for (_depth, _bn), (_params, _acc) in _TORCHVISION.items():
    register_variant(
        f"vgg{_depth}" + ("_bn" if _bn else ""),
        build_vgg,
        dict(stages=STAGES[_depth], batch_norm=_bn, num_classes=1000),
        family="vgg",
        params=_params,
        result=f"{_acc} top-1 accuracy",
        source=TV,
        description=f"VGG-{_depth}{' with BatchNorm' if _bn else ''} (torchvision's key names)",
        **IMAGENET,
    )
for _depth in STAGES:
    register_variant(
        f"vgg{_depth}_cifar",
        build_vgg,
        dict(stages=STAGES[_depth], batch_norm=True, head="cifar", num_classes=10),
        family="vgg",
        source=SIMONYAN,
        description=f"VGG-{_depth} with BatchNorm for 32x32 (or 28x28) images: four pools, global pooling, one linear",
        **CIFAR10,
    )
