"""Running a resnetlab export: an ONNX file in ONNX Runtime, a torch.export archive or a TorchScript file in
PyTorch, with the metadata that export.py writes into each (class names, input size, preprocessing).

    logits, meta = open_export("runs/resnet14-fashion-mnist/model.onnx")
    logits(images)   # (N, C, H, W) float32, prepared as meta says -> (N, num_classes) logits
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from .errors import UserError
from .records import WeightsMeta

SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
META_FILE = "resnetlab.json"  # the metadata's name inside .pt2 and TorchScript archives


EXPORT_SUFFIXES = (SUFFIX["onnx"], SUFFIX["pt2"], SUFFIX["torchscript"])
Logits = Callable[[torch.Tensor], torch.Tensor]  # (N, C, H, W) float32 -> (N, num_classes) float32 logits


class ExportedModel(torch.nn.Module):
    """An export as a module, for code that scores modules (evaluate): (N, C, H, W) -> logits, on the CPU."""

    def __init__(self, logits: Logits) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x.contiguous())


def is_export(source: str | Path) -> bool:
    return str(source).endswith(EXPORT_SUFFIXES) and Path(source).is_file()


def open_export(path: str | Path) -> tuple[Logits, WeightsMeta]:
    """(images -> logits, resnetlab metadata) of an ONNX, torch.export or TorchScript file that resnetlab wrote."""
    path = Path(path)
    if path.name.endswith(SUFFIX["onnx"]):
        logits, raw, fixed_batch = _open_onnx(path)
    elif path.name.endswith(SUFFIX["pt2"]):
        logits, raw, fixed_batch = _open_pt2(path)
    else:
        extra = {META_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            except Exception as err:  # a damaged file, or a pickled checkpoint given this name
                raise UserError(f"{path} is not a TorchScript file ({str(err).splitlines()[0]})") from None
        logits, raw, fixed_batch = module, extra[META_FILE], None  # a trace runs at any batch size
    meta = WeightsMeta.read(json.loads(raw if isinstance(raw, str) else raw.decode()) if raw else None, path)
    if meta is None:
        raise UserError(
            f"{path} carries no resnetlab metadata (class names, input size, mean/std); export it again from its "
            f"run with `resnetlab export RUN format=...` (resnetlab writes them since this version)"
        )
    return (_in_fixed_batches(logits, fixed_batch) if fixed_batch else _no_grad(logits)), meta


def _no_grad(logits: Logits) -> Logits:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return logits(x)

    return run


def _in_fixed_batches(logits: Logits, size: int) -> Logits:
    """An export with a fixed batch size takes any number of images: whole batches, the last padded with zeros."""

    def run(x: torch.Tensor) -> torch.Tensor:
        parts = []
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            padded = torch.cat([chunk, chunk.new_zeros(size - len(chunk), *chunk.shape[1:])])
            with torch.no_grad():
                parts.append(logits(padded)[: len(chunk)])
        return torch.cat(parts)

    return run


def require_onnx(purpose: str, quantization: bool = False) -> ModuleType:
    """onnxruntime (with onnx importable beside it), or one sentence on how to install the optional extra."""
    try:
        import onnx  # noqa: F401
        import onnxruntime

        if quantization:
            import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        raise UserError(
            f"{purpose} needs onnx and onnxruntime ({err.name} is missing): pip install 'resnetlab[export]'"
        ) from None
    return onnxruntime


def _open_onnx(path: Path) -> tuple[Logits, str | None, int | None]:
    ort = require_onnx(f"running {path.name}")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for a damaged or foreign file
        raise UserError(f"{path} is not an ONNX model onnxruntime can load ({str(err).splitlines()[0]})") from None
    image_input = session.get_inputs()[0]  # resnetlab writes one input; a foreign file fails on its metadata
    batch = image_input.shape[0]  # an int for a fixed-shape export, a name ("batch") for a dynamic one

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {image_input.name: x.numpy()})[0])

    return run, session.get_modelmeta().custom_metadata_map.get("resnetlab"), batch if isinstance(batch, int) else None


def _open_pt2(path: Path) -> tuple[Logits, str, int | None]:
    extra = {META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as err:  # a damaged or foreign archive: torch raises several kinds
        raise UserError(f"{path} is not a torch.export archive ({str(err).splitlines()[0]})") from None
    name = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.name == name)
    batch = node.meta["val"].shape[0]  # an int when exported with a fixed shape, a SymInt when dynamic
    return program.module(), extra[META_FILE], batch if isinstance(batch, int) else None
