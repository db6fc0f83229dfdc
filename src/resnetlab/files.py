"""Files written whole or not at all, and read back with a clear error.

- Every file is written to a temporary file in the same folder, flushed, fsync'ed, then renamed over the
  old one: a reader sees the old file or the new one, never half of either.
- A write that fails (a full disk, a quota, a read-only folder) raises WriteFailed naming the file, and the
  file it would have replaced is left as it was.
- `*.safetensors` weights carry the model name, its architecture arguments, the class names and the
  preprocessing (input size, mean, std) as JSON in the metadata.
- Reading a damaged file (random bytes, truncated, malformed metadata) is a UserError naming the file and the
  problem; only a file that really asks for arbitrary pickled objects is called unsafe.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from .errors import UserError, WriteFailed

META_KEY = "resnetlab"
# What a training run keeps in its folder: no command's out= may write over one of these in a run's folder.
RUN_FILES = (
    "config.yaml",
    "metrics.csv",
    "last.pt",
    "last.safetensors",
    "best.safetensors",
    "summary.json",
    "curves.png",
    "confusion_matrix.png",
)


def byte_size(n: int) -> str:
    """A size for people: 3.1 GB, 42.3 MB, 7.0 kB, 12 B."""
    return next((f"{n / f:.1f} {u}" for f, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")) if n >= f), f"{n} B")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) for a temporary path beside `path`, fsync it, then rename it over `path`.

    An OSError on the way (no space, no permission) becomes WriteFailed; `path` is untouched either way."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
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
    except OSError as err:
        raise WriteFailed(path, err) from err
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def refuse_run_file(path: Path) -> None:
    """A UserError if `path` is one of a training run's own files (its checkpoint, weights, settings, metrics,
    plots or summary), which an output written there would replace."""
    target = Path(path).resolve()
    if target.name in RUN_FILES and (target.parent / "config.yaml").is_file():
        raise UserError(
            f"out={path} is the run {target.parent}'s own {target.name}, which writing there would replace; "
            f"choose another out= (a name of your own, or another folder)"
        )


def remove_orphan_temporaries(run_dir: Path) -> list[str]:
    """Remove the temporary files that writes of a run's files killed mid-way left (atomic_write names them
    .NAME.XXXXXXXX.tmp beside NAME); returns their names. Only the run's own files' temporaries are touched."""
    removed = []
    for name in RUN_FILES:
        for orphan in Path(run_dir).glob(f".{name}.*.tmp"):
            orphan.unlink(missing_ok=True)
            removed.append(orphan.name)
    return removed


@contextmanager
def chosen_output(path: Path) -> Iterator[None]:
    """Around writing an output whose path the user chose (out=): one of a training run's own files is refused
    before anything is written; a folder that cannot be written is their error to fix (UserError, choose another
    out=); a full disk stays WriteFailed (exit status 1)."""
    refuse_run_file(path)
    try:
        yield
    except WriteFailed as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"cannot write {err.path} ({err.reason}); choose another out=") from None
    except OSError as err:  # a writer outside atomic_write (an exporter writing side files) refused
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WriteFailed(Path(err.filename or path), err) from err
        raise UserError(f"cannot write {path} ({(err.strerror or str(err)).lower()}); choose another out=") from None


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` in 1 MiB pieces (an OSError says why the operating system refused)."""
    view = memoryview(data)
    with open(path, "wb") as f:
        for start in range(0, len(view), 1 << 20):
            f.write(view[start : start + (1 << 20)])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_plain(path: Path, what: str) -> Any:
    """torch.load(weights_only=True) of `path`; a damaged or unsafe file is a UserError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged bytes surface as many types: RuntimeError, EOFError, IndexError, struct.error
        blocked = BLOCKED_GLOBAL.search(str(err))
        if blocked:  # the file names a Python object to construct, which could run code: refuse it
            raise UserError(
                f"{path} asks to run code when loaded ({blocked.group(1)}), so it was not loaded; resnetlab loads "
                f"{what}s of plain tensors and numbers only (save a state_dict() instead)"
            ) from err
        raise UserError(f"{path} is truncated or is not a PyTorch {what} ({_reason(err)})") from err


# torch's weights_only unpickler names what it refused: "Unsupported global: GLOBAL pathlib.PosixPath was not an
# allowed global", "Trying to load unsupported GLOBAL posix.system whose module posix is blocked".
BLOCKED_GLOBAL = re.compile(r"unsupported global:? (?:global )?([\w.]+)", re.IGNORECASE)
# The general advice torch wraps around every weights_only failure: not the file's problem, so not said.
TORCH_PREAMBLE = ("Weights only load failed", "Please file an issue", "Check the documentation of torch.load")


def _reason(err: Exception) -> str:
    """The first line of an error's message that says what is wrong with the file, short enough for one
    sentence (torch's general weights_only advice skipped)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith(TORCH_PREAMBLE)), "")
    first = first.split("] ", 1)[-1].removeprefix("WeightsUnpickler error: ")  # c10's "[enforce fail at x.cc:1]"
    return f"{type(err).__name__}: {first[:120]}" if first else type(err).__name__


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Weights as safetensors; `meta` (model, arch, classes, preprocessing, ...) as JSON in the header."""
    # safetensors wants contiguous tensors that share no memory: channels_last and tied weights are copied.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata={META_KEY: json.dumps(meta)})
    atomic_write(path, lambda tmp: write_bytes(tmp, data))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, resnetlab metadata or {}) of a .safetensors file; a damaged one is a UserError naming it."""
    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors reports a damaged header or body as several exception types
        raise UserError(f"{path} is not a readable safetensors file ({_reason(err)})") from err
    if META_KEY not in header:
        return tensors, {}
    try:
        meta = json.loads(header[META_KEY])
    except ValueError as err:
        raise UserError(f"{path} has malformed resnetlab metadata (not JSON: {err})") from err
    if not isinstance(meta, dict):
        raise UserError(f"{path} has malformed resnetlab metadata (a JSON {type(meta).__name__}, not an object)")
    return tensors, meta
