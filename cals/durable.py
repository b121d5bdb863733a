"""Files that survive a crash: JSON written, synced and switched in with one rename.

Readers in other processes (the Nuclio function, the trainer, a restarted sampler) see the old or
the new file, never a mix, and a power loss after the call keeps the new one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def write_json_synced(path: Path, data: Any, *, indent: int | None = 2) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent, sort_keys=indent is not None)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, data: Any, *, owner: tuple[int, int] | None = None,
                      indent: int | None = 2) -> Path:
    """Write next to `path`, then os.replace: readers see the old or the new file, never a mix.

    The temp name is unique per call (two writers never share one); `indent=None` writes compact
    JSON (large COCO documents)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write_json_synced(tmp, data, indent=indent)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, shared: bool = False, blocking: bool = True) -> Iterator[None]:
    """flock on `path` (created when missing) for the block: exclusive, or shared; `blocking=False`
    raises BlockingIOError at once when another process holds it."""
    with open(path, "a") as f:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        fcntl.flock(f.fileno(), flags if blocking else flags | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_full(exc: BaseException, folder: str | os.PathLike, what: str) -> str | None:
    """One line naming the full disk when `exc` is ENOSPC or EDQUOT, else None: a traceback ending in
    "[Errno 28] No space left on device" names no file, and the operator must know which disk."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    try:
        free = f"{shutil.disk_usage(folder).free / 2 ** 20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return f"no space left on the disk of {folder} ({free}): {what}"
