"""Post-training int8 quantization of an ONNX export, calibrated on the run's own training images.

    resnetlab quantize runs/resnet14-fashion-mnist                 # -> model.int8.onnx beside the weights
    resnetlab quantize runs/resnet14-fashion-mnist images=1024 out=m.int8.onnx

What happens:
1. the weights are exported to fp32 ONNX with export.export (checked against PyTorch there), in a temporary folder;
2. a seeded, stratified sample of the run's training images (rebuilt from the split recorded in the weights,
   never the test split) is prepared exactly as evaluation prepares images: centre view, mean/std;
3. ONNX Runtime's static quantization writes a QDQ model: int8 weights per output channel, 8-bit activations
   whose ranges are the min/max seen on the calibration images (unsigned: the U8S8 form ONNX Runtime's CPU
   kernels are made for; with signed activations its graph optimizer left every residual Add and the
   convolutions after them in float, and a ResNet-50 ran at a third of the speed);
4. int8 and fp32 are run side by side on held-out images (the run's validation part, else training images
   outside the calibration sample): the share of images whose top-1 class agrees and the largest logit
   difference are reported, with both models' top-1 accuracy there when the classes match;
5. the int8 file is written whole or not at all (a failure at any step leaves no file behind).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import BatchLoader, Dataset
from .data.splits import sample, stratified_pick
from .errors import UserError
from .export import export
from .files import atomic_write, chosen_output, refuse_run_file
from .inference import load
from .records import WeightsMeta
from .run_split import data_name, load_run_split
from .runtimes import require_onnx
from .training.device import cpu_description

SUFFIX = ".int8.onnx"
CALIBRATE, CHECK = 11, 12  # seeded random streams of their own (splits.py uses purposes 0-3)
BATCH = 32  # images per calibration and check batch: the min/max of each batch is all that calibration keeps


@dataclass
class QuantizeResult:
    path: Path  # the int8 QDQ model
    fp32_path: Path | None  # the fp32 export, where it was asked to be kept (fp32_out=)
    calibration: str  # which images set the activation ranges, in words
    calibration_images: int
    checked: str  # which images int8 was compared with fp32 on, in words
    check_images: int
    agreement: float  # share of checked images whose int8 top-1 class is fp32's
    max_abs_diff: float  # largest |int8 logit - fp32 logit| over the checked images
    logit_scale: float  # largest |fp32 logit| there, to read max_abs_diff against
    fp32_top1: float | None  # accuracy on the checked images (None where their classes are not the model's)
    int8_top1: float | None
    fp32_bytes: int
    int8_bytes: int


def default_path(source: str | Path) -> Path:
    source = Path(source)
    return (source if source.is_dir() else source.parent) / f"model{SUFFIX}"


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with every graph optimization (QDQ pairs fuse into integer kernels there)."""
    ort = require_onnx("quantization", quantization=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def prepared_batches(dataset: Dataset, meta: WeightsMeta, batch_size: int = BATCH) -> Iterator[np.ndarray]:
    """float32 (B, C, H, W) batches of `dataset` in order, prepared exactly as evaluation prepares them."""
    loader = BatchLoader(dataset, batch_size, train=False, mean=meta.mean, std=meta.std)
    for x, _ in loader:
        yield x.numpy()


def logits(sess: Any, dataset: Dataset, meta: WeightsMeta, batch_size: int = BATCH) -> np.ndarray:
    """(N, num_classes) logits of an ONNX session on every image of `dataset`."""
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0] for x in prepared_batches(dataset, meta, batch_size)])


def run_data(
    source: str | Path, meta: WeightsMeta, data: str | None, need: tuple[str, ...]
) -> tuple[dict[str, Dataset | None], str, bool]:
    """The parts of the data the run was trained on ({"train", "val", "test"}: rebuilt from the split recorded
    in the weights, or those of `data` with a seeded 0.1 hold-out), the data's name, and whether they are
    the run's own parts."""
    if not data_name(meta, data) or (meta.split is None and data is None):
        raise UserError(
            f"{source} does not record the training split it was made from, so its calibration images cannot be "
            "rebuilt; say where to take them from: data=fashion-mnist, data=cifar10 or data=path/to/folder"
        )
    run_split = load_run_split(meta, data, need)
    run_split.check_unchanged(meta.split, need, source, "calibration")
    return {part: run_split.splits.part(part) for part in need}, run_split.shown, run_split.own


