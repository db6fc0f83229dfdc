"""Post-training int8 quantization: an int8 QDQ model calibrated on the run's training images, checked against
fp32 on its validation images, written whole or not at all."""

import errno
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

import resnetlab.quantize as q  # noqa: E402
from resnetlab.cli import main  # noqa: E402
from resnetlab.data import BatchLoader, load_splits  # noqa: E402
from resnetlab.errors import UserError  # noqa: E402
from resnetlab.files import read_weights, save_weights  # noqa: E402
from resnetlab.inference import load  # noqa: E402
from resnetlab.training import load_config  # noqa: E402
from resnetlab.training.loop import fit  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A resnet8 trained briefly on generated images, with the run's own 100 held-out validation images."""
    out = tmp_path_factory.mktemp("runs")
    settings = ["model=resnet8", "data=synthetic", "limit_train=512", "epochs=2", "batch_size=32", "precision=fp32",
                "quiet=true", f"out={out}", "output.tensorboard=false"]  # fmt: skip
    result = fit(load_config(None, settings))
    assert result.summary["best_val_top1"] > 0.5  # it learned: its top-1 is no coin toss between tiny logits
    return result.run_dir


def val_images(run):
    """The run's validation images, prepared as evaluation prepares them, and their labels."""
    _, meta = load(run)
    record = meta.split
    splits = load_splits("synthetic", val_fraction=record.val_fraction, seed=record.seed,
                         limit_train=record.limit_train, need=("val",))  # fmt: skip
    loader = BatchLoader(splits.val, 1000, train=False, mean=meta.mean, std=meta.std)
    x, y = next(iter(loader))
    return x.numpy(), y.numpy()


def test_int8_model_is_qdq_loads_in_onnxruntime_and_agrees_with_fp32(run, tmp_path):
    result = q.quantize(run, tmp_path / "m.int8.onnx", calibration_images=64, fp32_out=tmp_path / "m.onnx")
    assert result.path.is_file() and result.fp32_path.is_file()
    assert result.calibration == "64 of the run's 512 training images (seed 0)"
    assert result.checked == "100 of the run's 100 validation images" and result.check_images == 100
    model = onnx.load(str(result.path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights and all(t.dims[0] > 1 for t in int8_weights)  # convolution weights, one scale per channel
    meta = {p.key: p.value for p in model.metadata_props}
    assert '"calibration": "64 of the run' in meta["quantization"]
    assert result.int8_bytes < result.fp32_bytes / 2

    x, y = val_images(run)
    fp32 = ort.InferenceSession(str(result.fp32_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    int8 = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert int8.shape == fp32.shape == (len(y), 10)
    agreement = (int8.argmax(1) == fp32.argmax(1)).mean()
    assert agreement >= 0.9  # 8-bit arithmetic moves the logits a little; the class rarely changes
    assert agreement == pytest.approx(result.agreement)  # what quantize reported is what the files do
    assert np.abs(int8 - fp32).max() == pytest.approx(result.max_abs_diff, rel=1e-4)
    assert result.fp32_top1 == pytest.approx((fp32.argmax(1) == y).mean())
    assert abs(result.int8_top1 - result.fp32_top1) <= 0.1


def test_calibration_is_a_seeded_sample_of_the_training_part_only(run, tmp_path, monkeypatch):
    seen = []
    real = q._quantize_static

    def spy(fp32, work, calibration, meta):
        seen.append(calibration)
        real(fp32, work, calibration, meta)

    monkeypatch.setattr(q, "_quantize_static", spy)
    for seed in (0, 0, 1):
        q.quantize(run, tmp_path / "m.int8.onnx", calibration_images=32, check_images=10, seed=seed)
    _, meta = load(run)
    record = meta.split
    splits = load_splits("synthetic", val_fraction=record.val_fraction, seed=record.seed,
                         limit_train=record.limit_train)  # fmt: skip
    train, val = set(splits.train.positions()), set(splits.val.positions())
    for cal in seen:
        assert cal.split == "train" and len(cal) == 32
        assert set(cal.positions()) <= train and not set(cal.positions()) & val  # never validation, never test
    assert list(seen[0].positions()) == list(seen[1].positions()) != list(seen[2].positions())


def test_cli_prints_what_it_wrote_and_the_agreement(run, tmp_path, capsys):
    out = tmp_path / "cli.int8.onnx"
    assert main(["quantize", str(run), "images=32", "check=50", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "calibrated on 32 of the run's" in printed
    assert "int8 vs fp32 on 50 of the run's 100 validation images: top-1 agrees on" in printed
    assert out.is_file()


def test_bad_input_is_one_sentence(run, tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="images=0 should be a positive number"):
        q.quantize(run, tmp_path / "x.onnx", calibration_images=0)
    with pytest.raises(UserError, match="check=-1"):
        q.quantize(run, tmp_path / "x.onnx", check_images=-1)
    assert main(["quantize", str(run), "images=0"]) == 2
    assert main(["quantize", str(run), "images=many"]) == 2
    assert main(["quantize", str(run), "imgs=5"]) == 2
    assert main(["quantize", str(tmp_path / "nothing")]) == 2
    with pytest.raises(UserError, match="is an export or a checkpoint; quantize starts from a run"):
        q.quantize(tmp_path / "model.onnx")
    # Weights that do not record their training split: the calibration images must be named.
    state, meta = read_weights(run / "best.safetensors")
    del meta["split"]
    save_weights(tmp_path / "bare.safetensors", state, meta)
    with pytest.raises(UserError, match="data=fashion-mnist"):
        q.quantize(tmp_path / "bare.safetensors")
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"pip install 'resnetlab\[export\]'"):
        q.quantize(run, tmp_path / "x.onnx")
    assert not list(tmp_path.glob("x.onnx*"))


def test_a_failed_quantization_leaves_no_file(run, tmp_path, monkeypatch):
    import onnxruntime.quantization

    def broken(*args, **kwargs):
        raise RuntimeError("calibration failed")

    old = tmp_path / "old.int8.onnx"
    old.write_bytes(b"the previous model")
    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", broken)
    for out in (tmp_path / "new.int8.onnx", old):
        with pytest.raises(RuntimeError, match="calibration failed"):
            q.quantize(run, out, calibration_images=8, fp32_out=tmp_path / "fp32.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.int8.onnx"]  # no new file, no temporary left
    assert old.read_bytes() == b"the previous model"
    monkeypatch.undo()

    real_save = onnx.save

    def failing_save(model, path, *args, **kwargs):  # the disk fills while the int8 file is being written
        if not Path(path).name.startswith(".old.int8.onnx."):  # the temporary file beside the output
            return real_save(model, path, *args, **kwargs)
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", failing_save)
    with pytest.raises(Exception, match="no space left"):
        q.quantize(run, old, calibration_images=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.int8.onnx"]
    assert old.read_bytes() == b"the previous model"
