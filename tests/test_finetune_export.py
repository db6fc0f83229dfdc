"""Fine-tuning from weights trained elsewhere, freezing, input-channel adaptation, embeddings and export."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import resnetlab
from image_folders import resnet8_weights
from resnetlab.cli import main
from resnetlab.errors import ConfigError, UserError
from resnetlab.export import export
from resnetlab.models import create_model
from resnetlab.models.pretrained import adapt_input_conv, load_into, load_pretrained
from resnetlab.runtimes import SUFFIX
from resnetlab.training import load_config
from resnetlab.training.finetune import frozen_parts, param_groups, parts, still_frozen
from resnetlab.training.loop import fit

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def make_folder(root: Path, per_class: int = 24, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.normal(0, 35, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("colours") / "colours")


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "resnet18_tv.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)  # a torchvision-format file
    return path


def finetune(folder, weights, out, *extra):
    settings = [
        f"init={weights}",
        f"data={folder}",
        "data.image_size=32",
        "val_fraction=0.25",
        "epochs=3",
        "batch_size=16",
        "lr=0.02",
        "schedule=cosine",
        "quiet=true",
        f"out={out}",
        "output.tensorboard=false",
        *extra,
    ]
    return fit(load_config(None, settings))


@pytest.mark.parametrize("precision, batch", [("fp32", 16), ("bf16", 16), ("fp32", 8)])
def test_finetune_from_a_torchvision_state_dict_learns_the_folder(
    folder, torchvision_weights, tmp_path, capsys, precision, batch
):
    # 9 steps: BatchNorm's running averages would still be 39% their initial values and the model scored at
    # chance in eval mode (in bf16 on CPUs and on GPUs first); they are re-estimated (norm_stats.py) from
    # shuffled batches: in the folder's file order each batch held one class, and the model scored 67% (batch 16)
    # or 33% (batch 8) in eval mode while classifying every training batch right.
    result = finetune(
        folder, torchvision_weights, tmp_path, "model=resnet18", f"precision={precision}", f"batch_size={batch}"
    )
    assert result.summary["model"] == "resnet18" and result.summary["result_split"] == "val"  # no test/ folder
    assert result.summary["val_top1"] > 0.8  # three classes: chance is 33%
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("loaded"))
    assert "loaded 120 tensors" in line and "dropped fc.weight (1000, 512) != (3, 512)" in line
    model, meta = resnetlab.load(result.run_dir)
    assert meta.classes == ("blue", "green", "red") and model.fc.out_features == 3


def test_frozen_parameters_are_bitwise_unchanged(folder, torchvision_weights, tmp_path):
    before = torch.load(torchvision_weights, weights_only=True)
    result = finetune(folder, torchvision_weights, tmp_path, "model=resnet18", "freeze=backbone", "lr=0.1")
    after, _ = resnetlab.load(result.run_dir)
    state = after.state_dict()
    for key, value in before.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(state[key], value), key  # weights and BatchNorm statistics alike
    assert result.summary["val_top1"] > 0.5  # a linear probe on random features still separates colours


def test_partial_freeze_by_stage_and_gradual_unfreezing():
    model = create_model("resnet18", num_classes=3)
    assert parts(model) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert frozen_parts(model, "stem,layer1") == ["stem", "layer1"]
    backbone = frozen_parts(model, "backbone")
    assert still_frozen(backbone, 0, 2) == backbone
    assert still_frozen(backbone, 2, 2) == ["stem", "layer1", "layer2", "layer3"]  # layer4 thaws first
    assert still_frozen(backbone, 10, 2) == []
    with pytest.raises(ConfigError, match="layer9"):
        frozen_parts(model, "layer9")
    dense = create_model("densenet121", num_classes=3)
    assert parts(dense)[:3] == ["stem", "denseblock1", "denseblock2"] and parts(dense)[-1] == "head"


def test_backbone_learning_rate_is_scaled():
    cfg = load_config(None, ["lr=0.1", "backbone_lr=0.1", "optim.no_decay_norm_bias=true"])
    groups = param_groups(create_model("resnet20"), cfg)
    lrs = sorted({(g["lr"], g["weight_decay"]) for g in groups})
    assert lrs == [(pytest.approx(0.01), 0.0), (pytest.approx(0.01), 1e-4), (0.1, 0.0), (0.1, 1e-4)]


def test_grayscale_adaptation_equals_the_rgb_model_on_a_replicated_grey_image():
    rgb = create_model("resnet18", num_classes=10).eval()
    grey = create_model("resnet18", num_classes=10, in_chans=1).eval()
    report = load_into(grey, rgb.state_dict())
    assert report.adapted == ["conv1.weight (3 -> 1 input channels)"] and not report.missing
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)
    assert adapt_input_conv(torch.ones(4, 3, 3, 3), 5).shape == (4, 5, 3, 3)


def test_a_head_of_another_size_is_made_anew(torchvision_weights):
    model = create_model("resnet18", num_classes=7)
    fresh_head = model.fc.weight.clone()
    report = load_pretrained(model, torchvision_weights)
    assert any(d.startswith("fc.weight") for d in report.dropped) and model.fc.out_features == 7
    assert torch.equal(model.fc.weight, fresh_head)
    assert torch.equal(model.conv1.weight, torch.load(torchvision_weights, weights_only=True)["conv1.weight"])


def test_unsafe_or_foreign_weights_are_clear_errors(tmp_path):
    import datetime

    torch.save({"w": datetime.date(2020, 1, 1)}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match=r"asks to run code when loaded \(datetime.date\), so it was not loaded"):
        load_pretrained(create_model("resnet20"), tmp_path / "evil.pth")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="none of the weights fit"):
        load_pretrained(create_model("resnet20"), tmp_path / "other.pth")
    assert main(["finetune", "data=x"]) == 2


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """A resnet8 weights file with the metadata a finished run writes."""
    return resnet8_weights(tmp_path_factory.mktemp("weights") / "best.safetensors", sorted(COLOURS))


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "torchscript"])
def test_export_matches_pytorch_at_two_batch_sizes(small_weights, tmp_path, fmt):
    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    result = export(small_weights, fmt, tmp_path / f"m{SUFFIX[fmt]}")
    assert result.path.is_file() and result.batches == (1, 4) and result.max_abs_diff < 1e-4
    model, _ = resnetlab.load(small_weights)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(
            None, {"images": x.numpy()}
        )[0]
    elif fmt == "pt2":
        got = torch.export.load(str(result.path)).module()(x).detach().numpy()
    else:
        got = torch.jit.load(str(result.path))(x).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)  # batch 3: neither of the checked sizes


def test_export_cli_and_safetensors(small_weights, tmp_path, capsys):
    assert main(["export", str(small_weights), "format=torchscript", f"out={tmp_path / 'm.torchscript.pt'}"]) == 0
    assert "largest difference" in capsys.readouterr().out
    assert main(["export", str(small_weights), "format=safetensors", f"out={tmp_path / 'w.safetensors'}"]) == 0
    model, meta = resnetlab.load(tmp_path / "w.safetensors")
    assert list(meta.classes) == sorted(COLOURS)
    assert main(["export", str(small_weights), "format=tflite"]) == 2


def test_embed_writes_one_row_per_image(small_weights, folder, tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    for i, path in enumerate(sorted(folder.rglob("*.png"))[:5]):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(path.read_bytes())
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    features, names, skipped = resnetlab.embed(small_weights, [tmp_path / "imgs"])
    assert (
        features.shape == (5, 64)
        and len(names) == 5
        and [f for f, _ in skipped] == [str(tmp_path / "imgs" / "broken.png")]
    )
    out = tmp_path / "feats.npy"
    assert main(["embed", str(small_weights), str(tmp_path / "imgs"), f"out={out}"]) == 0
    assert np.load(out).shape == (5, 64) and len(out.with_suffix(".txt").read_text().splitlines()) == 5
    assert "skipped 1 unreadable" in capsys.readouterr().out
    assert json.loads(json.dumps(names))  # plain strings
