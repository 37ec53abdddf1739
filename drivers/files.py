"""Files the drivers keep on the host: the simulator's state directory and the xl driver's xl.cfg files.

Neither driver may depend on the other, so what both need of the file system lives here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(
    path: Path, data: bytes, durable: bool = True, mode: int | None = None, sync_directory: bool = False
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, never a mix.

    The data goes to a temporary file in the same directory, which is then renamed over ``path`` (a rename
    within one file system is atomic); the temporary file is removed if anything fails.

    Args:
        path: Target file.
        data: New content.
        durable: fsync the file before the rename, so a crash cannot leave an empty file behind.
        mode: The file's permission bits (None: the temporary file's, 0600), e.g. 0644 for a file that
            another user's process reads.
        sync_directory: Also fsync the directory after the rename, so that the rename itself survives a
            crash (for a caller that acknowledges the write).
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if sync_directory:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


__all__ = ["atomic_write"]
