"""The ResNet family: one config, one network class, two block types.

Covers, by configuration alone:
  - ResNet v1 (He et al. 2015, "Deep Residual Learning"): post-activation, x -> relu(x + F(x)).
  - ResNet v2 (He et al. 2016, "Identity Mappings"): pre-activation, x -> x + F(x), F = BN-ReLU-conv ...
  - shortcut options A / B / C, and `plain=True`: the same network with no shortcut at all.
  - ImageNet (7x7/2 stem + max-pool, 4 stages) and CIFAR (3x3 stem, 3 stages of 16/32/64) layouts.
  - ResNeXt (groups, width per group), Wide ResNet (width multiplier, or a wider bottleneck),
    ResNet-D (deep stem, average-pool shortcut), SE blocks, stochastic depth, residual scaling.

State-dict keys follow torchvision (conv1, bn1, layer1..4, downsample.0/1, fc) so its weights load.
The model interface follows timm: forward_features, forward_head, reset_classifier, num_features,
feature_info, and features_only=True for a backbone returning every stage's output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .base import CIFAR10, IMAGENET, TV, ClassifierNet, config_from_dict
from .layers import SHORTCUTS, SqueezeExcite, ZeroPadShortcut, conv, drop_path, make_act, make_norm, make_shortcut
from .registry import register_variant

STEMS = ("imagenet", "cifar", "deep")
GATE_MODES = ("exclusive", "shortcut")
LAYOUTS = ("standard", "bn_after_add", "relu_before_add", "relu_preact")


@dataclass(frozen=True)
class ResNetConfig:
    """Everything that defines a network of the family; a named variant is a dict of these fields."""

    block: str = "basic"  # "basic" (two 3x3 convs) or "bottleneck" (1x1 - 3x3 - 1x1, expansion 4)
    depths: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # base width per stage (bottleneck output is 4x this)
    stem: str = "imagenet"  # "imagenet" 7x7/2 + max-pool, "cifar" 3x3/1, "deep" three 3x3 (ResNet-C/D)
    stem_width: int = 64  # channels out of the stem
    shortcut: str = "B"  # "A", "B" or "C" (see layers.py)
    preact: bool = False  # pre-activation (v2) blocks
    plain: bool = False  # no shortcuts at all: the plain twin
    groups: int = 1  # ResNeXt cardinality (bottleneck only)
    width_per_group: int = 64  # bottleneck inner width = int(width * width_per_group / 64) * groups
    width_mult: float = 1.0  # Wide ResNet k: every stage width is multiplied by it
    kernel_size: int = 3
    act: str = "relu"
    norm: bool = True  # batch norm on or off
    dropout: float = 0.0  # dropout between the convolutions of a block (as in Wide ResNet)
    residual_scale: float = 1.0  # y = x + s * F(x)
    # s a trainable scalar per block, starting at residual_scale: 0 is ReZero's start (Bachlechner et al. 2020,
    # every block the identity), 1 the plain sum's
    learn_residual_scale: bool = False
    zero_init_last: bool = False  # zero the last BN (v2: last conv) of every residual branch
    se_reduction: int = 0  # > 0 adds a Squeeze-and-Excitation module with this reduction to every block
    se_divisor: int = 8  # SE hidden width rounded to a multiple of this (timm's rule); 1 for plain C // r
    gate: bool = False  # exclusive gating: y = g * F(x) + (1 - g) * shortcut(x), g = sigmoid(1x1 conv(x))
    gate_bias: float = -2.0  # initial gate bias: negative favours the carry path (Srivastava et al. 2015)
    # The other shortcut variants of He et al. 2016 (figure 2), on top of any shortcut option:
    gate_mode: str = "exclusive"  # "shortcut": y = F(x) + (1 - g) * shortcut(x), the branch ungated (fig. 2d)
    shortcut_scale: float = 1.0  # y = s * shortcut(x) + residual_scale * F(x) (fig. 2b: 0.5, with or without F)
    shortcut_dropout: float = 0.0  # dropout on the shortcut's output at training time (fig. 2f: 0.5)
    # Where BN and ReLU sit around the addition in a v1 block (He et al. 2016, figure 4): "standard" (v1, or v2
    # with preact), "bn_after_add" (BN and ReLU after the sum), "relu_before_add" (the branch ends in ReLU,
    # nothing after the sum), "relu_preact" (ReLU - conv - BN - ReLU - conv - BN, nothing after the sum).
    layout: str = "standard"
    cross_block: bool = False  # each block's input is a learned mix of the stage input and earlier outputs
    avg_down: bool = False  # ResNet-D shortcut: average-pool, then 1x1 conv
    # torchvision's replace_stride_with_dilation: one bool per stage after the first (stages 2-4 on ImageNet).
    # True keeps that stage's resolution (stride 1) and dilates its kxk convs instead, the dilation growing
    # from stage to stage; (False, True, True) is DeepLab's output stride 8. Parameter shapes do not change.
    # (With avg_down the shortcut then pools nothing, where timm's output_stride uses a 2x2 stride-1 pool.)
    replace_stride_with_dilation: tuple[bool, ...] | None = None
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly to this rate at the last block
    drop_rate: float = 0.0  # dropout before the classifier
    in_chans: int = 3
    num_classes: int = 1000  # 0 builds no classifier (features only)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field and what would work."""
        if self.block not in BLOCK_TYPES:
            raise ConfigError(f"block={self.block!r} is unknown; use one of {', '.join(BLOCK_TYPES)}")
        if self.stem not in STEMS:
            raise ConfigError(f"stem={self.stem!r} is unknown; use one of {', '.join(STEMS)}")
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut={self.shortcut!r} is unknown; use 'A', 'B' or 'C'")
        if not self.depths or len(self.depths) != len(self.widths) or min(self.depths) < 1:
            raise ConfigError(f"depths={self.depths} and widths={self.widths} need one positive depth per width")
        if self.block != "bottleneck" and (self.groups != 1 or self.width_per_group != 64):
            raise ConfigError("groups and width_per_group apply to bottleneck blocks only; use block='bottleneck'")
        if self.kernel_size % 2 == 0 or self.kernel_size < 1:
            raise ConfigError(f"kernel_size={self.kernel_size} must be odd so that padding keeps the size")
        if self.plain and self.zero_init_last:
            raise ConfigError("zero_init_last would silence every block of a plain network; it needs shortcuts")
        if self.plain and (self.gate or self.block == "highway"):
            raise ConfigError("a gate chooses between the branch and the shortcut; a plain network has no shortcut")
        self._validate_variants()
        for name in ("dropout", "drop_path_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.in_chans < 1 or self.num_classes < 0:
            raise ConfigError(f"in_chans={self.in_chans} must be >= 1 and num_classes={self.num_classes} >= 0")
        make_act(self.act)  # raises for an unknown name
        dilate, n = self.replace_stride_with_dilation, len(self.depths) - 1
        if dilate is not None:
            is_bools = isinstance(dilate, (tuple, list)) and all(isinstance(d, bool) for d in dilate)
            if not is_bools or len(dilate) != n:
                example = (False,) * (n - 2) + (True,) * min(n, 2)  # (False, True, True) on ImageNet: DeepLab's
                raise ConfigError(
                    f"replace_stride_with_dilation={dilate!r} needs {n} booleans, one per stage after the first, "
                    f"e.g. {example}"
                )
            if any(dilate) and self.block not in ("basic", "bottleneck"):
                raise ConfigError(f"replace_stride_with_dilation needs basic or bottleneck blocks, not {self.block!r}")

    def _validate_variants(self) -> None:
        """He et al. 2016's shortcut and activation variants: each refused where it would mean nothing."""
        if self.gate_mode not in GATE_MODES:
            raise ConfigError(f"gate_mode={self.gate_mode!r} is unknown; use one of {', '.join(GATE_MODES)}")
        if self.gate_mode != "exclusive" and not (self.gate or self.block == "highway"):
            raise ConfigError(f"gate_mode={self.gate_mode!r} sets how a gate mixes the paths; add gate=True")
        if not self.shortcut_scale > 0:
            raise ConfigError(f"shortcut_scale={self.shortcut_scale} must be > 0 (plain=True removes the shortcut)")
        if not 0.0 <= self.shortcut_dropout < 1.0:
            raise ConfigError(f"shortcut_dropout={self.shortcut_dropout} must be in [0, 1)")
        if self.plain and self.learn_residual_scale:
            raise ConfigError("learn_residual_scale weighs the branch against the shortcut; a plain network has none")
        if self.learn_residual_scale and self.residual_scale == 0 and self.zero_init_last:
            raise ConfigError(
                "learn_residual_scale from residual_scale=0 with zero_init_last: each branch and its weight start "
                "at zero, so neither gets a gradient; drop zero_init_last (ReZero needs only the zero weight)"
            )
        if self.plain and (self.shortcut_scale != 1.0 or self.shortcut_dropout):
            raise ConfigError("shortcut_scale and shortcut_dropout act on the shortcut; a plain network has none")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout={self.layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
        if self.layout != "standard":
            if self.preact or self.plain or self.block not in ("basic", "bottleneck"):
                raise ConfigError(
                    f"layout={self.layout!r} rearranges a v1 residual block; it needs basic or bottleneck blocks "
                    "with preact=False and plain=False (preact=True is full pre-activation)"
                )
            if self.layout == "bn_after_add" and not self.norm:
                raise ConfigError("layout='bn_after_add' moves a BatchNorm after the sum; it needs norm=True")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ResNetConfig:
        return config_from_dict(cls, values, "ResNet")


@dataclass
class BlockArgs:
    """What one block needs to know beyond its channel counts."""

    cfg: ResNetConfig
    stride: int = 1
    drop_path: float = 0.0
    first_dilation: int = 1  # of the block's first kxk conv: the previous stage's dilation in a stage's first block
    dilation: int = 1  # of the block's other kxk convs (torchvision and timm carry it the same way)


class ResidualBlock(nn.Module):
    """What every block shares: the shortcut, SE, stochastic depth, scaling and the final sum.

    Subclasses build their convolutions and define `residual(x) -> (F(x), input for a projection)`.
    """

    expansion = 1
    final_act = True  # v1 blocks end in an activation after the sum; highway layers do not
    always_gated = False  # highway layers carry a transform gate whatever the config says

    def _common(self, in_ch: int, out_ch: int, args: BlockArgs, gate_kernel: int = 1) -> None:
        cfg = args.cfg
        self.preact, self.plain, self.scale, self.drop_path_rate = (
            cfg.preact,
            cfg.plain,
            cfg.residual_scale,
            args.drop_path,
        )
        # In place is safe after a BatchNorm (its backward does not need its output), not on a bare input.
        self.act = make_act(cfg.act, inplace=cfg.norm)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.se = SqueezeExcite(out_ch, cfg.se_reduction, cfg.se_divisor) if cfg.se_reduction else None
        # Gate g(x) (N, out_ch, H', W') from the block input, strided like the branch (He et al. 2016, fig. 2c).
        gated = (cfg.gate or self.always_gated) and not cfg.plain
        self.gate = conv(in_ch, out_ch, gate_kernel, stride=args.stride, bias=True) if gated else None
        self.gate_bias, self.branch_gated = cfg.gate_bias, cfg.gate_mode == "exclusive"
        self.shortcut_scale, self.layout = cfg.shortcut_scale, cfg.layout
        # A 0-d parameter: one learned weight of the branch per block (plain nets have no sum to weigh).
        learned = cfg.learn_residual_scale and not cfg.plain
        self.residual_weight = nn.Parameter(torch.tensor(float(cfg.residual_scale))) if learned else None
        self.shortcut_drop = nn.Dropout(cfg.shortcut_dropout) if cfg.shortcut_dropout > 0 else nn.Identity()
        # relu_preact activates the block input for the branch alone: not in place, the shortcut still needs it.
        self.input_act = make_act(cfg.act) if cfg.layout == "relu_preact" else nn.Identity()
        self.downsample = (
            None
            if cfg.plain
            else make_shortcut(cfg.shortcut, in_ch, out_ch, args.stride, cfg.norm, cfg.preact, cfg.avg_down)
        )

    def residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def end_branch(self, out: torch.Tensor, last_norm: nn.Module) -> torch.Tensor:
        """A v1 branch after its last conv: BN (which bn_after_add moves after the sum), and ReLU in
        relu_before_add."""
        if self.layout == "bn_after_add":
            return out
        out = last_norm(out)
        return self.act(out) if self.layout == "relu_before_add" else out

    def branch_ends_in(self, norm: nn.Module) -> bool:
        """Whether a v1 branch's last BatchNorm is in the branch (zero_init_last zeroes it, else the last conv)."""
        return isinstance(norm, nn.BatchNorm2d) and self.layout != "bn_after_add"

    def last_layer(self) -> nn.Module:
        """The layer that ends the residual branch (zeroed by zero_init_last)."""
        raise NotImplementedError

    def output_norm(self) -> nn.Module:
        """The BatchNorm of out_ch channels that layout='bn_after_add' applies after the sum."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, pre = self.residual(x)
        if self.se is not None:
            out = self.se(out)
        if self.plain:  # no shortcut: v1 still ends in its activation, v2 hands the branch on as it is
            return self.act(out) if self.final_act and not self.preact else out
        out = drop_path(out, self.drop_path_rate, self.training)
        if self.residual_weight is not None:
            out = out * self.residual_weight
        elif self.scale != 1.0:
            out = out * self.scale
        shortcut = self.shortcut(x, pre)
        if self.gate is not None:
            g = torch.sigmoid(self.gate(pre))  # exclusive: g * F + (1 - g) * h; shortcut-only: F + (1 - g) * h
            out = (g * out if self.branch_gated else out) + (1.0 - g) * shortcut
        else:
            out = shortcut + out
        return self.after_sum(out)

    def shortcut(self, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """h(x): identity, option A's zero padding of the raw input, or a projection (of v2's normalised input),
        then scaled and dropped out where the config says so."""
        if self.downsample is None:
            h = x
        elif isinstance(self.downsample, ZeroPadShortcut):
            h = self.downsample(x)  # option A pads the raw input, in v1 and v2 alike
        else:
            h = self.downsample(pre)  # v2 projects the normalised input (He et al. 2016)
        if self.shortcut_scale != 1.0:
            h = h * self.shortcut_scale
        return self.shortcut_drop(h)

    def after_sum(self, out: torch.Tensor) -> torch.Tensor:
        """v1 ends in its activation; v2, relu_before_add and relu_preact end at the sum; bn_after_add in BN-act."""
        if self.layout == "bn_after_add":
            return self.act(self.output_norm()(out))
        ends_in_act = self.final_act and not self.preact and self.layout == "standard"
        return self.act(out) if ends_in_act else out


class BasicBlock(ResidualBlock):
    """Two kxk convolutions. v1: conv-BN-act-conv-BN, add, act. v2: BN-act-conv-BN-act-conv, add."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, args: BlockArgs) -> None:
        super().__init__()
        cfg, out_ch = args.cfg, width * self.expansion
        k, bias = cfg.kernel_size, not cfg.norm
        # v2 normalises the block input (in_ch) first; v1 normalises each conv output.
        self.conv1 = conv(in_ch, width, k, stride=args.stride, dilation=args.first_dilation, bias=bias)
        self.bn1 = make_norm(in_ch if cfg.preact else width, cfg.norm)
        self.conv2 = conv(width, out_ch, k, dilation=args.dilation, bias=bias)
        self.bn2 = make_norm(width if cfg.preact else out_ch, cfg.norm)
        self._common(in_ch, out_ch, args)

    def residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.preact:
            pre = self.act(self.bn1(x))
            return self.conv2(self.drop(self.act(self.bn2(self.conv1(pre))))), pre
        # relu_preact activates the branch's input alone: the shortcut (a projection, a gate) reads x (fig. 4d)
        out = self.conv2(self.drop(self.act(self.bn1(self.conv1(self.input_act(x))))))
        return self.end_branch(out, self.bn2), x

    def last_layer(self) -> nn.Module:
        return self.conv2 if self.preact or not self.branch_ends_in(self.bn2) else self.bn2

    def output_norm(self) -> nn.Module:
        return self.bn2


class Bottleneck(ResidualBlock):
    """1x1 reduce - kxk (stride, groups) - 1x1 expand x4. Stride on the kxk conv (torchvision's v1.5)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, args: BlockArgs) -> None:
        super().__init__()
        cfg, out_ch = args.cfg, width * self.expansion
        inner = int(width * cfg.width_per_group / 64) * cfg.groups
        k, bias = cfg.kernel_size, not cfg.norm
        self.conv1 = conv(in_ch, inner, 1, bias=bias)
        self.bn1 = make_norm(in_ch if cfg.preact else inner, cfg.norm)
        self.conv2 = conv(
            inner, inner, k, stride=args.stride, dilation=args.first_dilation, groups=cfg.groups, bias=bias
        )
        self.bn2 = make_norm(inner, cfg.norm)
        self.conv3 = conv(inner, out_ch, 1, bias=bias)
        self.bn3 = make_norm(inner if cfg.preact else out_ch, cfg.norm)
        self._common(in_ch, out_ch, args)

    def residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.preact:
            pre = self.act(self.bn1(x))
            out = self.act(self.bn2(self.conv1(pre)))
            out = self.drop(self.act(self.bn3(self.conv2(out))))
            return self.conv3(out), pre
        out = self.act(self.bn1(self.conv1(self.input_act(x))))  # relu_preact: the branch's input alone
        out = self.drop(self.act(self.bn2(self.conv2(out))))
        return self.end_branch(self.conv3(out), self.bn3), x

    def last_layer(self) -> nn.Module:
        return self.conv3 if self.preact or not self.branch_ends_in(self.bn3) else self.bn3

    def output_norm(self) -> nn.Module:
        return self.bn3


# Extension points: highway.py adds the "highway" block, crossblock.py the "cross_block" stage.
BLOCK_TYPES: dict[str, type[ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
STAGE_TYPES: dict[str, type[nn.Module]] = {"sequential": nn.Sequential}


class ResNet(ClassifierNet):
    """A residual network (or its plain twin) built from a ResNetConfig."""

    def __init__(self, cfg: ResNetConfig | None = None, features_only: bool = False, **overrides: Any) -> None:
        super().__init__()
        cfg = replace(cfg or ResNetConfig(), **overrides)
        cfg.validate()
        self.cfg, self.features_only = cfg, features_only
        block_cls = BLOCK_TYPES[cfg.block]

        # Stem: (N, in_chans, H, W) -> (N, stem_width, H/4, W/4) on ImageNet, (N, stem_width, H, W) on CIFAR.
        sw = cfg.stem_width
        if cfg.stem == "deep":  # three 3x3 convs instead of one 7x7 (Bag of Tricks, ResNet-C)
            mid = sw // 2
            self.conv1 = nn.Sequential(
                conv(cfg.in_chans, mid, 3, stride=2),
                make_norm(mid, cfg.norm),
                make_act(cfg.act),
                conv(mid, mid, 3),
                make_norm(mid, cfg.norm),
                make_act(cfg.act),
                conv(mid, sw, 3),
            )  # keys conv1.0/1/3/4/6 as in timm's resnet*d
        elif cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg.in_chans, sw, 7, stride=2, padding=3, bias=not cfg.norm)
        else:
            self.conv1 = conv(cfg.in_chans, sw, 3, bias=not cfg.norm)
        # A pre-activation CIFAR net has no norm in its stem: the first block normalises its input.
        cifar_preact = cfg.preact and cfg.stem == "cifar"
        self.bn1 = nn.Identity() if cifar_preact else make_norm(sw, cfg.norm)
        self.act1 = nn.Identity() if cifar_preact else make_act(cfg.act, inplace=cfg.norm)
        self.maxpool = nn.Identity() if cfg.stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)

        # Stages: the first keeps the resolution, each later one halves it in its first block, or, where
        # replace_stride_with_dilation says so, keeps it and multiplies the dilation by 2 instead.
        total_blocks, block_idx, dilation = sum(cfg.depths), 0, 1
        dilate = (False, *(cfg.replace_stride_with_dilation or (False,) * (len(cfg.depths) - 1)))
        in_ch, reduction = sw, 1 if cfg.stem == "cifar" else 4
        self.feature_info: list[dict[str, Any]] = []
        self.stage_names: list[str] = []
        for i, (depth, base) in enumerate(zip(cfg.depths, cfg.widths)):
            width = int(round(base * cfg.width_mult))
            stride, first_dilation = (1 if i == 0 else 2), dilation
            if dilate[i]:
                dilation, stride = dilation * stride, 1
            reduction *= stride
            blocks = []
            for j in range(depth):
                # Stochastic depth rate rises linearly with block index (Huang et al. 2016).
                rate = cfg.drop_path_rate * block_idx / max(total_blocks - 1, 1)
                args = BlockArgs(cfg, stride if j == 0 else 1, rate, first_dilation if j == 0 else dilation, dilation)
                blocks.append(block_cls(in_ch, width, args))
                in_ch, block_idx = width * block_cls.expansion, block_idx + 1
            name = f"layer{i + 1}"
            stage_cls = STAGE_TYPES["cross_block" if cfg.cross_block else "sequential"]
            self.add_module(name, stage_cls(*blocks))
            self.stage_names.append(name)
            self.feature_info.append({"num_chs": in_ch, "reduction": reduction, "module": name})

        # v2 ends with the BN-ReLU that every block leaves out (He et al. 2016, appendix).
        self.norm = make_norm(in_ch, cfg.norm) if cfg.preact else nn.Identity()
        self.act = make_act(cfg.act, inplace=cfg.norm) if cfg.preact else nn.Identity()
        self.num_features = in_ch
        self.init_head(cfg.num_classes, cfg.drop_rate)
        self.init_weights()

    def init_weights(self) -> None:
        """He (fan-out) init for convs as in torchvision; BN to identity; optional zero-init of branch ends."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_last:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(m.last_layer().weight)
        for m in self.modules():
            if isinstance(m, ResidualBlock) and m.gate is not None:
                nn.init.constant_(m.gate.bias, m.gate_bias)

    def blocks(self) -> list[ResidualBlock]:
        return [b for name in self.stage_names for b in getattr(self, name)]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output; the last one after v2's final BN-ReLU."""
        outs, x = [], self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        outs[-1] = self.act(self.norm(outs[-1]))
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, H/r, W/r), the last stage before pooling."""
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.act(self.norm(x))

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        self.cfg = replace(self.cfg, num_classes=num_classes)


# ---------------------------------------------------------------------------------------------------
# Named variants. Each is a dict of ResNetConfig fields plus its published facts.

# A source reads "short citation: detail"; `resnetlab models` shows the part before the colon.
HE2015 = "He et al. 2015: Deep Residual Learning for Image Recognition, table 6, CIFAR-10 test error"
HE2015_IN = "He et al. 2015: Deep Residual Learning for Image Recognition, table 2, ImageNet val top-1 error, 10-crop"
HE2016 = "He et al. 2016: Identity Mappings in Deep Residual Networks, CIFAR-10 test error"
WRN = "Zagoruyko & Komodakis 2016: Wide Residual Networks, CIFAR-10 test error, mean/std preprocessing"

CIFAR_ARCH = dict(stem="cifar", stem_width=16, widths=(16, 32, 64))


def build_resnet(**arch: Any) -> ResNet:
    """Build a ResNet from config fields (plus `features_only`)."""
    features_only = arch.pop("features_only", False)
    return ResNet(ResNetConfig.from_dict(arch), features_only=features_only)


def _register(name: str, arch: dict[str, Any], meta: dict[str, Any], **facts: Any) -> None:
    register_variant(name, build_resnet, {"num_classes": meta["num_classes"], **arch}, family="resnet", **meta, **facts)


# ImageNet family (torchvision's builders and key names).
_IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_IMAGENET_FACTS = {
    18: (11_689_512, "69.76% top-1 accuracy"),
    34: (21_797_672, "73.31% top-1 accuracy"),
    50: (25_557_032, "76.13% top-1 accuracy"),
    101: (44_549_160, "77.37% top-1 accuracy"),
    152: (60_192_808, "78.31% top-1 accuracy"),
}
for _depth, (_block, _depths) in _IMAGENET_DEPTHS.items():
    _params, _result = _IMAGENET_FACTS[_depth]
    _register(
        f"resnet{_depth}",
        dict(block=_block, depths=_depths),
        IMAGENET,
        params=_params,
        result=_result,
        source=TV,
        description=f"ResNet-{_depth} (v1.5, option B)",
    )

_register(
    "resnext50_32x4d",
    dict(block="bottleneck", depths=(3, 4, 6, 3), groups=32, width_per_group=4),
    IMAGENET,
    params=25_028_904,
    result="77.62% top-1 accuracy",
    source=TV,
    description="ResNeXt-50 32x4d (Xie et al. 2017)",
)
_register(
    "resnext101_32x8d",
    dict(block="bottleneck", depths=(3, 4, 23, 3), groups=32, width_per_group=8),
    IMAGENET,
    params=88_791_336,
    result="79.31% top-1 accuracy",
    source=TV,
    description="ResNeXt-101 32x8d (Xie et al. 2017)",
)
_register(
    "wide_resnet50_2",
    dict(block="bottleneck", depths=(3, 4, 6, 3), width_per_group=128),
    IMAGENET,
    params=68_883_240,
    result="78.47% top-1 accuracy",
    source=TV,
    description="Wide ResNet-50-2: bottleneck 2x wider",
)
_register(
    "wide_resnet101_2",
    dict(block="bottleneck", depths=(3, 4, 23, 3), width_per_group=128),
    IMAGENET,
    params=126_886_696,
    result="78.85% top-1 accuracy",
    source=TV,
    description="Wide ResNet-101-2",
)
# He et al. 2015, table 2 / figure 4: the plain nets against ResNets with option A shortcuts (identity,
# zero-padded where the width grows), so that both have exactly the same parameters.
for _depth, _plain_err, _res_err in ((18, "27.94%", "27.88%"), (34, "28.54%", "25.03%")):
    _register(
        f"plain{_depth}",
        dict(block="basic", depths=_IMAGENET_DEPTHS[_depth][1], plain=True),
        IMAGENET,
        result=f"{_plain_err} top-1 error",
        source=HE2015_IN,
        description=f"Plain-{_depth}: ResNet-{_depth} without shortcuts",
    )
    _register(
        f"resnet{_depth}_a",
        dict(block="basic", depths=_IMAGENET_DEPTHS[_depth][1], shortcut="A"),
        IMAGENET,
        result=f"{_res_err} top-1 error",
        source=HE2015_IN,
        description=f"ResNet-{_depth}, option A shortcuts (parameter-free), as compared with Plain-{_depth}",
    )

# CIFAR family (He et al. 2015, section 4.2): 6n+2 layers, 3 stages of n basic blocks, 16/32/64 channels.
_CIFAR_ERRORS = {20: "8.75%", 32: "7.51%", 44: "7.17%", 56: "6.97%", 110: "6.43%", 1202: "7.93%"}
_CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
for _depth, _err in _CIFAR_ERRORS.items():
    _n = (_depth - 2) // 6
    _arch = dict(CIFAR_ARCH, depths=(_n,) * 3)
    _register(
        f"resnet{_depth}",
        dict(_arch, shortcut="A"),
        CIFAR10,
        params=_CIFAR_PARAMS[_depth],
        result=f"{_err} test error",
        source=HE2015,
        description=f"CIFAR ResNet-{_depth}, option A shortcuts",
    )
    _register(
        f"resnet{_depth}_b",
        dict(_arch, shortcut="B"),
        CIFAR10,
        params=272_474 if _depth == 20 else None,
        source=HE2015,
        description=f"CIFAR ResNet-{_depth}, option B (projection where the shape changes)",
    )
    if _depth <= 110:
        _register(
            f"plain{_depth}",
            dict(_arch, plain=True),
            CIFAR10,
            source=HE2015,
            description=f"CIFAR Plain-{_depth}: ResNet-{_depth} without shortcuts (figure 6)",
        )

# Shallower members of the same 6n+2 family (n = 1, 2): quick runs and demos; no published result.
for _depth in (8, 14):
    _n = (_depth - 2) // 6
    _register(
        f"resnet{_depth}",
        dict(CIFAR_ARCH, depths=(_n,) * 3, shortcut="A"),
        CIFAR10,
        source=HE2015.split(",")[0],
        description=f"CIFAR ResNet-{_depth} (6n+2 with n={_n}), option A",
    )
    _register(
        f"plain{_depth}",
        dict(CIFAR_ARCH, depths=(_n,) * 3, plain=True),
        CIFAR10,
        source=HE2015.split(",")[0],
        description=f"CIFAR Plain-{_depth}: ResNet-{_depth} without shortcuts",
    )

# v2 twins of the option-A CIFAR ResNets: the same convolutions, shortcuts and number of parameters, each block
# reordered to BN-ReLU-conv (He et al. 2016's full pre-activation); v1 against v2 with nothing else different.
# No published result at these depths (the paper's CIFAR table starts at 110).
for _depth in (20, 32, 44, 56):
    _register(
        f"preact_resnet{_depth}",
        dict(CIFAR_ARCH, depths=((_depth - 2) // 6,) * 3, shortcut="A", preact=True),
        CIFAR10,
        source=HE2016.split(",")[0],
        description=f"Pre-activation twin of CIFAR ResNet-{_depth} (option A): v2 blocks, as many parameters",
    )

# Pre-activation (He et al. 2016): v2 blocks; bottlenecks for 164 and 1001 (9n+2 layers).
_register(
    "preact_resnet110",
    dict(CIFAR_ARCH, depths=(18,) * 3, preact=True),
    CIFAR10,
    result="6.37% test error",
    source=HE2016 + " (table 3)",
    description="Pre-activation ResNet-110 (basic blocks)",
)
_register(
    "preact_resnet164",
    dict(CIFAR_ARCH, block="bottleneck", depths=(18,) * 3, preact=True),
    CIFAR10,
    params=1_703_258,
    result="5.46% test error",
    source=HE2016 + " (table 4)",
    description="Pre-activation ResNet-164 (bottleneck)",
)
_register(
    "preact_resnet1001",
    dict(CIFAR_ARCH, block="bottleneck", depths=(111,) * 3, preact=True),
    CIFAR10,
    params=10_327_706,
    result="4.92% test error",
    source=HE2016 + " (table 4)",
    description="Pre-activation ResNet-1001 (bottleneck)",
)

# Wide ResNets (WRN-d-k): pre-activation basic blocks, (d-4)/6 per stage, widths 16k/32k/64k.
for _d, _k, _params, _result in ((16, 8, None, None), (28, 10, 36_479_194, "4.00% test error"), (40, 4, None, None)):
    _register(
        f"wrn{_d}_{_k}",
        dict(CIFAR_ARCH, depths=((_d - 4) // 6,) * 3, width_mult=_k, preact=True),
        CIFAR10,
        params=_params,
        result=_result,
        source=WRN,
        description=f"Wide ResNet-{_d}-{_k}",
    )

# Squeeze-and-Excitation (Hu et al. 2018): an SE module (reduction 16) after the last BN of every block.
HU2018 = "Hu et al. 2018: Squeeze-and-Excitation Networks, table 2, ImageNet val top-1 error, single crop"
for _depth, _err in ((18, None), (34, None), (50, "23.29%"), (101, "22.38%")):
    _block, _depths = _IMAGENET_DEPTHS[_depth]
    _register(
        f"seresnet{_depth}",
        dict(block=_block, depths=_depths, se_reduction=16),
        IMAGENET,
        params=28_088_024 if _depth == 50 else None,
        result=f"{_err} top-1 error" if _err else None,
        source=HU2018,
        description=f"SE-ResNet-{_depth} (timm's key names)",
    )
for _depth in (20, 56, 110):
    _register(
        f"seresnet{_depth}",
        dict(CIFAR_ARCH, depths=((_depth - 2) // 6,) * 3, shortcut="A", se_reduction=16, se_divisor=1),
        CIFAR10,
        source=HU2018.split(",")[0],
        description=f"CIFAR SE-ResNet-{_depth}: hidden width C // 16, option A",
    )

# ResNet-D (He et al. 2019, Bag of Tricks): deep 3x3 stem, average-pool then 1x1 conv in the shortcut.
_register(
    "resnet50d",
    dict(block="bottleneck", depths=(3, 4, 6, 3), stem="deep", avg_down=True),
    IMAGENET,
    params=25_576_264,
    result="77.16% top-1 accuracy",
    source="He et al. 2019: Bag of Tricks for Image Classification with CNNs, table 5 (ResNet-50-D)",
    description="ResNet-50-D (timm's resnet50d key names)",
)
