"""The ResNet family: published counts, every name runs, structure matches the papers."""

import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.errors import ConfigError, UserError
from resnetlab.models import ResNet, ResNetConfig, create_model, list_models, model_info
from resnetlab.models.layers import ZeroPadShortcut
from resnetlab.models.registry import register_model
from resnetlab.models.summary import count_macs, count_params

# Published parameter counts (DESIGN.md; torchvision docs; He et al. 2015/2016; Zagoruyko & Komodakis 2016).
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
    "resnet20_b": 272_474,
    "preact_resnet164": 1_703_258,
    "preact_resnet1001": 10_327_706,
    "wrn28_10": 36_479_194,
}


@pytest.mark.parametrize("name,expected", sorted(PUBLISHED_PARAMS.items()))
def test_published_parameter_counts(name, expected):
    model = create_model(name)
    assert count_params(model) == expected
    assert model_info(name).params == expected  # the registry quotes the same figure


def test_registry_metadata_quotes_the_papers():
    assert model_info("resnet20").result == "8.75% test error"
    assert model_info("resnet110").result == "6.43% test error"
    assert model_info("resnet1202").result == "7.93% test error"
    assert model_info("preact_resnet164").result == "5.46% test error"
    assert model_info("preact_resnet1001").result == "4.92% test error"
    assert model_info("wrn28_10").result == "4.00% test error"
    assert model_info("resnet20").num_classes == 10 and model_info("resnet50").num_classes == 1000


def test_default_classes_follow_the_dataset():
    assert create_model("resnet20").fc.out_features == 10
    assert create_model("resnet18").fc.out_features == 1000
    assert create_model("resnet20", num_classes=100).fc.out_features == 100


def small_input(name: str, batch: int = 2) -> torch.Tensor:
    info = model_info(name)
    side = 32 if info.input_size[1] <= 32 else 64
    return torch.randn(batch, info.input_size[0], side, side)


def heavy(name: str) -> bool:
    """The ImageNet VGGs (about 135M parameters, most in the MLP) but one: their gradients alone are half a GB."""
    return name.startswith("vgg") and not name.endswith("_cifar") and name != "vgg11_bn"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if heavy(n) else n for n in list_models()])
def test_every_model_runs_forward_and_backward(name):
    model = create_model(name, num_classes=7)
    x = small_input(name)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_option_a_has_no_shortcut_parameters_and_zero_pads():
    model = create_model("resnet20")
    assert not [n for n, _ in model.named_parameters() if "downsample" in n]
    shortcuts = [b.downsample for b in model.blocks() if b.downsample is not None]
    assert len(shortcuts) == 2 and all(isinstance(s, ZeroPadShortcut) for s in shortcuts)
    x = torch.randn(2, 16, 8, 8)
    y = shortcuts[0](x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()


def test_option_b_projects_only_where_shape_changes_and_c_everywhere():
    b = create_model("resnet20_b")
    c = create_model("resnet20", shortcut="C")
    assert sum(blk.downsample is not None for blk in b.blocks()) == 2
    assert all(isinstance(blk.downsample, nn.Sequential) for blk in c.blocks())


def _zero_branch(block):
    for name, p in block.named_parameters():
        if "conv" in name and p.dim() == 4:
            nn.init.zeros_(p)


@pytest.mark.parametrize("name", ["plain20", "plain18"])
def test_plain_twins_have_no_skip(name):
    model = create_model(name).eval()
    assert all(b.downsample is None and b.plain for b in model.blocks())
    residual_twin = create_model(name.replace("plain", "resnet")).eval()
    assert count_params(model) < count_params(residual_twin) or name == "plain20"
    # With its convolutions zeroed, a plain block outputs relu(BN(0)) = 0; a residual one passes relu(x) on.
    block, twin_block = model.layer1[1], residual_twin.layer1[1]
    _zero_branch(block)
    _zero_branch(twin_block)
    x = torch.rand(2, block.conv1.in_channels, 8, 8)
    assert not block(x).any()
    assert torch.allclose(twin_block(x), x)


def _call_order(block, x):
    order = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp, n=n: order.append(n))
        for n, m in block.named_children()
        if not isinstance(m, nn.Identity)
    ]
    block(x)
    for h in hooks:
        h.remove()
    return order


def test_preactivation_order():
    v2 = create_model("preact_resnet110").layer1[0]
    v1 = create_model("resnet110").layer1[0]
    x = torch.randn(2, 16, 8, 8)
    assert _call_order(v2, x) == ["bn1", "act", "conv1", "bn2", "act", "conv2"]
    assert _call_order(v1, x) == ["conv1", "bn1", "act", "conv2", "bn2", "act"]
    bottleneck = create_model("preact_resnet164").layer2[0]
    order = _call_order(bottleneck, torch.randn(2, 64, 8, 8))
    assert order[:3] == ["bn1", "act", "conv1"] and order[-2:] == ["conv3", "downsample"]
    # v2 networks end with the BN-ReLU their blocks leave out; v1 networks do not need one.
    assert isinstance(create_model("preact_resnet110").norm, nn.BatchNorm2d)
    assert isinstance(create_model("resnet110").norm, nn.Identity)


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_v2_twins_of_the_cifar_resnets_differ_only_in_the_order_of_each_block(depth):
    v1, v2 = create_model(f"resnet{depth}"), create_model(f"preact_resnet{depth}")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(v1) == count(v2)  # v2 moves BatchNorms (a block's first normalises its input), no more, no fewer
    assert type(v1.layer2[0].downsample) is type(v2.layer2[0].downsample)  # the same option-A shortcut
    x = torch.randn(2, 16, 8, 8)
    assert _call_order(v2.layer1[0], x) == ["bn1", "act", "conv1", "bn2", "act", "conv2"]