def quantize(
    source: str | Path,
    out: str | Path | None = None,
    calibration_images: int = 512,
    *,
    seed: int = 0,
    check_images: int = 1000,
    data: str | None = None,
    fp32_out: str | Path | None = None,
    threads: int | None = None,
) -> QuantizeResult:
    """Write `source` (a run or .safetensors) as an int8 ONNX model calibrated on `calibration_images` of its
    training images (a seeded sample), and compare it with the fp32 export on up to `check_images` held-out
    images. `data` calibrates on another dataset's training part (weights that record no split need it);
    `fp32_out` keeps the fp32 export there too."""
    if not isinstance(calibration_images, int) or calibration_images < 1:
        raise UserError(f"images={calibration_images!r} should be a positive number of calibration images, such as 512")
    if not isinstance(check_images, int) or check_images < 1:
        raise UserError(f"check={check_images!r} should be a positive number of images to compare on, such as 1000")
    require_onnx("quantization", quantization=True)
    if Path(source).suffix.lower() in (".onnx", ".pt", ".pt2"):
        raise UserError(
            f"{source} is an export or a checkpoint; quantize starts from a run directory or its .safetensors "
            "weights (it exports them itself)"
        )
    path = Path(out) if out else default_path(source)
    keep = Path(fp32_out) if fp32_out else None
    check_outputs({"out": path, "fp32_out": keep})
    _, meta = load(source, "cpu")  # a clear error for a bad source before any data is read
    parts, name, own = run_data(source, meta, data, ("train", "val"))
    train, val = parts["train"], parts["val"]
    shape = [int(train.images.shape[-1]), *train.view()]
    if shape != list(meta.input_size):
        raise UserError(
            f"{name} has images of {'x'.join(map(str, shape))} (C x H x W) but {source} takes "
            f"{'x'.join(map(str, meta.input_size))}; calibrate on the data it was trained on (data=)"
        )
    whose = "the run's" if own else f"{name}'s"
    # Calibration: a stratified seeded sample of the training images.
    n = min(calibration_images, len(train))
    picked = stratified_pick(train.labels, n, seed, CALIBRATE)
    calibration = train.subset(picked, "train", f"calibration sample of {n}, seed {seed}")
    calibration_text = f"{n:,} of {whose} {len(train):,} training images (seed {seed})"
    check, checked = comparison_images(train, val, picked, calibration, check_images, seed, whose, name)
    classes_match = list(check.classes) == list(meta.classes)
    with chosen_output(path), tempfile.TemporaryDirectory(prefix="resnetlab-quantize-") as tmp:
        work = Path(tmp)
        fp32 = export(source, "onnx", work / "fp32.onnx").path  # checked against PyTorch by export itself
        _quantize_static(fp32, work, calibration, meta)
        fp32_logits = logits(session(fp32, threads), check, meta)
        int8_logits = logits(session(work / "int8.onnx", threads), check, meta)
        agreement = float((fp32_logits.argmax(1) == int8_logits.argmax(1)).mean())
        labels = np.asarray(check.labels)
        result = QuantizeResult(
            path=path,
            fp32_path=keep,
            calibration=calibration_text,
            calibration_images=n,
            checked=checked,
            check_images=len(check),
            agreement=agreement,
            max_abs_diff=float(np.abs(int8_logits - fp32_logits).max()),
            logit_scale=float(np.abs(fp32_logits).max()),
            fp32_top1=float((fp32_logits.argmax(1) == labels).mean()) if classes_match else None,
            int8_top1=float((int8_logits.argmax(1) == labels).mean()) if classes_match else None,
            fp32_bytes=fp32.stat().st_size,
            int8_bytes=0,
        )
        _write(work, fp32, path, result)
        result.int8_bytes = path.stat().st_size
        if keep is not None:
            with chosen_output(keep):
                atomic_write(keep, lambda t: _copy(fp32, t))
    return result


