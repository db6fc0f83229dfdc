"""Export a trained model to a file another runtime can use, and prove it computes the same thing.

    resnetlab export runs/resnet14-fashion-mnist format=onnx           # -> model.onnx, checked with onnxruntime
    resnetlab export runs/resnet14-fashion-mnist format=pt2            # -> model.pt2 (torch.export)
    resnetlab export runs/resnet14-fashion-mnist format=torchscript    # -> model.torchscript.pt
    resnetlab export model.pth format=safetensors                      # weights + metadata
    resnetlab export runs/resnet14-fashion-mnist batch=1               # a fixed shape, for runtimes that need one

Right after writing ONNX, torch.export or TorchScript, the exported model runs at batch 1 and at a larger
batch on random inputs beside the PyTorch model; the largest difference is reported, and one beyond tolerance
is an error (the file is removed rather than left looking usable).

Every export carries what it takes to use it: the model name, the class names, the input size, how images
are prepared (shorter side resized, centre crop, mean and std). ONNX keeps them in the model's metadata
properties (one key each, and all of them as JSON under "resnetlab"), torch.export and TorchScript in an extra
file "resnetlab.json" inside the archive; `resnetlab predict model.onnx IMAGE...` reads them back.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .files import atomic_write, chosen_output, refuse_run_file, save_weights
from .inference import load
from .records import WeightsMeta
from .runtimes import META_FILE, SUFFIX, require_onnx

FORMATS = ("onnx", "pt2", "torchscript", "safetensors")
ATOL, RTOL = 1e-4, 1e-3  # fp32 kernels of two runtimes agree to about 1e-5 on logits of order 1-10


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float | None  # None where no check applies (safetensors are the weights themselves)
    batches: tuple[int, ...]


def default_path(source: str | Path, fmt: str) -> Path:
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    return folder / f"model{SUFFIX[fmt]}"


def export(
    source: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    dynamic_batch: bool = True,
    check_batch: int = 4,
    opset: int = 17,
) -> ExportResult:
    """Write `source` (a run or weights file) as `fmt` to `out`, then check it against PyTorch."""
    if fmt not in FORMATS:
        raise UserError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    if check_batch < 1:
        raise UserError(f"batch={check_batch} is not a batch size; use a whole number such as 8, or 'dynamic'")
    path = Path(out) if out else default_path(source, fmt)
    if not path.name.endswith(SUFFIX[fmt]) or path.name == SUFFIX[fmt]:  # eval and predict know a format by it
        raise UserError(
            f"out={path} does not end in {SUFFIX[fmt]}, the ending of format={fmt} files that eval and predict "
            f"recognise; give a name such as {path.parent / ('model' + SUFFIX[fmt])}"
        )
    refuse_run_file(path)  # before any work: the run's checkpoint and weights are never written over
    model, meta = load(source, "cpu")
    model = model.float().eval()
    with chosen_output(path):  # an unwritable or full destination: one sentence, and nothing half-written left
        return _export_and_check(model, meta, fmt, path, dynamic_batch, check_batch, opset)


def _export_and_check(
    model: nn.Module, meta: WeightsMeta, fmt: str, path: Path, dynamic_batch: bool, check_batch: int, opset: int
) -> ExportResult:
    if fmt == "safetensors":
        save_weights(path, model.state_dict(), meta.to_dict())
        return ExportResult(path, fmt, None, ())
    shape = tuple(meta.input_size)
    batches = (1, check_batch) if dynamic_batch else (check_batch,)
    example = torch.randn(batches[-1] if not dynamic_batch else 2, *shape)
    if fmt == "torchscript":
        run = _export_torchscript(model, example, path, meta)
    elif fmt == "pt2":
        run = _export_pt2(model, example, path, dynamic_batch, meta)
    else:
        run = _export_onnx(model, example, path, dynamic_batch, opset, meta)
    diff = 0.0
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        x = torch.randn(batch, *shape, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = run(x)
        diff = max(diff, float(np.abs(got - expected).max()))
        if not np.allclose(got, expected, atol=ATOL, rtol=RTOL):
            os.unlink(path)
            raise UserError(
                f"the {fmt} export differs from PyTorch by up to {diff:.3g} at batch {batch} "
                f"(tolerance {ATOL:g} + {RTOL:g} x |logit|); {path} was removed"
            )
    return ExportResult(path, fmt, diff, batches)


def deployment_meta(meta: WeightsMeta) -> dict[str, str]:
    """What a runtime needs beside the weights, as strings: one key per fact, and everything under "resnetlab"."""
    channels, height, width = meta.input_size
    resize = meta.resized_side
    return {
        "resnetlab": json.dumps(meta.to_dict()),
        "model_name": meta.model,
        "classes": json.dumps(list(meta.classes)),
        "input_size": json.dumps(list(meta.input_size)),  # C, H, W of the tensor "images" (batch first)
        "resize": str(resize),  # shorter side resized to this, then ...
        "crop": json.dumps([height, width]),  # ... the centre crop
        "mean": json.dumps(list(meta.mean)),  # of pixel values scaled to [0, 1], per channel
        "std": json.dumps(list(meta.std)),
        "preprocessing": (
            f"{'greyscale' if channels == 1 else 'RGB'}; shorter side resized to {resize} px, centre crop "
            f"{height}x{width}; pixel / 255, then (x - mean) / std per channel; input 'images' (N, {channels}, "
            f"{height}, {width}) float32, output 'logits' (N, {meta.num_classes}); softmax gives probabilities"
        ),
    }


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, meta: WeightsMeta):
    # TorchScript is deprecated upstream in favour of torch.export, but it is still what many C++ and mobile
    # runtimes load; the user asked for it by name, so its deprecation warnings are not repeated here.
    extra = {META_FILE: json.dumps(meta.to_dict())}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))
        loaded = torch.jit.load(str(path))

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def _export_pt2(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, meta: WeightsMeta):
    """torch.export's ExportedProgram: the graph ATen-level, loadable without resnetlab's code."""
    from torch.export import Dim

    # A dynamic batch from 1 up; the example has batch 2, since torch.export specialises sizes 0 and 1.
    shapes = ({0: Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=shapes)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: torch.export warns about a temporary name not ending in .pt2
            torch.export.save(program, f, extra_files={META_FILE: json.dumps(meta.to_dict())})

    atomic_write(path, write)
    loaded = torch.export.load(str(path)).module()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def _export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, opset: int, meta: WeightsMeta
):
    ort = require_onnx("ONNX export")
    import onnx

    axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None

    def write(tmp: Path) -> None:
        # The TorchScript-based exporter needs no onnxscript; its constant-folding notes are not errors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, deployment_meta(meta))
        graph.doc_string = f"resnetlab {meta.model}: {deployment_meta(meta)['preprocessing']}"
        onnx.save(graph, str(tmp))

    atomic_write(path, write)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(["logits"], {"images": x.numpy()})[0]

    return run