def test_zero_init_last_makes_every_block_start_as_identity():
    model = create_model("preact_resnet110", zero_init_last=True).eval()
    block = model.layer1[1]
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)
    v1 = create_model("resnet56", zero_init_last=True).eval().layer2[1]
    x = torch.rand(2, 32, 8, 8)
    assert torch.equal(v1(x), x)  # relu(x + 0) = x for x >= 0


def test_residual_scale_scales_the_branch():
    base = create_model("preact_resnet110").eval()
    scaled = create_model("preact_resnet110", residual_scale=0.0).eval()
    scaled.load_state_dict(base.state_dict())
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(scaled.layer1[1](x), x)
    assert not torch.equal(base.layer1[1](x), x)


def test_block_options_build_what_they_say():
    model = create_model("resnet20", kernel_size=5, act="silu", dropout=0.3, norm=False)
    block = model.layer1[0]
    assert block.conv1.kernel_size == (5, 5) and block.conv1.bias is not None
    assert isinstance(block.act, nn.SiLU) and isinstance(block.drop, nn.Dropout)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_resnext_and_wide_widths():
    block = create_model("resnext50_32x4d").layer1[0]
    assert block.conv2.groups == 32 and block.conv2.out_channels == 128
    assert create_model("wide_resnet50_2").layer1[0].conv2.out_channels == 128
    wrn = create_model("wrn28_10")
    assert [getattr(wrn, f"layer{i}")[0].conv2.out_channels for i in (1, 2, 3)] == [160, 320, 640]


def test_uniform_interface():
    model = create_model("resnet50", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 2, 2) and model.num_features == 2048
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (2, 2048)
    assert torch.allclose(model.forward_head(feats), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, 2048)
    assert [f["num_chs"] for f in model.feature_info] == [256, 512, 1024, 2048]
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]


@pytest.mark.parametrize("name", ["resnet18", "resnet56", "preact_resnet110"])
def test_features_only_returns_each_stage(name):
    model = create_model(name, features_only=True).eval()
    x = small_input(name)
    outs = model(x)
    assert len(outs) == len(model.feature_info)
    for out, info in zip(outs, model.feature_info):
        assert out.shape[1] == info["num_chs"]
        assert out.shape[-1] == x.shape[-1] // info["reduction"]


def test_flops_match_published_multiply_adds():
    # torchvision docs: resnet18 1.81 GFLOPS, resnet50 4.09 GFLOPS (multiply-adds at 224x224).
    assert round(count_macs(create_model("resnet18"), (3, 224, 224)) / 1e9, 2) == 1.81
    assert round(count_macs(create_model("resnet50"), (3, 224, 224)) / 1e9, 2) == 4.09
    # He et al. 2015 (section 3.3) give ResNet-34 "3.6 billion FLOPs (multiply-adds)".
    assert 3.6e9 <= count_macs(create_model("resnet34"), (3, 224, 224)) < 3.7e9


def test_unknown_model_names_suggest_the_closest():
    with pytest.raises(UserError, match="resnet20"):
        create_model("resnt20")
    with pytest.raises(UserError, match="resnetlab models"):
        model_info("alexnet")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18", family="resnet", dataset="imagenet", num_classes=1000, input_size=(3, 224, 224))(
            lambda **kw: ResNet()
        )


def test_list_models_patterns():
    assert "resnet20" in list_models("resnet*") and "plain20" not in list_models("resnet*")
    assert list_models("preact") == [f"preact_resnet{d}" for d in (20, 32, 44, 56, 110, 164, 1001)]
    assert list_models("resnet1*")[:4] == ["resnet14", "resnet18", "resnet18_a", "resnet101"]  # natural order
    assert resnetlab.list_models is list_models


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(block="triple"), "block='triple'"),
        (dict(shortcut="D"), "shortcut='D'"),
        (dict(stem="huge"), "stem='huge'"),
        (dict(depths=(1, 1), widths=(8,)), "depths"),
        (dict(groups=32), "bottleneck"),
        (dict(plain=True, zero_init_last=True), "plain"),
        (dict(dropout=1.5), "dropout=1.5"),
        (dict(kernel_size=4), "kernel_size=4"),
        (dict(act="swishy"), "swishy"),
    ],
)
def test_bad_configs_are_clear_errors(bad, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        ResNet(ResNetConfig(), **bad)


def test_unknown_architecture_argument_names_the_known_ones():
    with pytest.raises(ConfigError, match="depthz"):
        create_model("resnet20", depthz=(1, 1, 1))
