"""Relatives and variants: SE, ResNet-D, DenseNet, Highway, gated shortcuts, cross-block, stochastic depth."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from resnetlab.models import create_model
from resnetlab.models.highway import HighwayLayer
from resnetlab.models.layers import DropPath, drop_path
from resnetlab.models.summary import count_params
from test_torchvision_parity import randomise_batchnorm_statistics

# Published counts: timm (seresnet50, resnet50d), torchvision (densenet121), Huang et al. 2017 (DenseNet-BC).
PUBLISHED = {
    "seresnet50": 28_088_024,
    "resnet50d": 25_576_264,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet_bc_100": 769_162,
}


@pytest.mark.parametrize("name,expected", sorted(PUBLISHED.items()))
def test_published_counts(name, expected):
    assert count_params(create_model(name)) == expected


def _assert_same_outputs(ours, reference, x):
    randomise_batchnorm_statistics(reference)
    reference.eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["seresnet50", "resnet50d", "seresnet18"])
def test_timm_state_dicts_load_strictly_and_match(name):
    _assert_same_outputs(create_model(name), timm.create_model(name, pretrained=False), torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", ["densenet121", "densenet169"])
def test_torchvision_densenet_parity(name):
    reference = getattr(torchvision.models, name)(weights=None)
    _assert_same_outputs(create_model(name), reference, torch.randn(2, 3, 64, 64))


def test_densenet_bc_structure():
    model = create_model("densenet_bc_100")
    blocks = [model.features.denseblock1, model.features.denseblock2, model.features.denseblock3]
    assert [len(b) for b in blocks] == [16, 16, 16]
    assert model.features.conv0.out_channels == 24  # 2k
    assert model.features.transition1.conv.out_channels == (24 + 16 * 12) // 2  # compression 0.5
    assert model.num_features == 342


def test_densenet_memory_efficient_gives_the_same_gradients():
    x = torch.randn(4, 3, 32, 32)
    plain = create_model("densenet_bc_100")
    efficient = create_model("densenet_bc_100", memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, efficient):
        model.train()
        model(x).logsumexp(1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6)
    # Recomputation in the backward pass must not update BatchNorm's running statistics a second time.
    stats = [{n: b.clone() for n, b in model.named_buffers()} for model in (plain, efficient)]
    assert stats[0].keys() == stats[1].keys()
    for name in stats[0]:
        torch.testing.assert_close(stats[0][name], stats[1][name], rtol=1e-5, atol=1e-6, msg=name)
    assert int(stats[1]["features.denseblock1.denselayer1.norm1.num_batches_tracked"]) == 1


def test_crossblock_network_equals_its_resnet_at_initialisation():
    for depth in (20, 56):
        resnet = create_model(f"resnet{depth}")
        cross = create_model(f"crossblock_resnet{depth}")
        missing, unexpected = cross.load_state_dict(resnet.state_dict(), strict=False)
        assert sorted(missing) == ["layer1.mix", "layer2.mix", "layer3.mix"] and not unexpected
        x = torch.randn(4, 3, 32, 32)
        for mode in ("train", "eval"):
            getattr(resnet, mode)()
            getattr(cross, mode)()
            assert torch.equal(cross(x), resnet(x))


def test_crossblock_weights_learn_and_change_the_function():
    cross = create_model("crossblock_resnet20")
    x = torch.randn(4, 3, 32, 32)
    cross(x).square().mean().backward()
    assert cross.layer2.mix.grad.abs().sum() > 0  # every earlier output can gain weight
    before = cross.eval()(x)
    with torch.no_grad():
        cross.layer2.mix[1, 0] = 0.5  # block 3 of stage 2 now also reads the (adapted) stage input
    assert not torch.equal(cross(x), before)


def test_highway_layer_with_closed_gate_passes_its_input_through():
    model = create_model("highway20").eval()
    layer = model.layer2[1]
    assert isinstance(layer, HighwayLayer)
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(-100.0)  # T = 0: carry only
        assert torch.equal(layer(x), x)
        layer.gate.bias.fill_(100.0)  # T = 1: transform only
        assert torch.allclose(layer(x), layer.act(layer.bn1(layer.conv1(x))))


def test_highway_gate_bias_starts_negative_and_is_configurable():
    model = create_model("highway32")
    assert len(model.blocks()) == 30  # 1 + 30 + 1 weight layers
    assert all(torch.all(b.gate.bias == -2.0) for b in model.blocks())
    assert all(torch.all(b.gate.bias == -3.0) for b in create_model("highway20", gate_bias=-3.0).blocks())


def test_gated_shortcut_on_residual_blocks_mixes_branch_and_shortcut():
    model = create_model("preact_resnet110", gate=True).eval()
    block = model.layer1[1]
    x = torch.randn(2, 16, 8, 8)
    branch, pre = block.residual(x)
    g = torch.sigmoid(block.gate(pre))
    torch.testing.assert_close(block(x), g * branch + (1 - g) * x)
    with pytest.raises(ValueError, match="plain"):
        create_model("plain20", gate=True)


def test_se_module_in_every_block():
    model = create_model("seresnet50")
    assert all(b.se is not None for b in model.blocks())
    assert model.layer1[0].se.fc1.out_channels == 16  # 256 / 16
    assert create_model("seresnet20").layer1[0].se.fc1.out_channels == 1  # 16 // 16 on CIFAR


def test_drop_path_is_identity_in_eval_and_keeps_the_expectation_in_training():
    x = torch.ones(200_000, 4)
    assert torch.equal(drop_path(x, 0.3, training=False), x)
    module = DropPath(0.3).eval()
    assert torch.equal(module(x), x)
    y = drop_path(x, 0.3, training=True)
    kept = y[:, 0] != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))  # survivors rescaled by 1 / keep
    assert torch.all((y == 0).all(1) | (y != 0).all(1))  # whole samples dropped, not single values
    assert abs(y.mean().item() - 1.0) < 0.01
    assert abs((~kept).float().mean().item() - 0.3) < 0.01


def test_stochastic_depth_rate_rises_linearly_and_resnet_d_layout():
    model = create_model("resnet56", drop_path_rate=0.5)
    rates = [b.drop_path_rate for b in model.blocks()]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5)
    assert rates == pytest.approx([0.5 * i / 26 for i in range(27)])
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))
    d = create_model("resnet50d")
    assert isinstance(d.layer2[0].downsample[0], nn.AvgPool2d) and len(d.conv1) == 7
    assert isinstance(create_model("resnet18", avg_down=True).layer2[0].downsample[0], nn.AvgPool2d)
