"""The model registry: a name -> a builder and the published facts about that network.

create_model("resnet20")                      # CIFAR-10 ResNet-20, option A, 10 classes
create_model("resnet50", num_classes=5)       # any architecture argument can be overridden
list_models("preact*")
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import UserError, did_you_mean


@dataclass(frozen=True)
class ModelInfo:
    """Published metadata of one registered name."""

    name: str
    builder: Callable[..., nn.Module]
    family: str  # "resnet", "densenet", "highway", ...
    dataset: str  # what the published figures refer to: "imagenet", "cifar10"
    num_classes: int  # default number of classes
    input_size: tuple[int, int, int]  # (C, H, W) the network was published at
    params: int | None = None  # published parameter count at the default classes (PyTorch convention)
    result: str | None = None  # the published result, e.g. "8.75% top-1 error on CIFAR-10"
    source: str = ""  # where the figures come from
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    family: str,
    dataset: str,
    num_classes: int,
    input_size: tuple[int, int, int],
    params: int | None = None,
    result: str | None = None,
    source: str = "",
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register `builder(**kwargs) -> nn.Module` under `name`. A name is registered once."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered; pick another name")
        _REGISTRY[name] = ModelInfo(
            name, builder, family, dataset, num_classes, input_size, params, result, source, description
        )
        return builder

    return decorate


def register_variant(name: str, build: Callable[..., nn.Module], arch: dict[str, Any], **meta: Any) -> None:
    """Register a variant given as a dict of architecture arguments (timm's way: no subclass per name)."""

    def builder(**overrides: Any) -> nn.Module:
        return build(**{**arch, **overrides})

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = meta.get("description") or f"{name}: {arch}"
    register_model(name, **meta)(builder)


def model_info(name: str) -> ModelInfo:
    """The registered facts for `name`; a UserError naming the closest names when it is unknown."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}{did_you_mean(name, list(_REGISTRY))}; `resnetlab models` lists all")
    return _REGISTRY[name]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted naturally (resnet20 before resnet110); `pattern` is a shell glob."""
    if pattern and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"  # a bare word matches anywhere in the name
    names = [n for n in _REGISTRY if pattern is None or fnmatch.fnmatch(n, pattern)]
    return sorted(names, key=_natural_key)


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered network. Defaults: 1000 classes for ImageNet models, 10 for CIFAR-10 ones."""
    info = model_info(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if in_chans is not None:
        overrides["in_chans"] = in_chans
    if features_only:
        overrides["features_only"] = True
    return info.builder(**overrides)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
