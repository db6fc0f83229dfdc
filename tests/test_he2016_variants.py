"""He et al. 2016's shortcut variants (figure 2) and activation layouts (figure 4): each block computes what the
paper draws, the parameters are the base network's (plus the gates' 1x1 convs), and nonsense is refused."""

import pytest
import torch
import torch.nn.functional as F

from resnetlab.errors import ConfigError
from resnetlab.models import create_model
from resnetlab.models.resnet import BasicBlock, BlockArgs, Bottleneck, ResNetConfig
from resnetlab.models.summary import count_params
from test_torchvision_parity import randomise_batchnorm_statistics

X = torch.randn(4, 16, 8, 8)  # the block input: signed, as the output of a v2 block or a stem before its ReLU


def block(cls=BasicBlock, in_ch: int = 16, width: int = 16, **fields) -> BasicBlock:
    """One block of a CIFAR-width v1 network with these config fields, its BatchNorms given random statistics,
    in eval mode."""
    torch.manual_seed(0)
    b = cls(in_ch, width, BlockArgs(ResNetConfig(**fields)))
    randomise_batchnorm_statistics(b)
    return b.eval()


def branch(b: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """conv - BN - ReLU - conv, the part of a basic branch every v1 layout shares."""
    return b.conv2(F.relu(b.bn1(b.conv1(x))))


@torch.no_grad()
def test_original_block_is_relu_of_the_sum():
    b = block()
    torch.testing.assert_close(b(X), F.relu(X + b.bn2(branch(b, X))))


@torch.no_grad()
def test_bn_after_addition_normalises_the_sum_then_activates():
    b = block(layout="bn_after_add")
    torch.testing.assert_close(b(X), F.relu(b.bn2(X + branch(b, X))))
    assert b.last_layer() is b.conv2  # zero_init_last zeroes the branch's end, which is now a conv


@torch.no_grad()
def test_relu_before_addition_ends_the_branch_in_relu_and_adds_nothing_after():
    b = block(layout="relu_before_add")
    out = b(X)
    torch.testing.assert_close(out, X + F.relu(b.bn2(branch(b, X))))
    assert (out - X).min() >= 0  # the residual can only add: the monotone signal of the paper's section 4.1
    assert out.min() < 0  # and nothing after the sum clips it


@torch.no_grad()
def test_relu_only_preactivation_activates_the_branch_input_only():
    b = block(layout="relu_preact")
    out = b(X)
    torch.testing.assert_close(out, X + b.bn2(branch(b, F.relu(X))))
    assert out.min() < 0


@torch.no_grad()
def test_relu_only_preactivation_projects_the_raw_input():
    b = block(in_ch=16, width=32, shortcut="B", layout="relu_preact")
    torch.testing.assert_close(b(X), b.downsample(X) + b.bn2(branch(b, F.relu(X))))


@torch.no_grad()
def test_bottleneck_layouts_move_the_last_batchnorm_or_relu():
    def bottleneck_branch(b, x):
        return b.conv3(F.relu(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x)))))))

    x = torch.randn(2, 64, 8, 8)
    b = block(Bottleneck, 64, 16, block="bottleneck", layout="bn_after_add")
    torch.testing.assert_close(b(x), F.relu(b.bn3(x + bottleneck_branch(b, x))))
    b = block(Bottleneck, 64, 16, block="bottleneck", layout="relu_before_add")
    torch.testing.assert_close(b(x), x + F.relu(b.bn3(bottleneck_branch(b, x))))
    b = block(Bottleneck, 64, 16, block="bottleneck", layout="relu_preact")
    torch.testing.assert_close(b(x), x + b.bn3(bottleneck_branch(b, F.relu(x))))


@torch.no_grad()
def test_constant_scaling_of_the_shortcut_alone_and_of_both_paths():
    b = block(shortcut_scale=0.5)
    torch.testing.assert_close(b(X), F.relu(0.5 * X + b.bn2(branch(b, X))))
    b = block(shortcut_scale=0.5, residual_scale=0.5)
    torch.testing.assert_close(b(X), F.relu(0.5 * X + 0.5 * b.bn2(branch(b, X))))


@torch.no_grad()
def test_exclusive_and_shortcut_only_gating():
    b = block(gate=True, gate_bias=-6.0)
    g = torch.sigmoid(b.gate(X))
    torch.testing.assert_close(b(X), F.relu(g * b.bn2(branch(b, X)) + (1 - g) * X))
    b = block(gate=True, gate_mode="shortcut", gate_bias=0.0)
    g = torch.sigmoid(b.gate(X))
    torch.testing.assert_close(b(X), F.relu(b.bn2(branch(b, X)) + (1 - g) * X))


def test_gate_bias_starts_where_the_paper_sets_it():
    net = create_model("resnet20_b", gate=True, gate_mode="shortcut", gate_bias=-6.0)
    biases = torch.cat([b.gate.bias for b in net.blocks()])
    assert torch.all(biases == -6.0)