def check_outputs(targets: dict[str, Path | None]) -> None:
    """Before any work: each output is an .onnx name (eval and predict recognise ONNX models by it), and none
    is one of a run's own files."""
    for key, target in targets.items():
        if target is None:
            continue
        if not target.name.endswith(".onnx"):
            raise UserError(
                f"{key}={target} does not end in .onnx, which an ONNX model's name does here (eval and predict "
                f"recognise it by it); give a name such as {target.with_suffix('.onnx')}"
            )
        refuse_run_file(target)


def comparison_images(
    train: Dataset,
    val: Dataset | None,
    picked: np.ndarray,
    calibration: Dataset,
    n: int,
    seed: int,
    whose: str,
    name: str,
) -> tuple[Dataset, str]:
    """Up to n held-out images to compare int8 with fp32 on, and what they are: validation images; where the run
    held none out, training images outside the calibration sample; failing those, the calibration images."""
    if val is not None:
        check = sample(val, n, seed, CHECK)
        return check, f"{len(check):,} of {whose} {len(val):,} validation images"
    rest = np.setdiff1d(np.arange(len(train)), picked)
    if len(rest):
        check = sample(train.subset(rest, "train", "outside the calibration sample"), n, seed, CHECK)
        return check, f"{len(check):,} training images outside the calibration sample ({name} has no validation part)"
    check = sample(calibration, n, seed, CHECK)
    return check, f"{len(check):,} of the calibration images themselves (no other images to compare on)"


class _Reader:
    """An onnxruntime CalibrationDataReader (it is one by having get_next): prepared batches, then None."""

    def __init__(self, batches: Iterator[np.ndarray], input_name: str) -> None:
        self.batches, self.input_name = batches, input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.batches, None)
        return None if x is None else {self.input_name: x}


def _quantize_static(fp32: Path, work: Path, calibration: Dataset, meta: WeightsMeta) -> None:
    """work/int8.onnx: fp32 (shape-inferred and optimised first) with QDQ int8 weights per channel and uint8
    activations calibrated by min/max on `calibration`."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "fp32.prepared.onnx"
    root = logging.getLogger()  # the quantizer logs a line per tensor it copies to the root logger, at INFO
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        # Shape inference and graph optimization (BatchNorm folded, constants computed): what the quantizer sees
        # is what ONNX Runtime runs, so every convolution gets its own int8 weights and activation range.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        quantize_static(  # U8S8: see the module's notes
            str(prepared),
            str(work / "int8.onnx"),
            _Reader(prepared_batches(calibration, meta), input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        root.setLevel(level)


def _write(work: Path, fp32: Path, path: Path, result: QuantizeResult) -> None:
    """The int8 model at `path`, whole or not at all, carrying the fp32 export's metadata and how it was made."""
    import onnx

    model = onnx.load(str(work / "int8.onnx"))
    source_props = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    props = {p.key: p.value for p in model.metadata_props}
    props = {**source_props, **props}  # whatever the export recorded (classes, preprocessing), kept
    how = asdict(result)
    how = {k: how[k] for k in ("calibration", "checked", "agreement", "max_abs_diff", "fp32_top1", "int8_top1")}
    # The machine it was checked on: ONNX Runtime's U8S8 kernels can saturate on x86 CPUs without VNNI (AVX2 or
    # AVX-512 without its VNNI extension), so the agreement above holds where the file was made; eval it where it runs.
    how["quantized_on"] = cpu_description()
    props["quantization"] = json.dumps({"format": "QDQ", "weights": "int8 per channel", "activations": "uint8", **how})
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    atomic_write(path, lambda tmp: onnx.save(model, str(tmp)))


def _copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as f, open(dst, "wb") as g:
        while chunk := f.read(1 << 20):
            g.write(chunk)
