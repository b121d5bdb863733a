"""Files that survive a crash: JSON written, synced and switched in with one rename.

Readers in other processes (the Nuclio function, the trainer, a restarted sampler) see the old or
the new file, never a mix, and a power loss after the call keeps the new one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_synced(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: Path, data: Any, *, owner: tuple[int, int] | None = None) -> None:
    """Write next to `path`, then os.replace: readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_json_synced(tmp, data)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
