"""resnetlab's ResNets as backbones: dilation, torchvision's FPN, DeepLabV3 and FCN give torchvision's own results
with the same weights, and Faster R-CNN runs on them in eval and train mode."""

import pytest
import timm
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

import resnetlab
from resnetlab.errors import UserError
from resnetlab.models import ResNet, create_model


def randomise_norms(model: nn.Module) -> None:
    # Fresh norms are identities in eval mode; random statistics make the comparisons meaningful.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def test_dilated_resnet50_matches_torchvision():
    dilate = [False, True, True]
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilate).eval()
    randomise_norms(reference)
    ours = create_model("resnet50", replace_stride_with_dilation=dilate).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == 25_557_032  # dilation changes no shape
    assert [f["reduction"] for f in ours.feature_info] == [4, 8, 8, 8]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = nn.Sequential(*list(reference.children())[:-2])(x)  # everything before the pooling
        assert features.shape == (1, 2048, 8, 8)
        torch.testing.assert_close(ours.forward_features(x), features, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dilate, output_stride", [((False, True, True), 8), ((False, False, True), 16)])
def test_dilated_basic_blocks_match_timm(dilate, output_stride):
    # torchvision's BasicBlock refuses dilation; timm's output_stride dilates basic blocks as resnetlab does.
    reference = timm.create_model("resnet18", pretrained=False, output_stride=output_stride).eval()
    randomise_norms(reference)
    ours = create_model("resnet18", replace_stride_with_dilation=dilate).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), reference.forward_features(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [[True, True], (False, True, True, True), "yes", (1, 0, 1), 3])
def test_bad_dilation_is_one_sentence_naming_the_value(bad):
    with pytest.raises(UserError, match=r"replace_stride_with_dilation=.* needs 3 booleans.*\(False, True, True\)"):
        create_model("resnet50", replace_stride_with_dilation=bad)
    with pytest.raises(UserError, match="needs 2 booleans"):  # a CIFAR network has 3 stages
        create_model("resnet20", replace_stride_with_dilation=[False, True, True])
    with pytest.raises(UserError, match="basic or bottleneck"):
        create_model("highway20", replace_stride_with_dilation=(True, True))


@pytest.mark.parametrize(
    "name, trainable_layers, returned_layers", [("resnet50", 3, None), ("resnet18", 5, [2, 3, 4]), ("resnet18", 0, [4])]
)
def test_fpn_backbone_matches_torchvision_resnet_fpn_backbone(name, trainable_layers, returned_layers):
    reference = resnet_fpn_backbone(
        backbone_name=name, weights=None, trainable_layers=trainable_layers, returned_layers=returned_layers
    ).eval()
    randomise_norms(reference)
    ours = resnetlab.backbone(name, trainable_layers=trainable_layers, returned_layers=returned_layers).eval()
    # Same module names (body.*, fpn.*) and tensors, so torchvision's detection checkpoints load as they are.
    assert set(ours.state_dict()) == set(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)

    def trainable(m: nn.Module) -> list[str]:
        return sorted(n for n, p in m.named_parameters() if p.requires_grad)

    def norms(m: nn.Module) -> dict[str, type]:
        return {n: type(c) for n, c in m.named_modules() if isinstance(c, (nn.BatchNorm2d, FrozenBatchNorm2d))}

    assert trainable(ours) == trainable(reference)
    assert norms(ours) == norms(reference) and set(norms(ours).values()) == {FrozenBatchNorm2d}
    assert ours.out_channels == reference.out_channels == 256
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, expected = ours(x), reference(x)
    assert list(got) == list(expected)  # "0", "1", ... "pool", in order
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4)


