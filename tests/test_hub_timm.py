"""torch.hub on a local checkout (hubconf.py), timm interoperability both ways, and the README's backbone example."""

import contextlib
import importlib.util
import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from resnetlab.errors import UserError
from resnetlab.models import ResNet, create_model, list_models, model_info
from resnetlab.models.pretrained import load_pretrained

REPO = Path(__file__).resolve().parents[1]


def test_hub_load_local_builds_registered_models_with_create_model_arguments(tmp_path):
    model = torch.hub.load(str(REPO), "resnet18", source="local")
    assert isinstance(model, ResNet) and sum(p.numel() for p in model.parameters()) == model_info("resnet18").params
    small = torch.hub.load(str(REPO), "resnet20", source="local", num_classes=7, in_chans=1)
    assert small.num_classes == 7 and small.conv1.in_channels == 1

    # Weights only from a local file; a head of another size stays new, everything else loads.
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    again = torch.hub.load(str(REPO), "resnet18", source="local", weights=tmp_path / "resnet18.pth", num_classes=5)
    assert torch.equal(again.layer4[1].conv2.weight, model.layer4[1].conv2.weight) and again.num_classes == 5
    with pytest.raises(UserError, match="weights=<a local weights file> instead of pretrained"):
        torch.hub.load(str(REPO), "resnet18", source="local", pretrained=True)


def test_hub_entries_are_generated_from_the_registry():
    # torch.hub.list reads GitHub only; on a checkout it imports hubconf.py and lists its public callables.
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")]
    assert sorted(entries) == sorted(list_models()) and hubconf.dependencies == ["torch"]
    assert hubconf.resnet50.__doc__.startswith("ResNet-50 (v1.5, option B) (imagenet, 76.13% top-1 accuracy)")


def test_hubconf_imports_resnetlab_from_its_checkout_when_none_is_installed():
    # `python -S` skips site-packages' .pth files, so the editable install is not seen; torch still imports.
    site_packages = str(Path(torch.__file__).parents[1])
    code = (
        "import importlib.util, torch\n"
        "assert importlib.util.find_spec('resnetlab') is None\n"
        f"model = torch.hub.load({str(REPO)!r}, 'resnet18', source='local', num_classes=3)\n"
        "import resnetlab\n"
        "print(type(model).__name__, model.num_classes, resnetlab.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": site_packages}
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ResNet", "3", str(REPO / "src" / "resnetlab" / "__init__.py")]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_timm_weights_load_both_ways_with_the_same_logits(name, tmp_path):
    x = torch.randn(1, 3, 64, 64)
    theirs = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():  # random norm statistics, so that a wrong mapping would show
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.2)

    # timm -> resnetlab, through a file as a user would: every tensor loads, none is dropped or left out.
    torch.save(theirs.state_dict(), tmp_path / "timm.pth")
    ours = create_model(name).eval()
    report = load_pretrained(ours, tmp_path / "timm.pth")
    assert report.loaded == len(theirs.state_dict()) and not report.dropped and not report.missing
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)

    # resnetlab -> timm: the keys are timm's, so timm's own local-file loading takes resnetlab's weights unchanged.
    with torch.no_grad():
        ours.fc.bias.add_(1.0)  # weights timm has not seen
    save_file(ours.state_dict(), tmp_path / "resnetlab.safetensors")
    overlay = {"file": str(tmp_path / "resnetlab.safetensors")}
    back = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay).eval()
    back.load_state_dict(ours.state_dict(), strict=True)  # and strictly: the same set of keys and shapes
    with torch.no_grad():
        torch.testing.assert_close(back(x), ours(x), rtol=1e-5, atol=1e-5)


def test_readme_backbone_example_prints_what_it_says():
    path = Path(__file__).with_name("readme_backbone_example.py")
    expected = path.read_text().split("# Prints:\n")[1]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(str(path), run_name="__main__")
    assert printed.getvalue() == "".join(line.removeprefix("# ") + "\n" for line in expected.splitlines())


def test_the_readme_shows_the_backbone_example_as_it_is():
    example = Path(__file__).with_name("readme_backbone_example.py").read_text()
    code = example.split('"""', 2)[2].split("# Prints:\n")[0].strip("\n")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"```python\n{code}\n```" in readme
