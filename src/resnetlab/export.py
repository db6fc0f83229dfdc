"""Export a trained model to a file another runtime can use, and prove it computes the same thing.

    resnetlab export runs/resnet14-fashion-mnist format=onnx           # -> model.onnx, checked with onnxruntime
    resnetlab export runs/resnet14-fashion-mnist format=torchscript    # -> model.torchscript.pt
    resnetlab export model.pth format=safetensors                      # weights + metadata

Right after writing ONNX or TorchScript, the exported model runs at batch 1 and at a larger batch on random
inputs beside the PyTorch model; the largest difference is reported, and one beyond tolerance is an error
(the file is removed rather than left looking usable).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .files import atomic_write, chosen_output, save_weights
from .inference import load

FORMATS = ("onnx", "torchscript", "safetensors")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
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
    model, meta = load(source, "cpu")
    model = model.float().eval()
    path = Path(out) if out else default_path(source, fmt)
    with chosen_output(path):  # an unwritable or full destination: one sentence, and nothing half-written left
        return _export_and_check(model, meta, fmt, path, dynamic_batch, check_batch, opset)


def _export_and_check(
    model: nn.Module, meta: dict, fmt: str, path: Path, dynamic_batch: bool, check_batch: int, opset: int
) -> ExportResult:
    if fmt == "safetensors":
        save_weights(path, model.state_dict(), meta)
        return ExportResult(path, fmt, None, ())
    shape = tuple(meta["input_size"])
    batches = (1, check_batch) if dynamic_batch else (check_batch,)
    example = torch.randn(batches[-1] if not dynamic_batch else 2, *shape)
    if fmt == "torchscript":
        run = _export_torchscript(model, example, path)
    else:
        run = _export_onnx(model, example, path, dynamic_batch, opset)
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
                f"(tolerance {ATOL:g}); {path} was removed"
            )
    return ExportResult(path, fmt, diff, batches)


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path):
    # TorchScript is deprecated upstream in favour of torch.export, but it is still what many C++ and mobile
    # runtimes load; the user asked for it by name, so its deprecation warnings are not repeated here.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        atomic_write(path, lambda tmp: traced.save(str(tmp)))
        loaded = torch.jit.load(str(path))

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, opset: int):
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as err:
        raise UserError(
            f"ONNX export needs onnx and onnxruntime ({err.name} is missing): pip install 'resnetlab[export]'"
        ) from None
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

    atomic_write(path, write)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(["logits"], {"images": x.numpy()})[0]

    return run