@torch.no_grad()
def test_dropout_shortcut_drops_at_training_time_only():
    b = block(shortcut_dropout=0.5)
    torch.testing.assert_close(b(X), F.relu(X + b.bn2(branch(b, X))))  # eval: the identity shortcut
    b.train()
    kept = b.shortcut(X, X)
    dropped = kept == 0
    assert torch.equal(kept[~dropped], 2 * X[~dropped])  # kept elements scaled by 1 / (1 - p), as nn.Dropout does
    assert 0.4 < dropped.float().mean() < 0.6
    torch.manual_seed(3)
    out = b(X)  # the branch draws nothing at random, so the shortcut's mask is the seed's first draw
    torch.manual_seed(3)
    mask = F.dropout(torch.ones_like(X), 0.5, training=True)
    torch.testing.assert_close(out, F.relu(X * mask + b.bn2(branch(b, X))))


# ResNet-110 with projections where the shape changes (resnet110_b): 1,730,714 parameters. Every variant but the
# gated ones and the 1x1 conv shortcut has exactly these; a gate is a 1x1 conv with bias from the block input to
# its output: 18 x (16*16 + 16) + (16*32 + 32) + 17 x (32*32 + 32) + (32*64 + 64) + 17 x (64*64 + 64) = 96,224.
RESNET110_B = 1_730_714
GATES_110 = 18 * 272 + 544 + 17 * 1056 + 2112 + 17 * 4160


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({}, RESNET110_B),
        ({"shortcut_scale": 0.5}, RESNET110_B),
        ({"shortcut_scale": 0.5, "residual_scale": 0.5}, RESNET110_B),
        ({"shortcut_dropout": 0.5}, RESNET110_B),
        ({"layout": "bn_after_add"}, RESNET110_B),
        ({"layout": "relu_before_add"}, RESNET110_B),
        ({"layout": "relu_preact"}, RESNET110_B),
        ({"gate": True, "gate_bias": -6.0}, RESNET110_B + GATES_110),
        ({"gate": True, "gate_mode": "shortcut", "gate_bias": 0.0}, RESNET110_B + GATES_110),
        # option C: a 1x1 conv + BN on every shortcut instead of the two projections of option B
        ({"shortcut": "C"}, RESNET110_B + 18 * (256 + 32) + 17 * (1024 + 64) + 17 * (4096 + 128)),
        # preact_resnet110, as published: v2 drops the stem's BN and the projections' BNs, adds one at the end
        ({"preact": True}, 1_730_522),
    ],
)
def test_parameter_counts_of_resnet110_variants(fields, expected):
    assert count_params(create_model("resnet110_b", **fields)) == expected


def test_bottleneck_layouts_keep_the_v1_resnet164s_parameters():
    v1 = create_model("preact_resnet164", preact=False)
    # From the published preact_resnet164 (1,703,258): v1 has a BN in the stem (+32) and none at the end (-512),
    # its first block of each stage normalises 64/128/256 outputs where v2 normalises 16/64/128 inputs (+480),
    # and its three projections end in a BN (+2 x (64 + 128 + 256) = +896).
    assert count_params(v1) == 1_703_258 + 32 - 512 + 480 + 896
    for layout in ("bn_after_add", "relu_before_add", "relu_preact"):
        assert count_params(create_model("preact_resnet164", preact=False, layout=layout)) == count_params(v1)


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"layout": "sideways"}, "layout='sideways' is unknown"),
        ({"layout": "relu_preact", "preact": True}, "preact=True is full pre-activation"),
        ({"layout": "bn_after_add", "norm": False}, "needs norm=True"),
        ({"gate_mode": "shortcut"}, "add gate=True"),
        ({"gate": True, "gate_mode": "both"}, "gate_mode='both' is unknown"),
        ({"shortcut_scale": 0.0}, "must be > 0"),
        ({"shortcut_dropout": 1.0}, r"must be in \[0, 1\)"),
        ({"plain": True, "shortcut_dropout": 0.5}, "a plain network has none"),
    ],
)
def test_variants_that_mean_nothing_are_refused_by_name(fields, words):
    with pytest.raises(ConfigError, match=words):
        ResNetConfig(**fields).validate()


@torch.no_grad()
def test_a_learned_residual_weight_at_zero_makes_every_block_its_shortcut():
    """ReZero's start (residual_scale=0, learned): a v2 block outputs its shortcut path, a v1 block act(shortcut)."""
    v2 = block(preact=True, residual_scale=0.0, learn_residual_scale=True)
    torch.testing.assert_close(v2(X), X)
    v1 = block(residual_scale=0.0, learn_residual_scale=True)
    torch.testing.assert_close(v1(X), F.relu(X))
    projecting = block(in_ch=16, width=32, preact=True, shortcut="B", residual_scale=0.0, learn_residual_scale=True)
    torch.testing.assert_close(projecting(X), projecting.downsample(F.relu(projecting.bn1(X))))
    at_one = block(learn_residual_scale=True)  # the plain start: the ordinary block, with one more parameter
    torch.testing.assert_close(at_one(X), block()(X))


def test_a_learned_residual_weight_is_one_trained_scalar_per_block():
    net = create_model("resnet20", residual_scale=0.0, learn_residual_scale=True)
    weights = [b.residual_weight for b in net.blocks()]
    assert len(weights) == 9 and all(w.requires_grad and w.shape == () for w in weights)
    assert count_params(net) == count_params(create_model("resnet20")) + 9
    torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(w.grad is not None and w.grad != 0 for w in weights)  # the first step moves them off zero
    with pytest.raises(ConfigError, match="a plain network has none"):
        ResNetConfig(plain=True, learn_residual_scale=True).validate()
