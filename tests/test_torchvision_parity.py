"""torchvision's state dicts load into resnetlab's ImageNet family unchanged and give the same outputs."""

import pytest
import torch
import torchvision

from resnetlab.models import create_model


def randomise_batchnorm_statistics(model: torch.nn.Module) -> None:
    # Fresh BN layers are identities in eval mode; random statistics make the comparison meaningful.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "resnet34", "resnet101"]
)
def test_torchvision_state_dict_loads_strictly_and_matches(name):
    reference = getattr(torchvision.models, name)(weights=None).eval()
    randomise_batchnorm_statistics(reference)
    ours = create_model(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)
    # And the other way round: our weights are torchvision's format.
    assert set(ours.state_dict()) == set(reference.state_dict())
