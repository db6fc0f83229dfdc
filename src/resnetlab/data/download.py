"""Downloads: a file fetched whole through a temporary file, kept only when its checksum is right."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..errors import UserError


def md5sum(path: Path | None = None, data: bytes | None = None) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    if data is not None:
        digest.update(data)
    else:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str | None, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` through a temporary file; a checksum mismatch is an error and leaves nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        got = md5sum(Path(tmp))
        if md5 and got != md5:
            raise UserError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the download was discarded")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
