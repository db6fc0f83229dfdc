"""Images too large to hold: read each batch's rows from the memory-mapped cache, up to two batches ahead.

The loader keeps a dataset whole on the training device when it fits (the fastest path: a batch is one
gather on the device). When it does not, the images stay in the cache file, mapped into memory: a batch is
the rows its plan names, read in file order (the page cache, not the process, holds what was read), pinned
where the device is a GPU so that the copy does not block, and prepared by a background thread while the
current batch trains (up to two batches ahead). A folder cache is checked as it is read, held or streamed
(rowfile.py): a cache damaged or cut short under a run stops it with one sentence. The epoch plan is the same
either way, so the batches are bit-identical.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..files import byte_size
from .dataset import Rows, mapped
from .rowfile import CheckedRows

HOLD_FRACTION = 0.25  # hold a dataset whole when it takes at most this share of the free (device) memory
T = TypeVar("T")


@dataclass(frozen=True)
class Residency:
    """Where a loader keeps its images, and why (a line for the log)."""

    held: bool
    reason: str


def memory_available() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable), or all physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def residency(images: np.ndarray | Rows, device: torch.device, stream: str = "auto") -> Residency:
    """Hold the images whole or stream them: `stream` is "auto" (by size), "true" or "false"."""
    size = byte_size(images.nbytes)
    if mapped(images) is None:  # read whole already (IDX, CIFAR): there is no file to stream from
        if stream != "true":
            return Residency(True, f"{size} in memory")
        return Residency(False, f"{size} in memory, each batch copied to the device in turn (stream=true)")
    if stream in ("true", "false"):
        held = stream == "false"
        return Residency(held, f"{size}, {'held whole' if held else 'streamed from the cache'} (stream={stream})")
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun: each holds its own copy
    budgets = [("memory available" + (f" to each of {processes} processes" if processes > 1 else ""),
                memory_available() // processes)]  # fmt: skip
    if device.type == "cuda":
        budgets.append(("free GPU memory", torch.cuda.mem_get_info(device)[0]))
    for what, free in budgets:
        if images.nbytes > HOLD_FRACTION * free:
            return Residency(
                False, f"{size}, streamed from the cache (more than a quarter of the {byte_size(free)} of {what})"
            )
    return Residency(True, f"{size}, held whole (at most a quarter of the memory available)")


class HostImages:
    """uint8 (N, H, W, C) images on the host, `gather` reading some rows in file order: from a folder cache's file,
    each row checked against its checksum (`checks`, see rowfile.py), else from the array or memory map."""

    def __init__(self, images: np.ndarray | Rows, pin: bool, checks: CheckedRows | None = None) -> None:
        base, self.rows = mapped(images) or (np.asarray(images), None)
        self.checks = checks
        self.base = shared_tensor(base)  # the very mapping the dataset holds (its file may be gone since)
        self.pin = pin

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows `idx` (positions in this dataset) as (B, H, W, C) uint8, read in file order."""
        where = self.rows[idx.numpy()] if self.rows is not None else idx.numpy()
        order = np.argsort(where, kind="stable")
        out = torch.empty((len(idx), *self.base.shape[1:]), dtype=torch.uint8, pin_memory=self.pin)
        if self.checks is not None:
            self.checks.unchanged()  # a file cut short since the last batch is said here, not met as a SIGBUS
        out[torch.from_numpy(order)] = self.base.index_select(0, torch.from_numpy(where[order]))
        if self.checks is not None:
            self.checks.unchanged()  # and one written to while this batch was copied
            self.checks.check(where, out.numpy())
        return out


def read_whole(images: np.ndarray | Rows, checks: CheckedRows | None) -> torch.Tensor:
    """Every image, (N, H, W, C) uint8 in memory; a folder cache's read through its file (pread: a file cut short
    meanwhile is an error, not a SIGBUS) and checked."""
    if checks is None:
        return shared_tensor(np.ascontiguousarray(images))
    base, rows = mapped(images) or (images, None)
    out = np.empty((len(images), *base.shape[1:]), np.uint8)
    checks.read(np.arange(len(base)) if rows is None else rows, out)
    return torch.from_numpy(out)


def shared_tensor(array: np.ndarray) -> torch.Tensor:
    """torch.from_numpy of an array that may be a read-only memory map: torch warns that it cannot write to
    such memory, and nothing here ever writes to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def ahead(make: Callable[[int], T], items: range, depth: int = 2) -> Iterator[T]:
    """make(i) for each i in `items`, computed by a background thread up to `depth` items ahead.

    An exception in the thread is raised here; a consumer that stops early (a stopped run) stops the thread."""
    done = threading.Event()
    ready: queue.Queue = queue.Queue(maxsize=depth)

    def offer(entry: tuple[bool, object]) -> bool:
        while not done.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for i in items:
                if not offer((True, make(i))):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            offer((False, err))

    thread = threading.Thread(target=work, name="resnetlab-prefetch", daemon=True)
    thread.start()
    try:
        for _ in items:
            ok, value = ready.get()
            if not ok:
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        done.set()
        thread.join()
