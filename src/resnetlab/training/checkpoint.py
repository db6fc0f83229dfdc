"""Checkpoints that survive a crash at any moment, and weight files that say what they hold.

- Every file is written to a temporary file in the same folder, flushed, fsync'ed, then renamed over the
  old one: a reader sees the old file or the new one, never half of either.
- `last.pt` holds plain types only (tensors, numbers, strings, lists, dicts), so it loads with
  `torch.load(weights_only=True)`; a file that needs arbitrary pickled objects is refused.
- `*.safetensors` hold the weights, with the model name, its architecture arguments, the class names and
  the preprocessing (input size, mean, std) as JSON in the metadata.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import UserError

CHECKPOINT_FORMAT = "resnetlab-checkpoint-v1"
META_KEY = "resnetlab"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) for a temporary path beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the permissions a plain open() would
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    state = {"format": CHECKPOINT_FORMAT, **state}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a last.pt; a clear UserError naming the file when it is missing, damaged or unsafe."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; resume= takes a run directory that holds last.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise UserError(
                f"{path} needs arbitrary pickled objects to load, which could run code; resnetlab only loads "
                "checkpoints of plain tensors and numbers"
            ) from err
        raise UserError(f"{path} is truncated or corrupt ({err}); use an earlier checkpoint") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"{path} is truncated or corrupt ({type(err).__name__}); use an earlier checkpoint") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a resnetlab training checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    return state


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Weights as safetensors; `meta` (model, arch, classes, preprocessing, ...) as JSON in the header."""
    # safetensors wants contiguous tensors that share no memory: channels_last and tied weights are copied.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)}))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, resnetlab metadata or {}) of a .safetensors file."""
    try:
        tensors = load_file(str(path))

        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({err})") from err
    return tensors, json.loads(header[META_KEY]) if META_KEY in header else {}
