"""Longer checks, run with `make test-slow` (pytest -m slow): real data, full-size inputs."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from resnetlab.models import create_model, list_models, model_info
from resnetlab.training import load_config
from resnetlab.training.loop import fit

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", [n for n in list_models() if model_info(n).dataset == "imagenet"])
def test_imagenet_models_at_their_published_input_size(name):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is not installed")
def test_one_epoch_of_the_demo_recipe_learns_fashion_mnist(tmp_path):
    result = fit(load_config("fashion_mnist_fast", ["epochs=1", "quiet=true", f"out={tmp_path}"]))
    assert result.summary["test_top1"] > 0.80  # one one-cycle epoch of ResNet-14 reaches about 85% here


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_a_new_user_on_a_fresh_clone_gets_the_demo_and_every_readme_example():
    """scripts/try-as-new-user.sh: clone (the committed state), make demo, then the README's `$ resnetlab` examples."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "try-as-new-user.sh"), str(repo)], capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "README examples run, 0 failed" in done.stdout
