"""A folder cache's image rows, checked: each against the CRC-32 its builder recorded, and the file against change.

A memory map cannot be trusted blindly while a run reads it: bytes overwritten under it are handed over as they
now are, and a file cut short under it kills the process with SIGBUS (no message). So a folder cache is read
with these checks, which stop the run with one sentence naming the cache (CacheChanged) before a changed image
reaches the model:

- the file itself, before and after every batch is read from it: its size, modification and change times as
  they were when the cache was opened (one fstat; any write, truncation or touch changes the change time; a
  cache cleared or rebuilt meanwhile only unlinks the file, which the run goes on reading as it was);
- every row, the first time this process reads it: its CRC-32 against the one recorded when it was written
  (damage from before the run, which the whole-file check on opening leaves to these for caches over 512 MiB).

Streamed batches are gathered from the memory map (the fastest read; a file cut short is seen at the next
batch, and only a cut during the copy of one batch, microseconds to milliseconds, is still a SIGBUS). Holding a
dataset whole reads it with pread instead, which a cut file cannot crash. When a check fails the cache's index
is withdrawn, so that the next run (the resume the message suggests) rebuilds the cache.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import Fault

READ_BYTES = 1 << 23  # the most one pread asks for (8 MiB): consecutive rows are read together up to this


class CacheChanged(Fault):
    """An image cache changed while a run read it: cut short, or bytes that no longer match their checksum."""

    def __init__(self, path: Path, what: str, next_step: str | None = None) -> None:
        self.path, self.what, self.next_step = path, what, next_step
        super().__init__(what)

    def __str__(self) -> str:
        carry_on = f"when you {self.next_step}" if self.next_step else "when the command runs again"
        return (
            f"the image cache {self.path} changed while it was read ({self.what}); nothing read from it after the "
            f"change was used, and it is rebuilt {carry_on}"
        )


def read_at(fd: int, into: np.ndarray, offset: int) -> int:
    """os.preadv into a uint8 buffer (no copy), or os.pread where there is no preadv; returns the bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [into], offset)
    data = os.pread(fd, into.nbytes, offset)
    into[: len(data)] = np.frombuffer(data, np.uint8)
    return len(data)


def npy_layout(path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, bytes before the data) of an .npy file, from its header."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read(f)
        return tuple(shape), f.tell()


class CheckedRows:
    """The rows of an .npy image array (uint8, (M, H, W, C), C order) and the CRC-32 of each; `read` reads rows
    through the file, `check` checks rows read elsewhere (from the memory map), `unchanged` the file itself."""

    def __init__(self, array: Path, crc32: np.ndarray, index: Path) -> None:
        self.path, self.index = Path(array), Path(index)
        self.crc32 = np.asarray(crc32, np.uint32)  # (M,)
        self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - held for the dataset's lifetime
        self.opened = stamp(os.fstat(self._file.fileno()))
        self.shape, self.offset = npy_layout(self.path)  # offset: bytes before the first row (the .npy header)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64))
        self.checked = np.zeros(len(self.crc32), bool)  # rows whose CRC-32 this process has checked
        if self.shape[0] != len(self.crc32):
            raise self._changed(f"{self.shape[0]} images for {len(self.crc32)} checksums")

    def mapped(self) -> np.memmap:
        """The images, (M, H, W, C) uint8, memory-mapped from the file this object holds open (not reopened by
        its name, which a rebuild may have given to another file since)."""
        return np.memmap(self._file, dtype=np.uint8, mode="r", offset=self.offset, shape=self.shape)

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()

    def unchanged(self) -> None:
        """Raise CacheChanged if the file is not as it was when opened: cut short, written to, or touched (its
        change time moved while its links did not: a cache cleared or rebuilt meanwhile only unlinks this file,
        which this run goes on reading as it was)."""
        size, mtime, ctime, links = stamp(os.fstat(self._file.fileno()))
        if size < self.opened[0]:
            raise self._changed("it was cut short")
        if (size, mtime) != self.opened[:2] or (ctime != self.opened[2] and links == self.opened[3]):
            raise self._changed("it was written to after this run opened it")

    def check(self, rows: np.ndarray, pixels: np.ndarray) -> None:
        """Check the rows at `rows` (positions in the array), read as `pixels` ((len(rows), H, W, C), contiguous),
        that this process has not checked before; raises CacheChanged on a mismatch."""
        rows = np.asarray(rows, np.int64)
        new = np.flatnonzero(~self.checked[rows])
        if not new.size:
            return
        flat = pixels.reshape(len(rows), self.row_bytes)
        crcs = np.fromiter((zlib.crc32(flat[i]) for i in new), np.uint32, len(new))
        bad = np.flatnonzero(crcs != self.crc32[rows[new]])
        if bad.size:
            raise self._changed(f"image {int(rows[new[bad[0]]])} no longer matches the checksum recorded for it")
        self.checked[rows[new]] = True

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Fill `out` ((len(rows), H, W, C) uint8, C-contiguous) with the rows at `rows` (ascending positions:
        consecutive ones are read with one call) through the file, and check them."""
        rows = np.asarray(rows, np.int64)
        flat = out.reshape(len(rows), self.row_bytes)  # a view: `out` is contiguous
        per_read = max(1, READ_BYTES // max(1, self.row_bytes))
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for first, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            for start in range(int(first), int(stop), per_read):
                self._pread(flat[start : min(int(stop), start + per_read)], int(rows[start]))
        self.unchanged()
        self.check(rows, out)

    def _pread(self, into: np.ndarray, row: int) -> None:
        """Read consecutive rows from `row` on into `into`; a file that ends before them is CacheChanged."""
        flat, at, got = into.reshape(-1), self.offset + row * self.row_bytes, 0
        while got < flat.nbytes:  # a read may stop short without reaching the end (a network file system): go on
            count = read_at(self._file.fileno(), flat[got:], at + got)
            if count == 0:
                raise self._changed(f"it was cut short: image {row + got // self.row_bytes} is past its end")
            got += count

    def _changed(self, what: str) -> CacheChanged:
        """The error to raise, after withdrawing the cache's index if it still names this very file (not one that
        was rebuilt in its place meanwhile), so that the next run rebuilds it."""
        try:
            if os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino:
                self.index.unlink(missing_ok=True)
        except OSError:
            pass  # already gone; or a read-only folder, where the next run meets the damage again and says so
        return CacheChanged(self.path, what)


def stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file's bytes do: (size, modification time, change time (ns), number of links)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink
