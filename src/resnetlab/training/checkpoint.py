"""Checkpoints that survive a crash at any moment, and weight files that say what they hold.

- Every file is written to a temporary file in the same folder, flushed, fsync'ed, then renamed over the
  old one: a reader sees the old file or the new one, never half of either.
- `last.pt` holds plain types only (tensors, numbers, strings, lists, dicts), so it loads with
  `torch.load(weights_only=True)`; a file that needs arbitrary pickled objects is refused.
- A failed write (no space, no permission) is WriteFailed and leaves the previous checkpoint as it was.
  Checkpoints are serialised in memory first, because torch.save hides the operating system's reason for a
  failed write behind an opaque RuntimeError.
- Weight files (safetensors with metadata) are written and read by resnetlab.files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..files import atomic_write, load_plain, write_bytes

CHECKPOINT_FORMAT = "resnetlab-checkpoint-v1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write(path, lambda tmp: write_bytes(tmp, buffer.getbuffer()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a last.pt; a clear UserError naming the file when it is missing, damaged or unsafe."""
    folder = Path(path) if Path(path).is_dir() else None
    path = folder / "last.pt" if folder else Path(path)
    if not path.is_file():
        if folder:  # a run directory whose run stopped before its first checkpoint (or another folder)
            raise UserError(
                f"{folder} holds no checkpoint (last.pt): a run stopped before writing its first one has nothing "
                f"to resume; start it over with the command that started it (it makes a new run directory)"
            )
        raise UserError(f"no checkpoint at {path}; resume= takes a run directory that holds last.pt")
    state = load_plain(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a resnetlab training checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    return state