def test_faster_rcnn_on_resnetlab_backbone_detects_and_trains():
    detector = FasterRCNN(resnetlab.backbone("resnet50"), num_classes=3, min_size=64, max_size=64)
    image = torch.rand(3, 64, 64)
    detector.eval()
    with torch.no_grad():
        (found,) = detector([image])
    assert set(found) == {"boxes", "labels", "scores"}
    assert found["boxes"].shape[1:] == (4,) and len(found["labels"]) == len(found["scores"]) == len(found["boxes"])

    detector.train()
    target = {"boxes": torch.tensor([[8.0, 12.0, 40.0, 48.0]]), "labels": torch.tensor([1])}
    losses = detector([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    body = detector.backbone.body
    assert body.layer4[0].conv2.weight.grad is not None  # trainable_layers=3: layer2..4 learn
    assert not body.conv1.weight.requires_grad and body.layer1[0].conv1.weight.grad is None


def test_backbone_without_fpn_feeds_a_single_map_detector():
    body = resnetlab.backbone("resnet18", fpn=False)
    assert body.out_channels == 512
    with torch.no_grad():
        assert {k: v.shape for k, v in body(torch.rand(1, 3, 64, 64)).items()} == {"0": (1, 512, 2, 2)}
    detector = FasterRCNN(
        body,
        num_classes=2,
        min_size=64,
        max_size=64,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
    ).eval()
    with torch.no_grad():
        assert set(detector([torch.rand(3, 64, 64)])[0]) == {"boxes", "labels", "scores"}


def test_preact_backbone_reads_the_last_stage_after_its_final_bn_relu():
    net = ResNet(preact=True, depths=(1, 1, 1, 1), num_classes=0)
    bb = resnetlab.backbone(net, trainable_layers=5, norm_layer=nn.BatchNorm2d).eval()
    assert bb.body.return_layers == {"layer1": "0", "layer2": "1", "layer3": "2", "act": "3"}
    assert all(p.requires_grad for p in net.parameters()) and isinstance(net.bn1, nn.BatchNorm2d)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for got, expected in zip(bb.body(x).values(), net.forward_stages(x)):
            torch.testing.assert_close(got, expected)


def test_backbone_errors_name_the_value_and_what_works():
    with pytest.raises(UserError, match=r"returned_layers=\[0, 5\] must list stage numbers from 1 to 4"):
        resnetlab.backbone("resnet18", returned_layers=[0, 5])
    with pytest.raises(UserError, match="trainable_layers=6 must be from 0 to 5"):
        resnetlab.backbone("resnet18", trainable_layers=6)
    with pytest.raises(UserError, match="ResNet family, not a DenseNet"):
        resnetlab.backbone("densenet121")
    with pytest.raises(UserError, match="depths apply when the model is given by name"):
        resnetlab.backbone(create_model("resnet18"), depths=(1, 1, 1, 1))
    with pytest.raises(UserError, match="head='pspnet' is unknown; use one of deeplabv3, fcn"):
        resnetlab.segmentation_model("resnet18", head="pspnet")


@pytest.mark.parametrize("head", ["deeplabv3", "fcn"])
def test_segmentation_model_matches_torchvision(head):
    build = {
        "deeplabv3": torchvision.models.segmentation.deeplabv3_resnet50,
        "fcn": torchvision.models.segmentation.fcn_resnet50,
    }[head]
    reference = build(weights=None, weights_backbone=None, num_classes=4, aux_loss=True).eval()
    randomise_norms(reference)
    ours = resnetlab.segmentation_model("resnet50", num_classes=4, head=head, aux=True).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # backbone.*, classifier.*, aux_classifier.*
    assert type(ours) is type(reference)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, expected = ours(x), reference(x)
    assert list(got) == ["out", "aux"] and got["out"].shape == (1, 4, 64, 64)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4)


def test_segmentation_training_step_learns():
    # A dilated ResNet-18 (basic blocks, which torchvision cannot dilate) under DeepLabV3 with an aux head.
    model = resnetlab.segmentation_model("resnet18", num_classes=3, aux=True).train()
    layer4 = model.backbone["layer4"]
    assert (layer4[0].conv1.dilation, layer4[0].conv2.dilation, layer4[1].conv1.dilation) == ((2, 2), (4, 4), (4, 4))
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(2):
        out = model(x)
        loss = nn.functional.cross_entropy(out["out"], y) + 0.5 * nn.functional.cross_entropy(out["aux"], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert out["out"].shape == (2, 3, 64, 64) and losses[1] < losses[0]
