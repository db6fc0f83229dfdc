"""The interface every resnetlab network shares (timm's): features, head, classifier reset, backbone mode.

A subclass defines `forward_stages(x) -> [stage outputs]` and `forward_features(x)`, sets
`num_features`, `feature_info`, and calls `init_head(num_classes, drop_rate)`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import ConfigError

T = TypeVar("T")

# Registry facts shared by the families: where published figures come from, and the two dataset layouts.
TV = "torchvision: IMAGENET1K_V1 weights, acc@1 on ImageNet-1k val (torchvision model docs)"
IMAGENET = dict(dataset="imagenet", num_classes=1000, input_size=(3, 224, 224))
CIFAR10 = dict(dataset="cifar10", num_classes=10, input_size=(3, 32, 32))


def config_from_dict(cls: type[T], values: dict[str, Any], family: str) -> T:
    """A config dataclass from keyword arguments: unknown names are a ConfigError, lists become tuples."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {family} argument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class ClassifierNet(nn.Module):
    """Global average pooling, optional dropout, a linear classifier, and `features_only` mode."""

    classifier_name = "fc"  # attribute (and state-dict key prefix) of the linear layer
    features_only = False
    num_features: int
    feature_info: list[dict]

    def init_head(self, num_classes: int, drop_rate: float = 0.0) -> None:
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        setattr(self, self.classifier_name, self._make_classifier(num_classes))

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def head_prefix(self) -> str:
        """The state-dict prefix of the layer a new number of classes replaces ('fc.')."""
        return self.classifier_name + "."

    @property
    def num_classes(self) -> int:
        head = self.get_classifier()
        return head.out_features if isinstance(head, nn.Linear) else 0

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for `num_classes` (0 removes it)."""
        setattr(self, self.classifier_name, self._make_classifier(num_classes))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, C, h, w) -> pooled (N, C) when pre_logits, else logits (N, num_classes)."""
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_stages(x)
        return self.forward_head(self.forward_features(x))
