"""Deployment: exports that carry their metadata and run by themselves (ONNX Runtime, torch.export, TorchScript),
fixed-shape exports, and predict / embed over files, folders and patterns into CSV or JSON."""

import csv
import json

import numpy as np
import pytest
import torch

import resnetlab
from image_folders import colour_folder, resnet8_weights
from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.export import export

CLASSES = ["c0", "c1", "c2"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return resnet8_weights(tmp_path_factory.mktemp("w") / "best.safetensors", CLASSES)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """7 readable images in a folder tree (36 px: predict resizes and crops them) and one broken file."""
    root = colour_folder(tmp_path_factory.mktemp("imgs") / "imgs", per_class=2, size=36, noise=30)
    (root / "c0" / "extra.jpg").write_bytes((root / "c1" / "0.png").read_bytes())  # a PNG named .jpg: still read
    (root / "broken.png").write_bytes(b"not an image")
    return root


def probabilities(results):
    return {r["file"]: dict(r["top"]) for r in results if "top" in r}


def test_onnx_export_carries_classes_size_preprocessing_and_model(weights, tmp_path):
    onnx = pytest.importorskip("onnx")
    path = export(weights, "onnx", tmp_path / "m.onnx").path
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["model_name"] == "resnet8" and json.loads(props["classes"]) == CLASSES
    assert json.loads(props["input_size"]) == [3, 32, 32] and json.loads(props["crop"]) == [32, 32]
    assert props["resize"] == "32" and json.loads(props["mean"]) == [0.5] * 3 and json.loads(props["std"]) == [0.25] * 3
    assert "centre crop 32x32" in props["preprocessing"]
    assert json.loads(props["resnetlab"])["num_classes"] == 3  # everything, for resnetlab's own reader


@pytest.mark.parametrize("fmt, batch", [("onnx", "dynamic"), ("pt2", "dynamic"), ("torchscript", "dynamic"),
                                        ("onnx", "3"), ("pt2", "3")])  # fmt: skip
def test_predict_on_an_export_agrees_with_pytorch(weights, images, tmp_path, fmt, batch):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    fixed = batch != "dynamic"
    out = tmp_path / f"model.{fmt}" if fmt != "torchscript" else tmp_path / "model.torchscript.pt"
    assert main(["export", str(weights), f"format={fmt}", f"out={out}", f"batch={batch}"]) == 0
    expected = resnetlab.predict(weights, [images], topk=3)
    got = resnetlab.predict(out, [images], topk=3, batch_size=4)  # fixed batch 3: whole batches, the last padded
    assert [r["file"] for r in got] == [r["file"] for r in expected] and len(got) == 8
    ours, theirs = probabilities(expected), probabilities(got)
    assert len(ours) == 7 and set(ours) == set(theirs)
    for name in ours:
        assert list(theirs[name]) == list(ours[name])  # the same classes in the same order
        np.testing.assert_allclose(list(theirs[name].values()), list(ours[name].values()), atol=1e-5)
    if fixed and fmt == "pt2":
        with pytest.raises(AssertionError, match="Guard failed"):  # the fixed shape is real: batch 2 is refused
            torch.export.load(str(out)).module()(torch.zeros(2, 3, 32, 32))


def test_an_export_without_metadata_is_refused_in_one_sentence(weights, images, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model, _ = resnetlab.load(weights)
    bare = tmp_path / "bare.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(bare), input_names=["images"], dynamo=False)
    assert main(["predict", str(bare), str(images)]) == 2
    assert "carries no resnetlab metadata" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert main(["predict", str(tmp_path / "junk.onnx"), str(images)]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err


def test_predict_takes_folders_and_patterns_and_writes_csv_or_json(weights, images, tmp_path, capsys):
    pattern = str(images / "**" / "*.png")  # quoted: resnetlab expands it, recursively
    out = tmp_path / "p.csv"
    assert main(["predict", str(weights), pattern, f"out={out}", "--topk", "2", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "6 predictions ->" in printed and "skipped 1 unreadable files" in printed
    rows = list(csv.DictReader(open(out)))
    assert [r["file"] for r in rows] == sorted(str(p) for p in images.rglob("*.png"))  # every .png, in order
    broken = next(r for r in rows if r["file"].endswith("broken.png"))
    assert broken["skipped"] and broken["class_1"] == ""
    good = [r for r in rows if not r["skipped"]]
    assert all(r["class_1"] in CLASSES and 0 < float(r["prob_2"]) <= float(r["prob_1"]) <= 1 for r in good)

    out = tmp_path / "p.json"
    assert main(["predict", str(weights), str(images), f"out={out}"]) == 0
    results = json.loads(out.read_text())
    assert len(results) == 8 and sum("skipped" in r for r in results) == 1
    assert results == json.loads(json.dumps(resnetlab.predict(weights, [images])))

    assert main(["predict", str(weights), str(images), "out=p.txt"]) == 2
    assert "should end in .csv or .json" in capsys.readouterr().err
    assert main(["predict", str(weights), str(images / "*.gif")]) == 2
    assert "matches no image file" in capsys.readouterr().err
    assert main(["predict", str(weights), str(tmp_path / "absent.png")]) == 2
    assert not (tmp_path / "p.txt").exists()


def test_embed_writes_csv_and_json_and_refuses_an_export(weights, images, tmp_path, capsys):
    features, names, skipped = resnetlab.embed(weights, [images])
    assert features.shape == (7, 64) and len(skipped) == 1
    assert main(["embed", str(weights), str(images), f"out={tmp_path / 'e.csv'}"]) == 0
    rows = list(csv.reader(open(tmp_path / "e.csv")))
    assert rows[0][:2] == ["file", "f0"] and len(rows) == 8 and [r[0] for r in rows[1:]] == names
    np.testing.assert_allclose(np.array(rows[1][1:], dtype=np.float32), features[0], rtol=1e-5, atol=1e-6)
    assert main(["embed", str(weights), str(images), f"out={tmp_path / 'e.json'}"]) == 0
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["files"] == names and np.allclose(data["features"], features, atol=1e-5)
    assert main(["embed", str(weights), str(images), f"out={tmp_path / 'e.parquet'}"]) == 2
    path = export(weights, "torchscript", tmp_path / "m.torchscript.pt").path
    with pytest.raises(UserError, match="gives logits only"):
        resnetlab.embed(path, [images])


def test_each_image_is_predicted_once_however_often_the_inputs_reach_it(weights, images):
    once = resnetlab.predict(weights, [images])
    again = resnetlab.predict(weights, [images, str(images / "**"), images / "c0" / "0.png"])  # 'dir/**' too
    assert [r["file"] for r in again] == [r["file"] for r in once] and len(once) == 8


def test_a_damaged_torchscript_file_is_one_sentence(weights, images, tmp_path, capsys):
    junk = tmp_path / "m.torchscript.pt"
    torch.save({"not": "a script"}, junk)
    assert main(["predict", str(junk), str(images)]) == 2
    assert "is not a TorchScript file" in capsys.readouterr().err
