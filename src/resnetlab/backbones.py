"""resnetlab's ResNets as torchvision detection and segmentation backbones.

    detector = torchvision.models.detection.FasterRCNN(resnetlab.backbone("resnet50"), num_classes=3)
    segmenter = resnetlab.segmentation_model("resnet50", num_classes=21, head="deeplabv3", aux=True)

`backbone("resnet50")` is what torchvision's `resnet_fpn_backbone(backbone_name="resnet50", weights=None)` gives,
built on resnetlab's network: torchvision's own BackboneWithFPN around the same module names (body.conv1,
body.layer1..4, fpn.*), the same frozen layers, FrozenBatchNorm2d, output keys and values, so torchvision's
detection checkpoints load into it. `segmentation_model` is torchvision's deeplabv3_resnet50 / fcn_resnet50 on a
dilated resnetlab ResNet. torchvision is imported only when these run: it is not a dependency of resnetlab.

torchvision's IntermediateLayerGetter reads a network's direct children in registration order; resnetlab's ResNet
registers them in forward order (conv1, bn1, act1, maxpool, layer1..N, then v2's final norm and act), which is
what makes it fit without a wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .errors import UserError
from .models.pretrained import load_pretrained
from .models.registry import create_model
from .models.resnet import ResNet

if TYPE_CHECKING:
    from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

SEGMENTATION_HEADS = ("deeplabv3", "fcn")


def backbone(
    model: str | nn.Module = "resnet50",
    *,
    fpn: bool = True,
    trainable_layers: int = 3,
    returned_layers: Sequence[int] | None = None,
    weights: str | Path | None = None,
    norm_layer: Callable[[int], nn.Module] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    out_channels: int = 256,
    **model_kwargs: Any,
) -> nn.Module:
    """A torchvision detection backbone (has `out_channels`) on a resnetlab ResNet, as resnet_fpn_backbone builds.

    model: a registered name (built with `model_kwargs`, no classifier) or a built ResNet, changed in place.
    trainable_layers: how many of the last stages (then the stem) keep trainable weights; the rest are frozen.
    returned_layers: the stages (1-based) fed to the FPN; default all. weights: a local weights file (a resnetlab
    run, a torchvision or timm state dict) loaded before anything is frozen. norm_layer: what every BatchNorm2d
    becomes, statistics kept; default torchvision's FrozenBatchNorm2d, nn.BatchNorm2d leaves them trainable.
    fpn=False returns the body alone, giving {"0": the last returned stage} with out_channels its channels.
    Returns: (N, 3, H, W) -> {"0": (N, out_channels, H/4, W/4), ..., "3": (.., H/32, ..), "pool": (.., H/64, ..)}.
    """
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.misc import FrozenBatchNorm2d

    net = _resnet(model, weights, **model_kwargs)
    n = len(net.stage_names)
    stages = list(returned_layers) if returned_layers is not None else list(range(1, n + 1) if fpn else [n])
    if not stages or not all(isinstance(s, int) and 1 <= s <= n for s in stages):
        raise UserError(f"returned_layers={returned_layers!r} must list stage numbers from 1 to {n}, e.g. [2, 3, 4]")
    stages = sorted(set(stages))  # the body yields maps in network order; FPN's in_channels_list must follow it
    _replace_batchnorm(net, norm_layer or FrozenBatchNorm2d)
    _freeze(net, trainable_layers)
    channels = [net.feature_info[s - 1]["num_chs"] for s in stages]
    if not fpn:
        body = IntermediateLayerGetter(net, _return_layers(net, {stages[-1]: "0"}))
        body.out_channels = channels[-1]  # what FasterRCNN reads to size its heads
        return body
    return_layers = _return_layers(net, {s: str(i) for i, s in enumerate(stages)})
    return BackboneWithFPN(net, return_layers, channels, out_channels, extra_blocks=extra_blocks)


def segmentation_model(
    model: str | nn.Module = "resnet50",
    num_classes: int = 21,
    *,
    head: str = "deeplabv3",
    aux: bool = False,
    weights: str | Path | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """torchvision's DeepLabV3 or FCN (heads and forward) on a resnetlab ResNet, as deeplabv3_resnet50 builds.

    A name is built with replace_stride_with_dilation=(False, True, True) unless given (output stride 8, as
    torchvision's segmentation models); a built ResNet is used as it is. `weights` (a local file) go into the
    backbone. aux adds an FCN head on the second-to-last stage. Returns a model mapping (N, 3, H, W) to
    {"out": (N, num_classes, H, W)} (+ "aux" of the same shape), upsampled to the input size.
    """
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    if head not in SEGMENTATION_HEADS:
        raise UserError(f"head={head!r} is unknown; use one of {', '.join(SEGMENTATION_HEADS)}")
    if isinstance(model, str):
        model_kwargs.setdefault("replace_stride_with_dilation", (False, True, True))
    net = _resnet(model, weights, **model_kwargs)
    n = len(net.stage_names)
    if aux and n < 2:
        raise UserError(f"aux=True needs a network of at least 2 stages; this one has {n}")
    # Same keys as torchvision: backbone.conv1 ... backbone.layer4, classifier.*, aux_classifier.*
    body = IntermediateLayerGetter(net, _return_layers(net, {n - 1: "aux", n: "out"} if aux else {n: "out"}))
    channels = net.feature_info[-1]["num_chs"]
    aux_head = FCNHead(net.feature_info[-2]["num_chs"], num_classes) if aux else None
    if head == "fcn":
        return FCN(body, FCNHead(channels, num_classes), aux_head)
    return DeepLabV3(body, DeepLabHead(channels, num_classes), aux_head)


def _resnet(model: str | nn.Module, weights: str | Path | None, **model_kwargs: Any) -> ResNet:
    """A resnetlab ResNet from a registered name (no classifier unless num_classes is given) or as given."""
    if isinstance(model, str):
        model = create_model(model, **{"num_classes": 0, **model_kwargs})
    elif model_kwargs:
        raise UserError(f"{', '.join(model_kwargs)} apply when the model is given by name, not to a built model")
    if not isinstance(model, ResNet):
        raise UserError(f"a backbone needs a network of resnetlab's ResNet family, not a {type(model).__name__}")
    if weights is not None:
        load_pretrained(model, weights)  # a head of another size is dropped; the backbone keeps what fits
    return model


def _return_layers(net: ResNet, outputs: dict[int, str]) -> dict[str, str]:
    """IntermediateLayerGetter's {child name: output key} from {1-based stage: output key}.

    A v2 (pre-activation) network's last stage is read after its final BN-ReLU, the `act` child that follows it.
    """
    n = len(net.stage_names)
    last = "act" if net.cfg.preact else net.stage_names[-1]
    return {(last if s == n else net.stage_names[s - 1]): key for s, key in outputs.items()}


def _freeze(net: ResNet, trainable_layers: int) -> None:
    """torchvision's rule: the last `trainable_layers` of [layerN, ..., layer1, conv1] train, all else is frozen."""
    n = len(net.stage_names)
    if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= n + 1:
        raise UserError(f"trainable_layers={trainable_layers!r} must be from 0 to {n + 1} (the stages and the stem)")
    train = [*reversed(net.stage_names), "conv1"][:trainable_layers]
    if trainable_layers == n + 1:
        train.append("bn1")  # all of the stem, as torchvision's 5
    if trainable_layers > 0:
        train.append("norm")  # v2's final BN belongs to the last stage (an Identity in v1 networks)
    for name, param in net.named_parameters():
        if name.split(".")[0] not in train:
            param.requires_grad_(False)


def _replace_batchnorm(module: nn.Module, norm_layer: Callable[[int], nn.Module]) -> None:
    """Swap every BatchNorm2d for norm_layer(C) holding its weights and running statistics (what fits)."""
    if norm_layer is nn.BatchNorm2d:
        return
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            new = norm_layer(child.num_features).to(child.weight.device)
            # strict=False: FrozenBatchNorm2d drops num_batches_tracked; a GroupNorm takes only weight and bias.
            new.load_state_dict(child.state_dict(), strict=False)
            setattr(module, name, new)
        else:
            _replace_batchnorm(child, norm_layer)
